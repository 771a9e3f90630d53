package events

import (
	"strconv"
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Events published by the booking service on the BOOKING stream: the saga's commands to the
// flight service (booking.saga.*) and the public record of each booking's life (booking.events.*).

// SeatHoldRequested asks the flight service to hold seats for a new, PENDING booking. The
// flight service answers with SeatsHeld or SeatHoldRejected.
type SeatHoldRequested struct {
	BookingID string `json:"booking_id"`
	FlightID  int64  `json:"flight_id"`
	UserID    string `json:"user_id"`
	Seats     int    `json:"seats"`
}

// EventType returns the versioned CloudEvents type of SeatHoldRequested.
func (SeatHoldRequested) EventType() string { return "dev.flightbook.booking.seat-hold-requested.v1" }

// Subject returns the base NATS subject of SeatHoldRequested.
func (SeatHoldRequested) Subject() string { return "booking.saga.seat-hold-requested" }

// AggregateID returns the booking id.
func (e SeatHoldRequested) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e SeatHoldRequested) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	checkRequired(&v, e.UserID, "user_id")
	checkSeats(&v, e.Seats)
	return v.Err()
}

// SeatReleaseRequested asks the flight service to give back the seats held (or sold) for a
// booking that was cancelled or expired, or whose hold arrived after the booking had already
// ended. The flight service answers with SeatsReleased, and leaves a tombstone when no hold
// exists yet so that a late hold is refused.
type SeatReleaseRequested struct {
	BookingID string        `json:"booking_id"`
	FlightID  int64         `json:"flight_id"`
	Seats     int           `json:"seats"`
	Reason    ReleaseReason `json:"reason"`
}

// EventType returns the versioned CloudEvents type of SeatReleaseRequested.
func (SeatReleaseRequested) EventType() string {
	return "dev.flightbook.booking.seat-release-requested.v1"
}

// Subject returns the base NATS subject of SeatReleaseRequested.
func (SeatReleaseRequested) Subject() string { return "booking.saga.seat-release-requested" }

// AggregateID returns the booking id.
func (e SeatReleaseRequested) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e SeatReleaseRequested) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkEnum(&v, e.Reason, "reason")
	return v.Err()
}

// SeatsConfirmRequested asks the flight service to turn a paid booking's hold into sold seats.
// The flight service answers with SeatsConfirmed.
type SeatsConfirmRequested struct {
	BookingID string `json:"booking_id"`
	FlightID  int64  `json:"flight_id"`
	Seats     int    `json:"seats"`
}

// EventType returns the versioned CloudEvents type of SeatsConfirmRequested.
func (SeatsConfirmRequested) EventType() string {
	return "dev.flightbook.booking.seats-confirm-requested.v1"
}

// Subject returns the base NATS subject of SeatsConfirmRequested.
func (SeatsConfirmRequested) Subject() string { return "booking.saga.seats-confirm-requested" }

// AggregateID returns the booking id.
func (e SeatsConfirmRequested) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e SeatsConfirmRequested) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	return v.Err()
}

// BookingHeld announces that a booking's seats are held at a price until HoldExpiresAt; the
// traveller must pay Total before then.
type BookingHeld struct {
	BookingID     string    `json:"booking_id"`
	UserID        string    `json:"user_id"`
	FlightID      int64     `json:"flight_id"`
	Seats         int       `json:"seats"`
	UnitPrice     int64     `json:"unit_price"`
	Total         int64     `json:"total"`
	Currency      string    `json:"currency"`
	HoldExpiresAt time.Time `json:"hold_expires_at"`
}

// EventType returns the versioned CloudEvents type of BookingHeld.
func (BookingHeld) EventType() string { return "dev.flightbook.booking.held.v1" }

// Subject returns the base NATS subject of BookingHeld.
func (BookingHeld) Subject() string { return "booking.events.held" }

// AggregateID returns the booking id.
func (e BookingHeld) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e BookingHeld) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkRequired(&v, e.UserID, "user_id")
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkAmount(&v, e.UnitPrice, "unit_price")
	checkAmount(&v, e.Total, "total")
	checkCurrency(&v, e.Currency)
	checkTime(&v, e.HoldExpiresAt, "hold_expires_at")
	return v.Err()
}

func (e BookingHeld) inUTC() Event {
	e.HoldExpiresAt = e.HoldExpiresAt.UTC()
	return e
}

// BookingConfirmed announces that a booking was paid and its seats are sold.
type BookingConfirmed struct {
	BookingID string `json:"booking_id"`
	UserID    string `json:"user_id"`
	FlightID  int64  `json:"flight_id"`
	Seats     int    `json:"seats"`
	Total     int64  `json:"total"`
	Currency  string `json:"currency"`
	PaymentID string `json:"payment_id"`
}

// EventType returns the versioned CloudEvents type of BookingConfirmed.
func (BookingConfirmed) EventType() string { return "dev.flightbook.booking.confirmed.v1" }

// Subject returns the base NATS subject of BookingConfirmed.
func (BookingConfirmed) Subject() string { return "booking.events.confirmed" }

// AggregateID returns the booking id.
func (e BookingConfirmed) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e BookingConfirmed) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkRequired(&v, e.UserID, "user_id")
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkAmount(&v, e.Total, "total")
	checkCurrency(&v, e.Currency)
	checkRequired(&v, e.PaymentID, "payment_id")
	return v.Err()
}

// BookingRejected announces that a booking could not get its seats and is over.
type BookingRejected struct {
	BookingID string       `json:"booking_id"`
	UserID    string       `json:"user_id"`
	FlightID  int64        `json:"flight_id"`
	Seats     int          `json:"seats"`
	Reason    RejectReason `json:"reason"`
}

// EventType returns the versioned CloudEvents type of BookingRejected.
func (BookingRejected) EventType() string { return "dev.flightbook.booking.rejected.v1" }

// Subject returns the base NATS subject of BookingRejected.
func (BookingRejected) Subject() string { return "booking.events.rejected" }

// AggregateID returns the booking id.
func (e BookingRejected) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e BookingRejected) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkRequired(&v, e.UserID, "user_id")
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkEnum(&v, e.Reason, "reason")
	return v.Err()
}

// BookingExpired announces that a booking ran out of time, either still PENDING past the
// pending timeout or HELD past its hold expiry, and that its seats are being released.
type BookingExpired struct {
	BookingID      string      `json:"booking_id"`
	UserID         string      `json:"user_id"`
	FlightID       int64       `json:"flight_id"`
	Seats          int         `json:"seats"`
	PreviousStatus ExpiredFrom `json:"previous_status"`
}

// EventType returns the versioned CloudEvents type of BookingExpired.
func (BookingExpired) EventType() string { return "dev.flightbook.booking.expired.v1" }

// Subject returns the base NATS subject of BookingExpired.
func (BookingExpired) Subject() string { return "booking.events.expired" }

// AggregateID returns the booking id.
func (e BookingExpired) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e BookingExpired) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkRequired(&v, e.UserID, "user_id")
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkEnum(&v, e.PreviousStatus, "previous_status")
	return v.Err()
}

// BookingCancelled announces that the traveller cancelled a HELD or CONFIRMED booking; a
// confirmed one is refunded RefundAmount (zero for a booking that was never paid).
type BookingCancelled struct {
	BookingID    string `json:"booking_id"`
	UserID       string `json:"user_id"`
	FlightID     int64  `json:"flight_id"`
	Seats        int    `json:"seats"`
	RefundAmount int64  `json:"refund_amount"`
	Currency     string `json:"currency"`
}

// EventType returns the versioned CloudEvents type of BookingCancelled.
func (BookingCancelled) EventType() string { return "dev.flightbook.booking.cancelled.v1" }

// Subject returns the base NATS subject of BookingCancelled.
func (BookingCancelled) Subject() string { return "booking.events.cancelled" }

// AggregateID returns the booking id.
func (e BookingCancelled) AggregateID() string { return e.BookingID }

// Validate reports every field that breaks the contract.
func (e BookingCancelled) Validate() error {
	var v validation.Errors
	checkBookingID(&v, e.BookingID)
	checkRequired(&v, e.UserID, "user_id")
	checkFlightID(&v, e.FlightID)
	checkSeats(&v, e.Seats)
	checkAmount(&v, e.RefundAmount, "refund_amount")
	checkCurrency(&v, e.Currency)
	return v.Err()
}

// flightIDSubject is the ce-subject of catalogue events: the flight id in decimal.
func flightIDSubject(id int64) string { return strconv.FormatInt(id, 10) }
