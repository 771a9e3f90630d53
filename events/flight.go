package events

import (
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Events published by the flight service on the FLIGHT stream: its replies to the booking
// saga (flight.saga.*, keyed by booking id) and its public catalogue (flight.catalog.*, keyed by
// flight id).

// SeatsHeld answers SeatHoldRequested: the seats are held for the booking at UnitPrice each.
// The price is the flight's fare at the moment of the hold; the booking service takes it from
// here rather than asking the flight service.
type SeatsHeld struct {
	BookingID string `json:"booking_id"`
	FlightID  int64  `json:"flight_id"`
	Seats     int    `json:"seats"`
	UnitPrice int64  `json:"unit_price"`
	Total     int64  `json:"total"`
	Currency  string `json:"currency"`
}

// EventType returns the versioned CloudEvents type of SeatsHeld.
func (SeatsHeld) EventType() string { return "dev.flightbook.flight.seats-held.v1" }

// Subject returns the base NATS subject of SeatsHeld.
func (SeatsHeld) Subject() string { return "flight.saga.seats-held" }

// AggregateID returns the booking id: saga replies belong to the booking they answer.
func (e SeatsHeld) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e SeatsHeld) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkAmount(&v, e.UnitPrice, "unit_price")
	checkAmount(&v, e.Total, "total")
	checkCurrency(&v, e.Currency)
	return v.Err()
}

// SeatHoldRejected answers SeatHoldRequested when no seats were held. Detail is free text for
// people; programs decide on Reason.
type SeatHoldRejected struct {
	BookingID string       `json:"booking_id"`
	FlightID  int64        `json:"flight_id"`
	Seats     int          `json:"seats"`
	Reason    RejectReason `json:"reason"`
	Detail    string       `json:"detail,omitempty"`
}

// EventType returns the versioned CloudEvents type of SeatHoldRejected.
func (SeatHoldRejected) EventType() string { return "dev.flightbook.flight.seat-hold-rejected.v1" }

// Subject returns the base NATS subject of SeatHoldRejected.
func (SeatHoldRejected) Subject() string { return "flight.saga.seat-hold-rejected" }

// AggregateID returns the booking id.
func (e SeatHoldRejected) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract. Seats may be zero here: a request
// rejected as invalid_request may have asked for none.
func (e SeatHoldRejected) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	v.Check(e.Seats >= 0, "seats", "must not be negative")
	checkEnum(&v, e.Reason, "reason")
	return v.Err()
}

// SeatsReleased answers SeatReleaseRequested: whatever the booking held or had bought on the
// flight is available again (or, if nothing was held yet, a tombstone now refuses a late hold).
type SeatsReleased struct {
	BookingID string `json:"booking_id"`
	FlightID  int64  `json:"flight_id"`
	Seats     int    `json:"seats"`
}

// EventType returns the versioned CloudEvents type of SeatsReleased.
func (SeatsReleased) EventType() string { return "dev.flightbook.flight.seats-released.v1" }

// Subject returns the base NATS subject of SeatsReleased.
func (SeatsReleased) Subject() string { return "flight.saga.seats-released" }

// AggregateID returns the booking id.
func (e SeatsReleased) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract. Seats is the number given back, zero
// when the release found nothing to give back.
func (e SeatsReleased) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	v.Check(e.Seats >= 0, "seats", "must not be negative")
	return v.Err()
}

// SeatsConfirmed answers SeatsConfirmRequested: the booking's held seats are now sold.
type SeatsConfirmed struct {
	BookingID string `json:"booking_id"`
	FlightID  int64  `json:"flight_id"`
	Seats     int    `json:"seats"`
}

// EventType returns the versioned CloudEvents type of SeatsConfirmed.
func (SeatsConfirmed) EventType() string { return "dev.flightbook.flight.seats-confirmed.v1" }

// Subject returns the base NATS subject of SeatsConfirmed.
func (SeatsConfirmed) Subject() string { return "flight.saga.seats-confirmed" }

// AggregateID returns the booking id.
func (e SeatsConfirmed) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e SeatsConfirmed) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	return v.Err()
}

// FlightScheduled announces a new flight in the catalogue, open for booking at FareAmount per
// seat.
type FlightScheduled struct {
	FlightID         int64     `json:"flight_id"`
	FlightNumber     string    `json:"flight_number"`
	DepartureAirport string    `json:"departure_airport"`
	ArrivalAirport   string    `json:"arrival_airport"`
	DepartureTime    time.Time `json:"departure_time"`
	ArrivalTime      time.Time `json:"arrival_time"`
	TotalSeats       int       `json:"total_seats"`
	FareAmount       int64     `json:"fare_amount"`
	Currency         string    `json:"currency"`
}

// EventType returns the versioned CloudEvents type of FlightScheduled.
func (FlightScheduled) EventType() string { return "dev.flightbook.flight.scheduled.v1" }

// Subject returns the base NATS subject of FlightScheduled.
func (FlightScheduled) Subject() string { return "flight.catalog.scheduled" }

// AggregateID returns the flight id in decimal.
func (e FlightScheduled) AggregateID() string { return flightIDSubject(e.FlightID) }

// Validate reports every field that breaks the contract.
func (e FlightScheduled) Validate() error {
	var v validation.Errors
	checkFlightID(&v, e.FlightID)
	checkRequired(&v, e.FlightNumber, "flight_number")
	checkAirport(&v, e.DepartureAirport, "departure_airport")
	checkAirport(&v, e.ArrivalAirport, "arrival_airport")
	checkTime(&v, e.DepartureTime, "departure_time")
	checkTime(&v, e.ArrivalTime, "arrival_time")
	if !e.DepartureTime.IsZero() && !e.ArrivalTime.IsZero() {
		v.Check(e.ArrivalTime.After(e.DepartureTime), "arrival_time", "must be after departure_time")
	}
	v.Check(e.TotalSeats > 0, "total_seats", "must be at least 1")
	checkAmount(&v, e.FareAmount, "fare_amount")
	checkCurrency(&v, e.Currency)
	return v.Err()
}

func (e FlightScheduled) inUTC() Event {
	e.DepartureTime = e.DepartureTime.UTC()
	e.ArrivalTime = e.ArrivalTime.UTC()
	return e
}

// FlightCancelled announces that a flight was withdrawn from the catalogue.
type FlightCancelled struct {
	FlightID     int64  `json:"flight_id"`
	FlightNumber string `json:"flight_number"`
}

// EventType returns the versioned CloudEvents type of FlightCancelled.
func (FlightCancelled) EventType() string { return "dev.flightbook.flight.cancelled.v1" }

// Subject returns the base NATS subject of FlightCancelled.
func (FlightCancelled) Subject() string { return "flight.catalog.cancelled" }

// AggregateID returns the flight id in decimal.
func (e FlightCancelled) AggregateID() string { return flightIDSubject(e.FlightID) }

// Validate reports every field that breaks the contract.
func (e FlightCancelled) Validate() error {
	var v validation.Errors
	checkFlightID(&v, e.FlightID)
	checkRequired(&v, e.FlightNumber, "flight_number")
	return v.Err()
}
