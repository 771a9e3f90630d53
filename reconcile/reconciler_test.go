package reconcile_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flightbook/flightbook/reconcile"
	"github.com/flightbook/flightbook/services/flight"
)

// TestCheckSnapshots: a hold that appears between the bookings read and the second holds
// read belongs to a booking too new to be in the snapshot and is no orphan; a hold seen
// before the bookings were read with no booking is one, and is repaired with the seats the
// hold names. Last reports the count.
func TestCheckSnapshots(t *testing.T) {
	t.Parallel()
	// The Reconciler reads the wall clock; these holds last changed an hour before it.
	long := time.Now().Add(-time.Hour)
	orphan := reconcile.Hold{BookingID: "a", FlightID: 7, Seats: 2, Status: flight.HoldHeld, UpdatedAt: long}
	fresh := reconcile.Hold{BookingID: "b", FlightID: 7, Seats: 1, Status: flight.HoldHeld, UpdatedAt: long}
	reads := 0
	var repaired []reconcile.Divergence
	r := reconcile.New(reconcile.Sources{
		Holds: func(context.Context, int64) ([]reconcile.Hold, error) {
			reads++
			if reads == 1 {
				return []reconcile.Hold{orphan}, nil
			}
			return []reconcile.Hold{orphan, fresh}, nil
		},
		Bookings: func(context.Context, int64) ([]reconcile.Booking, error) { return nil, nil },
		Repair: func(_ context.Context, d reconcile.Divergence) error {
			repaired = append(repaired, d)
			return errors.New("booking service down")
		},
	}, rules)
	ds, err := r.Check(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].BookingID != "a" || ds[0].Kind != reconcile.OrphanHold || ds[0].Seats != 2 {
		t.Fatalf("divergences %v, want the orphan hold of a only", ds)
	}
	if n, at := r.Last(); n != 1 || at.IsZero() {
		t.Fatalf("Last() = %d, %v", n, at)
	}
	remaining, errs := r.Fix(context.Background(), ds)
	if len(repaired) != 1 || len(remaining) != 1 || len(errs) != 1 {
		t.Fatalf("a failed repair: repaired %v, remaining %v, errors %v", repaired, remaining, errs)
	}
}
