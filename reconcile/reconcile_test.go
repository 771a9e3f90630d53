package reconcile_test

import (
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/reconcile"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/flight"
)

var (
	now   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	old   = now.Add(-time.Hour)
	rules = reconcile.Rules{PendingAfter: time.Minute, Settle: 30 * time.Second}
)

const id = "0195f6a4-0000-7000-8000-000000000001"

func bk(s booking.Status) *reconcile.Booking {
	return &reconcile.Booking{ID: id, FlightID: 7, Seats: 2, Status: s, CreatedAt: old, UpdatedAt: old}
}

func hd(s flight.HoldStatus) *reconcile.Hold {
	return &reconcile.Hold{BookingID: id, FlightID: 7, Seats: 2, Status: s, UpdatedAt: old}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	recent := func(b *reconcile.Booking) *reconcile.Booking { b.UpdatedAt = now.Add(-time.Second); return b }
	young := func(b *reconcile.Booking) *reconcile.Booking {
		b.CreatedAt, b.UpdatedAt = now.Add(-30*time.Second), now.Add(-30*time.Second)
		return b
	}
	tests := []struct {
		name    string
		booking *reconcile.Booking // nil: no booking
		hold    *reconcile.Hold    // nil: no hold
		kind    reconcile.Kind     // "" when they agree
		fix     reconcile.Action
	}{
		{"held and held", bk(booking.Held), hd(flight.HoldHeld), "", ""},
		{"confirmed and sold", bk(booking.Confirmed), hd(flight.HoldSold), "", ""},
		{"cancelled and released", bk(booking.Cancelled), hd(flight.HoldReleased), "", ""},
		{"expired, tombstone", bk(booking.Expired), hd(flight.HoldReleased), "", ""},
		{"expired, no hold", bk(booking.Expired), nil, "", ""},
		{"rejected and rejected", bk(booking.Rejected), hd(flight.HoldRejected), "", ""},
		{"tombstone without booking", nil, hd(flight.HoldReleased), "", ""},
		{"rejection without booking", nil, hd(flight.HoldRejected), "", ""},

		{"held for a missing booking", nil, hd(flight.HoldHeld), reconcile.OrphanHold, reconcile.Release},
		{"sold for a missing booking", nil, hd(flight.HoldSold), reconcile.OrphanHold, reconcile.Release},
		{"rejected booking with held seats", bk(booking.Rejected), hd(flight.HoldHeld), reconcile.EndedHoldsSeats, reconcile.Release},
		{"expired booking with held seats", bk(booking.Expired), hd(flight.HoldHeld), reconcile.EndedHoldsSeats, reconcile.Release},
		{"cancelled booking with sold seats", bk(booking.Cancelled), hd(flight.HoldSold), reconcile.EndedHoldsSeats, reconcile.Release},
		{"confirmed, only held", bk(booking.Confirmed), hd(flight.HoldHeld), reconcile.ConfirmedNotSold, reconcile.Confirm},
		{"confirmed, released", bk(booking.Confirmed), hd(flight.HoldReleased), reconcile.ConfirmedNoSeats, ""},
		{"confirmed, no hold", bk(booking.Confirmed), nil, reconcile.ConfirmedNoSeats, ""},
		{"held, no hold", bk(booking.Held), nil, reconcile.HeldNoSeats, reconcile.RequestHold},
		{"held, released", bk(booking.Held), hd(flight.HoldReleased), reconcile.HeldNoSeats, ""},
		{"held, sold", bk(booking.Held), hd(flight.HoldSold), reconcile.HeldNoSeats, ""},
		{"pending too long, no hold", bk(booking.Pending), nil, reconcile.PendingStuck, reconcile.RequestHold},
		{"pending too long, reply lost", bk(booking.Pending), hd(flight.HoldHeld), reconcile.PendingStuck, reconcile.RequestHold},
		{"held on another flight", bk(booking.Held), &reconcile.Hold{BookingID: id, FlightID: 8, Seats: 2, Status: flight.HoldHeld, UpdatedAt: old}, reconcile.Mismatch, ""},
		{"held, other seat count", bk(booking.Held), &reconcile.Hold{BookingID: id, FlightID: 7, Seats: 3, Status: flight.HoldHeld, UpdatedAt: old}, reconcile.Mismatch, ""},

		// The saga's next message may still be on its way: left alone.
		{"pending, young", young(bk(booking.Pending)), nil, "", ""},
		{"just cancelled, release on its way", recent(bk(booking.Cancelled)), hd(flight.HoldHeld), "", ""},
		{"just paid, confirm on its way", recent(bk(booking.Confirmed)), hd(flight.HoldHeld), "", ""},
		{"orphan just held", nil, &reconcile.Hold{BookingID: id, FlightID: 7, Seats: 2, Status: flight.HoldHeld, UpdatedAt: now}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var bs []reconcile.Booking
			var hs []reconcile.Hold
			if tc.booking != nil {
				bs = append(bs, *tc.booking)
			}
			if tc.hold != nil {
				hs = append(hs, *tc.hold)
			}
			ds := reconcile.Compare(bs, hs, now, rules)
			if tc.kind == "" {
				if len(ds) != 0 {
					t.Fatalf("divergences %v, want none", ds)
				}
				return
			}
			if len(ds) != 1 {
				t.Fatalf("divergences %v, want one %s", ds, tc.kind)
			}
			d := ds[0]
			if d.Kind != tc.kind || d.Fix != tc.fix || d.BookingID != id || d.Note == "" {
				t.Fatalf("got %+v, want %s with fix %q", d, tc.kind, tc.fix)
			}
			if d.NeedsHuman() != (tc.fix == "") {
				t.Errorf("NeedsHuman %v", d.NeedsHuman())
			}
		})
	}
}

// TestCompareOrders lists divergences by flight, then booking, whatever order the services
// answered in.
func TestCompareOrders(t *testing.T) {
	t.Parallel()
	b := func(id string, f int64) reconcile.Booking {
		return reconcile.Booking{ID: id, FlightID: f, Seats: 1, Status: booking.Held, CreatedAt: old, UpdatedAt: old}
	}
	ds := reconcile.Compare([]reconcile.Booking{b("c", 2), b("b", 1), b("a", 2)},
		[]reconcile.Hold{{BookingID: "0", FlightID: 1, Seats: 1, Status: flight.HoldSold, UpdatedAt: old}}, now, rules)
	var got []string
	for _, d := range ds {
		got = append(got, d.BookingID)
	}
	if want := []string{"0", "b", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}
