package flight

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// MaxSeatsPerBooking bounds one hold; larger parties book several times.
const MaxSeatsPerBooking = 9

// Reason codes of a rejected hold. They travel in SeatHoldRejected and end up in the booking.
const (
	ReasonSoldOut        = "sold_out"
	ReasonFlightNotFound = "flight_not_found"
	ReasonFlightClosed   = "flight_closed"
	ReasonInvalidRequest = "invalid_request"
)

// HoldStatus is where a booking's hold on a flight stands.
type HoldStatus string

// Hold statuses. A released hold with no seats that never was held is a tombstone: it
// remembers that the booking ended, so a hold request arriving late is refused.
const (
	HoldHeld     HoldStatus = "held"
	HoldSold     HoldStatus = "sold"
	HoldReleased HoldStatus = "released"
	HoldRejected HoldStatus = "rejected"
)

// ErrHoldNotFound is returned by Confirm when the booking holds no seats to confirm.
var ErrHoldNotFound = errors.New("no held seats for this booking")

// ErrHoldReleased is returned by Confirm when the booking's seats were already given back. A
// booking is released after its confirm only when it is cancelled once paid, so a confirm that
// arrives after the release (the two travel on different subjects, in no fixed order) no
// longer applies: the seats must stay on sale.
var ErrHoldReleased = errors.New("the booking's seats were released")

// HoldRequest asks for seats on a flight for one booking.
type HoldRequest struct {
	BookingID string
	FlightID  int64
	Seats     int
}

// Check returns the rejection reason for a request that can never be granted, or "".
func (r HoldRequest) Check() string {
	if _, err := uuid.Parse(r.BookingID); err != nil || r.FlightID <= 0 || r.Seats < 1 || r.Seats > MaxSeatsPerBooking {
		return ReasonInvalidRequest
	}
	return ""
}

// Hold is a booking's claim on a flight's seats, and the outcome every repeated request for
// that booking gets back.
type Hold struct {
	BookingID string
	FlightID  int64
	Seats     int
	Status    HoldStatus
	Reason    string // set when Status is rejected
	Detail    string
	UnitPrice int64 // fare in minor units per seat, set when held or sold
	Total     int64
	Currency  string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Held reports whether the hold was granted (and possibly since confirmed).
func (h Hold) Held() bool { return h.Status == HoldHeld || h.Status == HoldSold }

// Seating is the part of a flight a hold decision needs, read under the flight's row lock.
type Seating struct {
	Status    string // StatusScheduled or StatusCancelled
	Departure time.Time
	Available int
	Fare      int64
	Currency  string
}

// Decide is the hold rule: given the flight as it stands under lock, grant the request or say
// why not. It is pure so that the rule is tested without a database.
func Decide(req HoldRequest, s Seating, now time.Time) Hold {
	h := Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats}
	switch {
	case s.Status != StatusScheduled:
		h.Status, h.Reason, h.Detail = HoldRejected, ReasonFlightClosed, "flight is "+s.Status
	case !s.Departure.After(now):
		h.Status, h.Reason, h.Detail = HoldRejected, ReasonFlightClosed, "flight has departed"
	case s.Available < req.Seats:
		h.Status, h.Reason, h.Detail = HoldRejected, ReasonSoldOut, "not enough seats available"
	default:
		h.Status = HoldHeld
		h.UnitPrice, h.Currency = s.Fare, s.Currency
		h.Total = s.Fare * int64(req.Seats)
	}
	return h
}

// SeatCounts is a flight's seat inventory: available + held + sold == total, always.
type SeatCounts struct {
	Total     int `json:"total_seats"`
	Available int `json:"available_seats"`
	Held      int `json:"held_seats"`
	Sold      int `json:"sold_seats"`
}

// Balanced reports whether the counts keep the invariant.
func (i SeatCounts) Balanced() bool {
	return i.Available >= 0 && i.Held >= 0 && i.Sold >= 0 && i.Available+i.Held+i.Sold == i.Total
}

// Audit sets a flight's seat counters beside the holds that explain them. The counters are
// what search and holds read; the holds are the record of every booking's seats. They are
// written in the same transaction, so any difference is a bug to investigate, not drift.
type Audit struct {
	FlightID int64
	Counts   SeatCounts
	Held     int // seats of the flight's holds in status held
	Sold     int // seats of the flight's holds in status sold
}

// Problems lists every way the audit fails, in words an operator can act on; none means the
// flight's inventory is sound.
func (a Audit) Problems() []string {
	var p []string
	c := a.Counts
	if c.Available < 0 || c.Held < 0 || c.Sold < 0 {
		p = append(p, fmt.Sprintf("negative seat count: available %d, held %d, sold %d", c.Available, c.Held, c.Sold))
	}
	if c.Available+c.Held+c.Sold != c.Total {
		p = append(p, fmt.Sprintf("available %d + held %d + sold %d != total %d", c.Available, c.Held, c.Sold, c.Total))
	}
	if c.Held != a.Held {
		p = append(p, fmt.Sprintf("flight says %d seats held, its holds say %d", c.Held, a.Held))
	}
	if c.Sold != a.Sold {
		p = append(p, fmt.Sprintf("flight says %d seats sold, its holds say %d", c.Sold, a.Sold))
	}
	return p
}
