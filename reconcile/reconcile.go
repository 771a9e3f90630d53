// Package reconcile compares the booking service's bookings with the flight service's holds,
// both read through the services' admin APIs, and names every way they disagree; each
// divergence carries the saga command that repairs it (re-sent through the booking outbox),
// or none when it needs a person.
//
// The saga keeps the two sides in step by itself; a divergence means a message was lost or a
// database was changed by hand. Compare is a pure function of the two snapshots and the time,
// so the rules are table-tested; Reconciler fetches the snapshots, in the order that keeps a
// booking the saga is still working on from looking like a divergence, and applies repairs.
package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/flight"
)

// Booking is what reconciliation needs of a booking.
type Booking struct {
	ID        string         `json:"id"`
	FlightID  int64          `json:"flight_id"`
	Seats     int            `json:"seats"`
	Status    booking.Status `json:"status"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// Hold is what reconciliation needs of the flight service's record of a booking's seats.
type Hold struct {
	BookingID string            `json:"booking_id"`
	FlightID  int64             `json:"flight_id"`
	Seats     int               `json:"seats"`
	Status    flight.HoldStatus `json:"status"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// takes reports whether the hold keeps seats off sale.
func (h Hold) takes() bool { return h.Status == flight.HoldHeld || h.Status == flight.HoldSold }

// Action is the saga command that repairs a divergence; the names are those of the booking
// service's repair endpoint.
type Action string

// Repairs. A divergence with no action needs a person.
const (
	Release     Action = "release"
	RequestHold Action = "request_hold"
	Confirm     Action = "confirm"
)

// Kind names a way bookings and holds can disagree.
type Kind string

// Kinds of divergence.
const (
	OrphanHold       Kind = "orphan_hold"             // seats held or sold for a booking that does not exist
	EndedHoldsSeats  Kind = "ended_booking_has_seats" // a REJECTED, EXPIRED or CANCELLED booking still has seats
	ConfirmedNotSold Kind = "confirmed_not_sold"      // a CONFIRMED booking's seats are only held
	ConfirmedNoSeats Kind = "confirmed_without_seats" // a CONFIRMED booking has no seats at all
	HeldNoSeats      Kind = "held_without_seats"      // a HELD booking's seats are not held
	PendingStuck     Kind = "pending_stuck"           // a PENDING booking never got its answer
	Mismatch         Kind = "mismatch"                // booking and hold disagree on flight or seats
)

// Divergence is one booking on which the two services disagree.
type Divergence struct {
	Kind          Kind              `json:"kind"`
	BookingID     string            `json:"booking_id"`
	FlightID      int64             `json:"flight_id"`
	Seats         int               `json:"seats"`
	BookingStatus booking.Status    `json:"booking_status,omitempty"` // empty: no such booking
	HoldStatus    flight.HoldStatus `json:"hold_status,omitempty"`    // empty: no hold recorded
	Fix           Action            `json:"fix,omitempty"`            // empty: needs a person
	Note          string            `json:"note"`
}

// NeedsHuman reports whether no saga command repairs d.
func (d Divergence) NeedsHuman() bool { return d.Fix == "" }

func (d Divergence) String() string {
	bs, hs := string(d.BookingStatus), string(d.HoldStatus)
	if bs == "" {
		bs = "missing"
	}
	if hs == "" {
		hs = "missing"
	}
	fix := "fix: " + string(d.Fix)
	if d.NeedsHuman() {
		fix = "NEEDS A HUMAN"
	}
	return fmt.Sprintf("flight %d booking %s: %s (booking %s, hold %s, %d seat(s)); %s: %s",
		d.FlightID, d.BookingID, d.Kind, bs, hs, d.Seats, fix, d.Note)
}

// Rules are the patience reconciliation has with a saga still at work.
type Rules struct {
	// PendingAfter is how old a PENDING booking must be before its missing answer counts.
	PendingAfter time.Duration
	// Settle is how long after a booking or hold last changed reconciliation leaves it
	// alone: the saga's next message (a release after a cancel, a confirm after a payment)
	// is usually still on its way.
	Settle time.Duration
}

// Compare returns every divergence between the bookings and the holds at now, ordered by
// flight and booking id. Bookings and holds are matched by booking id; pass the bookings and
// holds of the same flights.
func Compare(bookings []Booking, holds []Hold, now time.Time, r Rules) []Divergence {
	byID := make(map[string]Hold, len(holds))
	for _, h := range holds {
		byID[h.BookingID] = h
	}
	known := make(map[string]bool, len(bookings))
	var out []Divergence
	for _, b := range bookings {
		known[b.ID] = true
		h, ok := byID[b.ID]
		if d, diverges := compareOne(b, h, ok, now, r); diverges {
			out = append(out, d)
		}
	}
	for _, h := range holds {
		if known[h.BookingID] || !h.takes() || now.Sub(h.UpdatedAt) < r.Settle {
			continue
		}
		out = append(out, Divergence{Kind: OrphanHold, BookingID: h.BookingID, FlightID: h.FlightID, Seats: h.Seats,
			HoldStatus: h.Status, Fix: Release, Note: "the flight service holds seats for a booking the booking service has no record of"})
	}
	slices.SortFunc(out, func(a, b Divergence) int {
		return cmp.Or(cmp.Compare(a.FlightID, b.FlightID), cmp.Compare(a.BookingID, b.BookingID))
	})
	return out
}

// compareOne checks one booking against its hold (ok false: none recorded).
func compareOne(b Booking, h Hold, ok bool, now time.Time, r Rules) (Divergence, bool) {
	if now.Sub(b.UpdatedAt) < r.Settle || (ok && now.Sub(h.UpdatedAt) < r.Settle) {
		return Divergence{}, false
	}
	d := Divergence{BookingID: b.ID, FlightID: b.FlightID, Seats: b.Seats, BookingStatus: b.Status}
	if ok {
		d.HoldStatus = h.Status
	}
	if ok && h.takes() && (h.FlightID != b.FlightID || h.Seats != b.Seats) {
		d.Kind, d.Note = Mismatch, fmt.Sprintf("the hold is for %d seat(s) on flight %d; compare both records by hand", h.Seats, h.FlightID)
		return d, true
	}
	switch b.Status {
	case booking.Pending:
		if now.Sub(b.CreatedAt) < r.PendingAfter {
			return d, false
		}
		// Whatever the flight service recorded, asking again makes it answer again: a
		// lost hold request is decided now, a lost reply is sent again.
		d.Kind, d.Fix = PendingStuck, RequestHold
		d.Note = fmt.Sprintf("pending since %s; the hold request or its answer was lost", b.CreatedAt.UTC().Format(time.RFC3339))
	case booking.Held:
		switch {
		case ok && h.Status == flight.HoldHeld:
			return d, false
		case !ok:
			d.Kind, d.Fix, d.Note = HeldNoSeats, RequestHold, "the flight service has no hold for a held booking; asking again holds the seats if any are left"
		case h.Status == flight.HoldReleased:
			// The flight service refuses to hold a released booking again (the release
			// is a tombstone), so no command brings the seats back.
			d.Kind, d.Note = HeldNoSeats, "the seats were given back while the booking is HELD and the flight service will not hold them again; cancel the booking before it is paid, or it expires at its hold's end"
		default:
			d.Kind, d.Note = HeldNoSeats, fmt.Sprintf("a HELD booking's hold is %s; check both records by hand", h.Status)
		}
	case booking.Confirmed:
		switch {
		case ok && h.Status == flight.HoldSold:
			return d, false
		case ok && h.Status == flight.HoldHeld:
			d.Kind, d.Fix, d.Note = ConfirmedNotSold, Confirm, "the booking is paid but its seats are only held"
		default:
			d.Kind, d.Note = ConfirmedNoSeats, "a paid booking has no seats; the flight may be oversold if they are re-held: rebook or refund the traveller"
		}
	default: // REJECTED, EXPIRED, CANCELLED
		if !ok || !h.takes() {
			return d, false
		}
		d.Kind, d.Fix, d.Note = EndedHoldsSeats, Release, fmt.Sprintf("a %s booking still has %s seats", b.Status, h.Status)
	}
	return d, true
}
