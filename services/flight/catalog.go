// Package flight is the flight service's domain: the catalogue (cities, airports, airplanes,
// flights), the search a traveller runs, and the seat inventory the booking saga holds,
// releases and confirms. It imports no database, HTTP or NATS package; postgres/ stores it,
// api/ serves it and messaging/ feeds it the saga's commands.
package flight

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Errors the catalogue returns, wrapped with what they are about; the api package maps each
// to its HTTP status.
var (
	// ErrNotFound means no city, airport, airplane or flight has the id asked for.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the change contradicts what is stored: a duplicate key, or a change
	// to a cancelled flight.
	ErrConflict = errors.New("conflict")
	// ErrInUse means a delete was refused because other records still refer to the target;
	// it is a kind of ErrConflict.
	ErrInUse = fmt.Errorf("in use: %w", ErrConflict)
)

// Flight statuses.
const (
	StatusScheduled = "scheduled"
	StatusCancelled = "cancelled"
)

// City is where airports are.
type City struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Country   string    `json:"country"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate reports every invalid field.
func (c City) Validate() error {
	var v validation.Errors
	checkText(&v, c.Name, "name", 100)
	checkText(&v, c.Country, "country", 100)
	return v.Err()
}

// Airport is identified by its IATA code.
type Airport struct {
	Code      string    `json:"code"`
	Name      string    `json:"name"`
	CityID    int64     `json:"city_id"`
	Address   string    `json:"address"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

var iataCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate reports every invalid field.
func (a Airport) Validate() error {
	var v validation.Errors
	v.Check(iataCode.MatchString(a.Code), "code", "must be a 3-letter upper-case IATA code")
	checkText(&v, a.Name, "name", 200)
	v.Check(a.CityID > 0, "city_id", "must be the id of an existing city")
	v.Check(len(a.Address) <= 500, "address", "must be at most 500 characters")
	return v.Err()
}

// Cabin classes of an airplane's layout.
const (
	CabinEconomy        = "economy"
	CabinPremiumEconomy = "premium_economy"
	CabinBusiness       = "business"
	CabinFirst          = "first"
)

// Cabin is one class's block of seats.
type Cabin struct {
	Class       string `json:"class"`
	Rows        int    `json:"rows"`
	SeatsPerRow int    `json:"seats_per_row"`
}

// Airplane is a model with its seat layout; its capacity is the seats of all its cabins.
type Airplane struct {
	ID        int64     `json:"id"`
	Model     string    `json:"model"`
	Capacity  int       `json:"capacity"`
	Cabins    []Cabin   `json:"cabins"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate reports every invalid field. A layout, when given, must add up to the capacity.
func (a Airplane) Validate() error {
	var v validation.Errors
	checkText(&v, a.Model, "model", 100)
	v.Check(a.Capacity > 0 && a.Capacity <= 1000, "capacity", "must be between 1 and 1000")
	seen := map[string]bool{}
	total := 0
	for i, c := range a.Cabins {
		field := fmt.Sprintf("cabins[%d]", i)
		switch c.Class {
		case CabinEconomy, CabinPremiumEconomy, CabinBusiness, CabinFirst:
			v.Check(!seen[c.Class], field+".class", "appears twice")
			seen[c.Class] = true
		default:
			v.Add(field+".class", "must be one of economy, premium_economy, business, first")
		}
		v.Check(c.Rows > 0 && c.Rows <= 100, field+".rows", "must be between 1 and 100")
		v.Check(c.SeatsPerRow > 0 && c.SeatsPerRow <= 12, field+".seats_per_row", "must be between 1 and 12")
		total += c.Rows * c.SeatsPerRow
	}
	if len(a.Cabins) > 0 && a.Capacity > 0 && total != a.Capacity {
		v.Add("capacity", fmt.Sprintf("must equal the seats of the cabin layout (%d)", total))
	}
	return v.Err()
}

// Flight is one scheduled departure with its seat inventory.
type Flight struct {
	ID               int64     `json:"id"`
	FlightNumber     string    `json:"flight_number"`
	AirplaneID       int64     `json:"airplane_id"`
	DepartureAirport string    `json:"departure_airport"`
	ArrivalAirport   string    `json:"arrival_airport"`
	DepartureTime    time.Time `json:"departure_time"`
	ArrivalTime      time.Time `json:"arrival_time"`
	FareAmount       int64     `json:"fare_amount"`
	Currency         string    `json:"currency"`
	BoardingGate     string    `json:"boarding_gate"`
	Status           string    `json:"status"`
	SeatCounts                 // total_seats, available_seats, held_seats, sold_seats
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

var flightNumber = regexp.MustCompile(`^[A-Z0-9]{2,3}[0-9]{1,4}[A-Z]?$`)

// NewFlight is what an admin sends to schedule a flight. Seats defaults to the airplane's
// capacity.
type NewFlight struct {
	FlightNumber     string    `json:"flight_number"`
	AirplaneID       int64     `json:"airplane_id"`
	DepartureAirport string    `json:"departure_airport"`
	ArrivalAirport   string    `json:"arrival_airport"`
	DepartureTime    time.Time `json:"departure_time"`
	ArrivalTime      time.Time `json:"arrival_time"`
	FareAmount       int64     `json:"fare_amount"`
	Currency         string    `json:"currency"`
	BoardingGate     string    `json:"boarding_gate"`
	Seats            *int      `json:"seats"`
}

// Validate reports every invalid field that can be checked without the database; capacity
// lets it check seats against the airplane (0 when the airplane is unknown).
func (f NewFlight) Validate(capacity int) error {
	var v validation.Errors
	v.Check(flightNumber.MatchString(f.FlightNumber), "flight_number", "must be an airline code and number, e.g. AI101")
	v.Check(f.AirplaneID > 0, "airplane_id", "must be the id of an existing airplane")
	v.Check(iataCode.MatchString(f.DepartureAirport), "departure_airport", "must be a 3-letter upper-case IATA code")
	v.Check(iataCode.MatchString(f.ArrivalAirport), "arrival_airport", "must be a 3-letter upper-case IATA code")
	if f.DepartureAirport != "" && f.DepartureAirport == f.ArrivalAirport {
		v.Add("arrival_airport", "must differ from departure_airport")
	}
	checkSchedule(&v, f.DepartureTime, f.ArrivalTime)
	v.Check(f.FareAmount > 0, "fare_amount", "must be a positive amount in minor units")
	v.Check(ValidCurrency(f.Currency), "currency", "must be an ISO 4217 code such as INR or EUR")
	v.Check(len(f.BoardingGate) <= 10, "boarding_gate", "must be at most 10 characters")
	if f.Seats != nil {
		switch {
		case *f.Seats <= 0:
			v.Add("seats", "must be positive")
		case capacity > 0 && *f.Seats > capacity:
			v.Add("seats", fmt.Sprintf("must not exceed the airplane's capacity (%d)", capacity))
		}
	}
	return v.Err()
}

// Schedule is an update of a flight's times and gate; nil fields keep their value.
type Schedule struct {
	DepartureTime *time.Time `json:"departure_time"`
	ArrivalTime   *time.Time `json:"arrival_time"`
	BoardingGate  *string    `json:"boarding_gate"`
}

// Apply returns f with the schedule changed, or the invalid fields.
func (s Schedule) Apply(f Flight) (Flight, error) {
	if s.DepartureTime != nil {
		f.DepartureTime = s.DepartureTime.UTC()
	}
	if s.ArrivalTime != nil {
		f.ArrivalTime = s.ArrivalTime.UTC()
	}
	if s.BoardingGate != nil {
		f.BoardingGate = *s.BoardingGate
	}
	var v validation.Errors
	checkSchedule(&v, f.DepartureTime, f.ArrivalTime)
	v.Check(len(f.BoardingGate) <= 10, "boarding_gate", "must be at most 10 characters")
	return f, v.Err()
}

func checkSchedule(v *validation.Errors, dep, arr time.Time) {
	v.Check(!dep.IsZero(), "departure_time", "is required (RFC 3339)")
	v.Check(!arr.IsZero(), "arrival_time", "is required (RFC 3339)")
	if !dep.IsZero() && !arr.IsZero() && !arr.After(dep) {
		v.Add("arrival_time", "must be after departure_time")
	}
}

func checkText(v *validation.Errors, s, field string, max int) {
	s = strings.TrimSpace(s)
	v.Check(s != "", field, "is required")
	v.Check(len(s) <= max, field, fmt.Sprintf("must be at most %d characters", max))
}
