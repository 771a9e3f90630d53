package loadtest

// This file is the whole contract between the load tool and the two services: every path,
// request body and response field the tool sends or reads is here and nowhere else, so aligning
// the tool with a change in the REST API is an edit to this one file.
//
// The services decode request bodies strictly (unknown fields are refused), so request structs
// carry exactly the fields the API accepts. Responses are decoded tolerantly: encoding/json
// ignores fields the tool does not know, and ids are kept as raw JSON (see ID) so a numeric
// flight id and a string booking id both round-trip unchanged.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Paths of the REST API, relative to the flight or booking base URL.
const (
	pathCities    = "/api/v1/cities"
	pathAirports  = "/api/v1/airports"
	pathAirplanes = "/api/v1/airplanes"
	pathFlights   = "/api/v1/flights"
	pathBookings  = "/api/v1/bookings"
	// pathAdminBookings lists every user's bookings of a flight, a page at a time.
	pathAdminBookings = "/api/v1/admin/bookings"
	pathHealth        = "/healthz"
	pathReady         = "/readyz"
)

func flightPath(id ID) string   { return pathFlights + "/" + url.PathEscape(id.String()) }
func bookingPath(id ID) string  { return pathBookings + "/" + url.PathEscape(id.String()) }
func paymentsPath(id ID) string { return bookingPath(id) + "/payments" }
func cancelPath(id ID) string   { return bookingPath(id) + "/cancel" }

// searchQuery is the query string of GET /api/v1/flights.
func searchQuery(from, to string, date time.Time, travellers, limit int) string {
	q := url.Values{}
	q.Set("from", from)
	q.Set("to", to)
	q.Set("date", date.UTC().Format(time.DateOnly))
	q.Set("travellers", strconv.Itoa(travellers))
	q.Set("limit", strconv.Itoa(limit))
	return "?" + q.Encode()
}

// Endpoint names label latencies and errors in the report. They name the route, not the URL,
// so every booking's GET lands in one histogram.
const (
	epSearch  = "GET /flights"
	epFlight  = "GET /flights/{id}"
	epBook    = "POST /bookings"
	epBooking = "GET /bookings/{id}"
	epPay     = "POST /bookings/{id}/payments"
	epCancel  = "POST /bookings/{id}/cancel"

	epAdminBookings = "GET /admin/bookings"
)

// Booking statuses, as the booking service spells them.
const (
	StatusPending   = "PENDING"
	StatusHeld      = "HELD"
	StatusConfirmed = "CONFIRMED"
	StatusRejected  = "REJECTED"
	StatusExpired   = "EXPIRED"
	StatusCancelled = "CANCELLED"
)

// Headers the booking API reads.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerPrefer         = "Prefer" // "wait=N", RFC 7240
)

// cardSuccess is the fake payment gateway's test card that always succeeds.
const cardSuccess = "tok_success"

// ID is an identifier exactly as the API wrote it: the raw JSON value (a number or a string).
// Keeping it raw means the tool sends a flight id back in a booking the same way the flight
// service produced it, whatever type the services settle on.
type ID string

// UnmarshalJSON keeps the raw JSON value.
func (id *ID) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*id = ""
		return nil
	}
	*id = ID(b)
	return nil
}

// MarshalJSON writes the raw JSON value back; an ID made from a plain string (in tests) is
// written as a JSON string.
func (id ID) MarshalJSON() ([]byte, error) {
	if id == "" {
		return []byte("null"), nil
	}
	if json.Valid([]byte(id)) {
		return []byte(id), nil
	}
	return json.Marshal(string(id))
}

// String is the id as it appears in a URL path: a JSON string without its quotes, a number as is.
func (id ID) String() string {
	if len(id) > 0 && id[0] == '"' {
		var s string
		if err := json.Unmarshal([]byte(id), &s); err == nil {
			return s
		}
	}
	return string(id)
}

// Problem is the RFC 9457 problem+json body every error response carries.
type Problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Errors []struct {
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"errors"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("%d %s", p.Status, p.Code)
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	for _, e := range p.Errors {
		s += fmt.Sprintf(" [%s: %s]", e.Field, e.Reason)
	}
	return s
}

// created is the part of any create response the tool needs.
type created struct {
	ID ID `json:"id"`
}

// cityRequest is the body of POST /api/v1/cities.
type cityRequest struct {
	Name    string `json:"name"`
	Country string `json:"country"`
}

// airportRequest is the body of POST /api/v1/airports.
type airportRequest struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	CityID ID     `json:"city_id"`
}

// cabin is one cabin of an airplane's layout.
type cabin struct {
	Class       string `json:"class"`
	Rows        int    `json:"rows"`
	SeatsPerRow int    `json:"seats_per_row"`
}

// airplaneRequest is the body of POST /api/v1/airplanes.
type airplaneRequest struct {
	Model    string  `json:"model"`
	Capacity int     `json:"capacity"`
	Cabins   []cabin `json:"cabins"`
}

// flightRequest is the body of POST /api/v1/flights. Fares are integer minor units.
type flightRequest struct {
	FlightNumber     string    `json:"flight_number"`
	AirplaneID       ID        `json:"airplane_id"`
	DepartureAirport string    `json:"departure_airport"`
	ArrivalAirport   string    `json:"arrival_airport"`
	DepartureTime    time.Time `json:"departure_time"`
	ArrivalTime      time.Time `json:"arrival_time"`
	FareAmount       int64     `json:"fare_amount"`
	Currency         string    `json:"currency"`
	BoardingGate     string    `json:"boarding_gate"`
	Seats            int       `json:"seats"`
}

// Flight is what GET /api/v1/flights/{id} (and POST) answer, as far as the tool reads it.
type Flight struct {
	ID             ID     `json:"id"`
	TotalSeats     int    `json:"total_seats"`
	AvailableSeats int    `json:"available_seats"`
	HeldSeats      int    `json:"held_seats"`
	SoldSeats      int    `json:"sold_seats"`
	Status         string `json:"status"`
}

// bookingRequest is the body of POST /api/v1/bookings; the user is the token's sub.
type bookingRequest struct {
	FlightID ID  `json:"flight_id"`
	Seats    int `json:"seats"`
}

// Booking is what the booking endpoints answer, as far as the tool reads it. Total is in minor
// units once the booking is HELD.
type Booking struct {
	ID       ID     `json:"id"`
	FlightID ID     `json:"flight_id"`
	Seats    int    `json:"seats"`
	Status   string `json:"status"`
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
}

// paymentRequest is the body of POST /api/v1/bookings/{id}/payments.
type paymentRequest struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	CardToken string `json:"card_token,omitempty"`
}

// The readiness document (GET /readyz) has no fixed shape for queue figures yet. The tool
// flattens it and reads, by convention, every numeric leaf whose dotted path contains "dlq"
// as a dead-letter count, and every numeric leaf whose path contains "outbox" and one of
// outboxBacklogWords as an outbox backlog that must drain to zero once the system is quiet.
// For example {"outbox":{"lag_seconds":0,"pending":0},"dlq":{"count":0}}.
var outboxBacklogWords = []string{"lag", "pending", "unpublished", "backlog"}
