// Package booking is the booking service's domain: a booking's life as a state machine.
//
// Every change to a booking is a pure function of the booking as it stands (read under its
// row lock), the input, and the time: Rules.Apply returns the booking as it becomes, the
// effects to publish and a line for its history, or an error saying why the input does not
// apply. A Store (store.go; the mysql and sqlite packages) runs Apply under the booking's lock
// and writes the booking, its history and the effects in one transaction, so payment, cancel
// and expiry, which all take the same lock, can never both win.
package booking

import (
	"errors"
	"fmt"
	"time"

	"github.com/flightbook/flightbook/validation"
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

// Statuses lists every status, in the saga's order.
var Statuses = []Status{Pending, Held, Confirmed, Rejected, Expired, Cancelled}

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

// Errors of the state machine and the store; the api package maps each to an HTTP status.
var (
	ErrNotFound          = errors.New("booking not found")
	ErrInvalidTransition = errors.New("not allowed in the booking's current status")
	ErrAlreadyPaid       = errors.New("booking is already paid")
	ErrHoldExpired       = errors.New("the hold has expired")
	ErrAmountMismatch    = errors.New("amount does not match the booking's total")
)

// Booking is one traveller's request for seats on one flight. Amounts are in minor units of
// Currency (cents for EUR); UnitPrice, Total, Currency and HoldExpiresAt are known once the
// flight service has held the seats.
type Booking struct {
	ID            string // UUIDv7, so ids sort by creation time
	UserID        string
	FlightID      int64
	Seats         int
	Status        Status
	UnitPrice     int64
	Total         int64
	Currency      string
	HoldExpiresAt time.Time // zero until HELD
	RejectReason  string    // the flight service's reason, when REJECTED
	PaymentID     string    // the successful payment, when CONFIRMED (or cancelled after it)
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Version       int64 // 1 when created, +1 with every recorded change
}

// ValidateRequest checks a booking request before anything is written. Whether the flight
// exists is not known here: the flight service answers that through the saga.
func ValidateRequest(flightID int64, seats int) error {
	var v validation.Errors
	v.Check(flightID > 0, "flight_id", "must be a positive integer")
	v.Check(seats >= 1 && seats <= MaxSeats, "seats", fmt.Sprintf("must be between 1 and %d", MaxSeats))
	return v.Err()
}

// EffectKind names a message the saga must publish after a change. Each maps to one event of
// the events package (named in the comments).
type EffectKind string

// Effects: commands to the flight service, and the public record of the booking's life.
const (
	RequestHold       EffectKind = "request_hold"       // SeatHoldRequested
	RequestRelease    EffectKind = "request_release"    // SeatReleaseRequested (Reason)
	RequestConfirm    EffectKind = "request_confirm"    // SeatsConfirmRequested
	AnnounceHeld      EffectKind = "announce_held"      // BookingHeld
	AnnounceConfirmed EffectKind = "announce_confirmed" // BookingConfirmed (PaymentID)
	AnnounceRejected  EffectKind = "announce_rejected"  // BookingRejected (Reason)
	AnnounceExpired   EffectKind = "announce_expired"   // BookingExpired (PreviousStatus)
	AnnounceCancelled EffectKind = "announce_cancelled" // BookingCancelled (Refund, in the booking's currency)
)

// Release reasons carried by RequestRelease effects; they match events.ReleaseReason.
const (
	ReleaseCancelled = "cancelled"
	ReleaseExpired   = "expired"
	ReleaseLateHold  = "late_hold"
)

// Effect is one message to publish about a booking. Everything else an event needs (ids,
// seats, price, expiry) is read from the booking as it became.
type Effect struct {
	Kind           EffectKind
	Reason         string // release reason, or reject reason
	Refund         int64  // AnnounceCancelled: amount refunded, 0 for a booking never paid
	PaymentID      string // AnnounceConfirmed
	PreviousStatus Status // AnnounceExpired: PENDING or HELD
}

// Change is the outcome of applying an input: the booking as it becomes, what to publish,
// and a line for the booking's history (Cause is a short machine word, Detail says more).
// A change with no Cause changes nothing (a duplicate, or a message that no longer applies)
// and is not written.
type Change struct {
	From    Status
	Booking Booking
	Effects []Effect
	Cause   string
	Detail  string
}

// Noop reports whether the change alters nothing and should not be written.
func (c Change) Noop() bool { return c.Cause == "" }

// Input is something that happens to a booking: a reply from the flight service or a command
// of the traveller or the expiry scheduler. The set is closed; see Rules.Apply.
type Input interface{ input() }

// SeatsHeld is the flight service's hold: the seats are held at UnitPrice each, Total in all.
type SeatsHeld struct {
	UnitPrice int64
	Total     int64
	Currency  string
}

// SeatHoldRejected is the flight service's refusal, with its reason (sold_out,
// flight_not_found, ...).
type SeatHoldRejected struct{ Reason string }

// SeatsReleased is the flight service's acknowledgement that the seats are back on sale.
type SeatsReleased struct{}

// SeatsConfirmed is the flight service's acknowledgement that the held seats are sold.
type SeatsConfirmed struct{}

// Pay is a successful charge of Amount in Currency, recorded as payment PaymentID.
type Pay struct {
	Amount    int64
	Currency  string
	PaymentID string
}

// Cancel is the traveller (or an admin) cancelling the booking.
type Cancel struct{}

// Expire is the expiry scheduler's claim that the booking has run out of time.
type Expire struct{}

func (SeatsHeld) input()        {}
func (SeatHoldRejected) input() {}
func (SeatsReleased) input()    {}
func (SeatsConfirmed) input()   {}
func (Pay) input()              {}
func (Cancel) input()           {}
func (Expire) input()           {}

// Rules holds the saga's timings.
type Rules struct {
	HoldTTL        time.Duration // how long a HELD booking may wait for payment
	PendingTimeout time.Duration // how long a PENDING booking may wait for the flight service
}

// New returns a PENDING booking and its hold request.
func New(id, user string, flightID int64, seats int, now time.Time) Change {
	b := Booking{ID: id, UserID: user, FlightID: flightID, Seats: seats, Status: Pending, CreatedAt: now, UpdatedAt: now, Version: 1}
	return Change{Booking: b, Effects: []Effect{{Kind: RequestHold}}, Cause: "requested",
		Detail: fmt.Sprintf("%d seat(s) on flight %d requested", seats, flightID)}
}

// Apply applies in to b at now. It never does I/O; the caller reads b under its row lock and
// writes the result in the same transaction.
func (r Rules) Apply(b Booking, in Input, now time.Time) (Change, error) {
	switch in := in.(type) {
	case SeatsHeld:
		return r.seatsHeld(b, in, now), nil
	case SeatHoldRejected:
		return holdRejected(b, in, now), nil
	case SeatsReleased:
		return note(b, now, "seats_released", "the flight service released the seats"), nil
	case SeatsConfirmed:
		return note(b, now, "seats_confirmed", "the flight service sold the held seats"), nil
	case Pay:
		return pay(b, in, now)
	case Cancel:
		return cancel(b, now)
	case Expire:
		return r.expire(b, now), nil
	}
	return Change{}, fmt.Errorf("booking %s: unknown input %T", b.ID, in)
}

// to moves b to s at now.
func (b Booking) to(s Status, now time.Time) Booking {
	b.Status, b.UpdatedAt = s, now
	b.Version++
	return b
}

func unchanged(b Booking) Change { return Change{From: b.Status, Booking: b} }

// note records something in the history without changing the status.
func note(b Booking, now time.Time, cause, detail string) Change {
	return Change{From: b.Status, Booking: b.to(b.Status, now), Cause: cause, Detail: detail}
}

// seatsHeld applies the flight service's hold. A hold for a booking that has already ended
// is given straight back, so no seat stays held for nobody.
func (r Rules) seatsHeld(b Booking, in SeatsHeld, now time.Time) Change {
	switch b.Status {
	case Pending:
		nb := b.to(Held, now)
		nb.UnitPrice, nb.Total, nb.Currency = in.UnitPrice, in.Total, in.Currency
		nb.HoldExpiresAt = now.Add(r.HoldTTL)
		return Change{From: b.Status, Booking: nb, Effects: []Effect{{Kind: AnnounceHeld}}, Cause: "seats_held",
			Detail: fmt.Sprintf("seats held at %d %s until %s", in.Total, in.Currency, nb.HoldExpiresAt.UTC().Format(time.RFC3339))}
	case Expired, Cancelled, Rejected:
		c := note(b, now, "late_hold", fmt.Sprintf("seats held after the booking was %s; releasing them", b.Status))
		c.Effects = []Effect{{Kind: RequestRelease, Reason: ReleaseLateHold}}
		return c
	default: // HELD or CONFIRMED: a duplicate
		return unchanged(b)
	}
}

// holdRejected applies the flight service's refusal. A refusal for a booking that is no
// longer PENDING changes nothing: it expired meanwhile, and held no seats anyway.
func holdRejected(b Booking, in SeatHoldRejected, now time.Time) Change {
	if b.Status != Pending {
		return unchanged(b)
	}
	nb := b.to(Rejected, now)
	nb.RejectReason = in.Reason
	return Change{From: b.Status, Booking: nb, Effects: []Effect{{Kind: AnnounceRejected, Reason: in.Reason}},
		Cause: "hold_rejected", Detail: "the flight service rejected the hold: " + in.Reason}
}

// pay confirms a held booking before its hold expires, for exactly its total.
func pay(b Booking, in Pay, now time.Time) (Change, error) {
	switch b.Status {
	case Held:
	case Confirmed:
		return Change{}, ErrAlreadyPaid
	case Expired:
		return Change{}, ErrHoldExpired
	default:
		return Change{}, fmt.Errorf("pay a %s booking: %w", b.Status, ErrInvalidTransition)
	}
	if !now.Before(b.HoldExpiresAt) {
		return Change{}, ErrHoldExpired
	}
	if err := b.CheckAmount(in.Amount, in.Currency); err != nil {
		return Change{}, err
	}
	nb := b.to(Confirmed, now)
	nb.PaymentID = in.PaymentID
	return Change{From: b.Status, Booking: nb,
		Effects: []Effect{{Kind: RequestConfirm}, {Kind: AnnounceConfirmed, PaymentID: in.PaymentID}},
		Cause:   "paid", Detail: fmt.Sprintf("paid %d %s (payment %s)", in.Amount, in.Currency, in.PaymentID)}, nil
}

// CheckAmount reports whether amount in currency pays b's total exactly. The error wraps
// ErrAmountMismatch and names the field that is wrong.
func (b Booking) CheckAmount(amount int64, currency string) error {
	var v validation.Errors
	v.Check(amount == b.Total, "amount", fmt.Sprintf("must equal the booking's total, %d", b.Total))
	v.Check(currency == b.Currency, "currency", "must be the booking's currency, "+b.Currency)
	if err := v.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrAmountMismatch, err)
	}
	return nil
}

// cancel ends a held or confirmed booking and gives its seats back; a confirmed one is
// refunded in full.
func cancel(b Booking, now time.Time) (Change, error) {
	var refund int64
	switch b.Status {
	case Held:
	case Confirmed:
		refund = b.Total
	default:
		return Change{}, fmt.Errorf("cancel a %s booking: %w", b.Status, ErrInvalidTransition)
	}
	return Change{From: b.Status, Booking: b.to(Cancelled, now),
		Effects: []Effect{{Kind: RequestRelease, Reason: ReleaseCancelled}, {Kind: AnnounceCancelled, Refund: refund}},
		Cause:   "cancelled", Detail: fmt.Sprintf("cancelled while %s; refund %d %s", b.Status, refund, b.Currency)}, nil
}

// expire ends a held booking whose hold has passed, or a pending one older than the pending
// timeout. Anything else is left alone: payment or cancel won the row lock first, or the
// scheduler's claim is stale. That is not an error; the scheduler expects it.
func (r Rules) expire(b Booking, now time.Time) Change {
	switch {
	case b.Status == Held && !now.Before(b.HoldExpiresAt):
	case b.Status == Pending && !now.Before(b.CreatedAt.Add(r.PendingTimeout)):
	default:
		return unchanged(b)
	}
	// A PENDING booking may have seats held by a SeatsHeld still in flight; the release
	// reaches the flight service after the hold (or leaves a tombstone before it), so those
	// seats come back either way.
	return Change{From: b.Status, Booking: b.to(Expired, now),
		Effects: []Effect{{Kind: RequestRelease, Reason: ReleaseExpired}, {Kind: AnnounceExpired, PreviousStatus: b.Status}},
		Cause:   "expired", Detail: "expired while " + string(b.Status)}
}

// HistoryEntry is one recorded change of a booking. Seq is the booking's version after it;
// From is empty for the creation.
type HistoryEntry struct {
	Seq    int64
	From   Status
	To     Status
	Cause  string
	Detail string
	At     time.Time
}

// Flight is the booking service's copy of a flight in the flight service's catalogue, kept
// from its catalogue events. It is all a booking request is checked against: the seats and
// the price are the flight service's to decide, through the saga.
type Flight struct {
	ID            int64
	Number        string
	DepartureTime time.Time // zero for a flight only ever seen cancelled
	Cancelled     bool
	AnnouncedAt   time.Time // ce-time of the newest catalogue event applied
}

// ErrFlightNotFound is returned for a flight the booking service has no catalogue event of.
var ErrFlightNotFound = errors.New("flight not found")

// CheckFlight says whether a booking may be requested on flight id, given the local copy of
// it (found false when there is none) and the time: an unknown, cancelled or departed flight
// is a field error on flight_id. A flight created a moment ago may not be known yet: its
// FlightScheduled is typically a few milliseconds behind.
func CheckFlight(id int64, f Flight, found bool, now time.Time) error {
	var v validation.Errors
	switch {
	case !found:
		v.Add("flight_id", fmt.Sprintf("no flight with id %d", id))
	case f.Cancelled:
		v.Add("flight_id", fmt.Sprintf("flight %d (%s) is cancelled", id, f.Number))
	case !f.DepartureTime.After(now):
		v.Add("flight_id", fmt.Sprintf("flight %d (%s) departed at %s", id, f.Number, f.DepartureTime.UTC().Format(time.RFC3339)))
	}
	return v.Err()
}
