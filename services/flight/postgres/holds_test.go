package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// TestHoldsPage pages through a flight's holds in booking id order, with every status, and
// leaves the other flight's holds out.
func TestHoldsPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	dep := time.Now().Add(48 * time.Hour)
	f, other := seedFlight(t, pool, 20, dep, flight.StatusScheduled), seedFlight(t, pool, 20, dep, flight.StatusScheduled)

	want := map[string]flight.HoldStatus{}
	for i := range 5 {
		id := uuid.NewString()
		_, err := inv.Hold(ctx, flight.HoldRequest{BookingID: id, FlightID: f, Seats: 1})
		testenv.Fatal(t, "hold", err)
		want[id] = flight.HoldHeld
		switch i {
		case 1:
			_, err = inv.Confirm(ctx, id)
			want[id] = flight.HoldSold
		case 2:
			_, err = inv.Release(ctx, id, f)
			want[id] = flight.HoldReleased
		}
		testenv.Fatal(t, "change hold", err)
	}
	_, err := inv.Hold(ctx, flight.HoldRequest{BookingID: uuid.NewString(), FlightID: other, Seats: 1})
	testenv.Fatal(t, "hold on the other flight", err)

	got := map[string]flight.HoldStatus{}
	after, pages, last := "", 0, ""
	for {
		hs, next, err := inv.HoldsPage(ctx, flight.HoldsQuery{FlightID: f, After: after, Limit: 2})
		testenv.Fatal(t, "page", err)
		pages++
		for _, h := range hs {
			if h.FlightID != f {
				t.Fatalf("hold of flight %d in flight %d's page", h.FlightID, f)
			}
			if h.BookingID <= last {
				t.Fatalf("booking %s after %s: not in id order", h.BookingID, last)
			}
			last = h.BookingID
			got[h.BookingID] = h.Status
		}
		if next == "" {
			break
		}
		after = next
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages, %d holds; want 3 pages, %d holds", pages, len(got), len(want))
	}
	for id, s := range want {
		if got[id] != s {
			t.Errorf("hold %s: %s, want %s", id, got[id], s)
		}
	}

	all, next, err := inv.HoldsPage(ctx, flight.HoldsQuery{Limit: 100})
	testenv.Fatal(t, "every flight", err)
	if len(all) != 6 || next != "" {
		t.Fatalf("every flight: %d holds, next %q; want 6 and none", len(all), next)
	}
	if _, _, err := inv.HoldsPage(ctx, flight.HoldsQuery{After: "not-a-uuid", Limit: 1}); err == nil {
		t.Fatal("a cursor that is not a booking id was accepted")
	}
}
