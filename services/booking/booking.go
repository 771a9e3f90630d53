// Package booking is the booking service's domain: a booking's life as a state machine.
//
// Every change to a booking is a pure function of the booking as it stands (read under its
// row lock), the input, and the time: it returns the booking as it becomes and the effects to
// publish, or an error saying why the input does not apply. The mysql package runs these under
// the lock and writes the booking, its history and the effects in one transaction, so payment,
// cancel and expiry, which all lock the same row, can never both win.
package booking

import (
	"errors"
	"fmt"
	"time"
)

// Status is where a booking stands in the saga.
type Status string

// Booking statuses. PENDING waits for the flight service; HELD has seats and a price until
// HoldExpiresAt; CONFIRMED is paid; REJECTED, EXPIRED and CANCELLED are final and hold no seats
// once the saga is quiet.
const (
	Pending   Status = "PENDING"
	Held      Status = "HELD"
	Confirmed Status = "CONFIRMED"
	Rejected  Status = "REJECTED"
	Expired   Status = "EXPIRED"
	Cancelled Status = "CANCELLED"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case Pending, Held, Confirmed, Rejected, Expired, Cancelled:
		return true
	}
	return false
}

// MaxSeats is the most seats one booking may hold.
const MaxSeats = 9

// Errors of the state machine; the api package maps each to an HTTP status.
var (
	ErrNotFound       = errors.New("booking not found")
	ErrNotHeld        = errors.New("booking is not held")
	ErrAlreadyPaid    = errors.New("booking is already paid")
	ErrHoldExpired    = errors.New("the hold has expired")
	ErrAmountMismatch = errors.New("amount does not match the booking's total")
	ErrNotCancellable = errors.New("booking cannot be cancelled")
)

// Booking is one traveller's request for seats on one flight.
type Booking struct {
	ID            string     `json:"id"`
	UserID        string     `json:"user_id"`
	FlightID      int64      `json:"flight_id"`
	Seats         int        `json:"seats"`
	Status        Status     `json:"status"`
	UnitPrice     int64      `json:"unit_price,omitempty"`
	Total         int64      `json:"total,omitempty"`
	Currency      string     `json:"currency,omitempty"`
	HoldExpiresAt *time.Time `json:"hold_expires_at,omitempty"`
	Reason        string     `json:"reason,omitempty"` // why it was rejected
	PaymentID     string     `json:"payment_id,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	Version       int64      `json:"version"`
}

// EffectKind names something the saga must tell the world after a change.
type EffectKind string

// Effects: commands to the flight service, and the public record of the booking's life.
const (
	RequestHold       EffectKind = "request_hold"
	RequestRelease    EffectKind = "request_release"
	RequestConfirm    EffectKind = "request_confirm"
	AnnounceHeld      EffectKind = "announce_held"
	AnnounceConfirmed EffectKind = "announce_confirmed"
	AnnounceRejected  EffectKind = "announce_rejected"
	AnnounceExpired   EffectKind = "announce_expired"
	AnnounceCancelled EffectKind = "announce_cancelled"
)

// Effect is one message to publish about a booking. Reason carries the release reason
// (cancelled, expired, late_hold) or the status a booking expired from.
type Effect struct {
	Kind   EffectKind
	Reason string
	Refund int64
}

// Change is the outcome of applying an input: the booking as it becomes, what to publish,
// and a line for the booking's history. A change with no effects and the same status is a
// no-op (a duplicate or a message that no longer applies).
type Change struct {
	Booking Booking
	Effects []Effect
	Cause   string
}

// Noop reports whether the change alters nothing.
func (c Change) Noop() bool { return len(c.Effects) == 0 && c.Cause == "" }

// New returns a PENDING booking and its hold request.
func New(id, user string, flightID int64, seats int, now time.Time) Change {
	b := Booking{ID: id, UserID: user, FlightID: flightID, Seats: seats, Status: Pending, CreatedAt: now, UpdatedAt: now, Version: 1}
	return Change{Booking: b, Effects: []Effect{{Kind: RequestHold}}, Cause: "booking requested"}
}

func (b Booking) to(s Status, now time.Time) Booking {
	b.Status, b.UpdatedAt = s, now
	b.Version++
	return b
}

// SeatsHeld applies the flight service's hold. A hold for a booking that has already ended
// is given straight back, so no seat stays held for nobody.
func (b Booking) SeatsHeld(unitPrice, total int64, currency string, holdTTL time.Duration, now time.Time) Change {
	switch b.Status {
	case Pending:
		nb := b.to(Held, now)
		exp := now.Add(holdTTL)
		nb.UnitPrice, nb.Total, nb.Currency, nb.HoldExpiresAt = unitPrice, total, currency, &exp
		return Change{Booking: nb, Effects: []Effect{{Kind: AnnounceHeld}}, Cause: fmt.Sprintf("seats held at %d %s", total, currency)}
	case Expired, Cancelled, Rejected:
		return Change{Booking: b, Effects: []Effect{{Kind: RequestRelease, Reason: "late_hold"}}, Cause: "seats held after the booking ended; releasing them"}
	default: // HELD or CONFIRMED: a duplicate
		return Change{Booking: b}
	}
}

// HoldRejected applies the flight service's refusal.
func (b Booking) HoldRejected(reason string, now time.Time) Change {
	if b.Status != Pending {
		return Change{Booking: b}
	}
	nb := b.to(Rejected, now)
	nb.Reason = reason
	return Change{Booking: nb, Effects: []Effect{{Kind: AnnounceRejected, Reason: reason}}, Cause: "seat hold rejected: " + reason}
}

// Pay confirms a held booking before its hold expires, for exactly its total.
func (b Booking) Pay(amount int64, currency, paymentID string, now time.Time) (Change, error) {
	switch b.Status {
	case Held:
	case Confirmed:
		return Change{}, ErrAlreadyPaid
	case Expired:
		return Change{}, ErrHoldExpired
	default:
		return Change{}, fmt.Errorf("%w (it is %s)", ErrNotHeld, b.Status)
	}
	if b.HoldExpiresAt != nil && !now.Before(*b.HoldExpiresAt) {
		return Change{}, ErrHoldExpired
	}
	if amount != b.Total || currency != b.Currency {
		return Change{}, fmt.Errorf("%w: pay %d %s", ErrAmountMismatch, b.Total, b.Currency)
	}
	nb := b.to(Confirmed, now)
	nb.PaymentID = paymentID
	return Change{Booking: nb, Effects: []Effect{{Kind: RequestConfirm}, {Kind: AnnounceConfirmed}}, Cause: "paid " + paymentID}, nil
}

// Cancel ends a held or confirmed booking and gives its seats back; a confirmed one is
// refunded in full.
func (b Booking) Cancel(now time.Time) (Change, error) {
	var refund int64
	switch b.Status {
	case Held:
	case Confirmed:
		refund = b.Total
	default:
		return Change{}, fmt.Errorf("%w (it is %s)", ErrNotCancellable, b.Status)
	}
	nb := b.to(Cancelled, now)
	return Change{Booking: nb, Effects: []Effect{{Kind: RequestRelease, Reason: "cancelled"}, {Kind: AnnounceCancelled, Refund: refund}},
		Cause: fmt.Sprintf("cancelled by the traveller (refund %d)", refund)}, nil
}

// Expire ends a held booking whose hold has passed, or a pending one older than
// pendingTimeout. Anything else is left alone (payment or cancel won the row lock first).
func (b Booking) Expire(pendingTimeout time.Duration, now time.Time) Change {
	switch {
	case b.Status == Held && b.HoldExpiresAt != nil && !now.Before(*b.HoldExpiresAt):
	case b.Status == Pending && !now.Before(b.CreatedAt.Add(pendingTimeout)):
	default:
		return Change{Booking: b}
	}
	nb := b.to(Expired, now)
	return Change{Booking: nb, Effects: []Effect{{Kind: RequestRelease, Reason: "expired"}, {Kind: AnnounceExpired, Reason: string(b.Status)}},
		Cause: "expired while " + string(b.Status)}
}
