package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

// testRepair re-sends each command only to a booking whose status it fits, with a history
// line and no change of status; anything else is refused and writes nothing.
func testRepair(t *testing.T, e *env) {
	ctx := context.Background()

	pending, err := e.store.Create(ctx, "alice", 7, 1)
	testenv.Fatal(t, "create", err)
	held := e.held(t, "bob")
	confirmed := e.held(t, "carol")
	_, err = e.store.Apply(ctx, confirmed.ID, booking.Pay{Amount: 10000, Currency: "EUR", PaymentID: uuid.NewString()})
	testenv.Fatal(t, "pay", err)
	cancelled := e.held(t, "dan")
	_, err = e.store.Apply(ctx, cancelled.ID, booking.Cancel{})
	testenv.Fatal(t, "cancel", err)
	rejected, err := e.store.Create(ctx, "erin", 7, 1)
	testenv.Fatal(t, "create", err)
	_, err = e.store.Apply(ctx, rejected.ID, booking.SeatHoldRejected{Reason: "sold_out"})
	testenv.Fatal(t, "reject", err)
	expired, err := e.store.Create(ctx, "frank", 7, 1)
	testenv.Fatal(t, "create", err)
	e.clock.Advance(rules.PendingTimeout)
	_, err = e.store.Apply(ctx, expired.ID, booking.Expire{})
	testenv.Fatal(t, "expire", err)

	tests := []struct {
		id     string
		repair booking.Repair
		effect string // "" when refused
	}{
		{pending.ID, booking.RepairRequestHold, "request_hold"},
		{pending.ID, booking.RepairRelease, ""},
		{pending.ID, booking.RepairConfirm, ""},
		{held.ID, booking.RepairRequestHold, "request_hold"},
		{held.ID, booking.RepairRelease, ""},
		{confirmed.ID, booking.RepairConfirm, "request_confirm"},
		{confirmed.ID, booking.RepairRequestHold, ""},
		{cancelled.ID, booking.RepairRelease, "request_release:cancelled"},
		{cancelled.ID, booking.RepairConfirm, ""},
		{rejected.ID, booking.RepairRelease, "request_release:late_hold"},
		{expired.ID, booking.RepairRelease, "request_release:expired"},
		{expired.ID, booking.RepairRequestHold, ""},
	}
	for _, tc := range tests {
		before, err := e.store.Get(ctx, tc.id)
		testenv.Fatal(t, "get", err)
		emitted, causes := e.emitted(t, tc.id), e.causes(t, tc.id)
		c, err := e.store.Repair(ctx, tc.id, tc.repair)
		after, gerr := e.store.Get(ctx, tc.id)
		testenv.Fatal(t, "get", gerr)
		if tc.effect == "" {
			if !errors.Is(err, booking.ErrInvalidTransition) {
				t.Errorf("%s of a %s booking: %v, want ErrInvalidTransition", tc.repair, before.Status, err)
			}
			if after != before || !slices.Equal(e.emitted(t, tc.id), emitted) || !slices.Equal(e.causes(t, tc.id), causes) {
				t.Errorf("refused %s of a %s booking wrote something", tc.repair, before.Status)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s of a %s booking: %v", tc.repair, before.Status, err)
			continue
		}
		if after.Status != before.Status || after.Version != before.Version+1 || c.Booking != after {
			t.Errorf("%s of a %s booking: became %+v", tc.repair, before.Status, after)
		}
		if got, want := e.emitted(t, tc.id), append(emitted, tc.effect); !slices.Equal(got, want) {
			t.Errorf("%s of a %s booking: emitted %v, want %v", tc.repair, before.Status, got, want)
		}
		if got, want := e.causes(t, tc.id), append(causes, "reconcile_"+string(tc.repair)); !slices.Equal(got, want) {
			t.Errorf("%s of a %s booking: history %v, want %v", tc.repair, before.Status, got, want)
		}
	}
	if _, err := e.store.Repair(ctx, uuid.NewString(), booking.RepairRelease); !errors.Is(err, booking.ErrNotFound) {
		t.Errorf("repair of an unknown booking: %v", err)
	}

	// Seats held for a booking nobody has are released; for one that exists, its status decides.
	orphan := uuid.NewString()
	testenv.Fatal(t, "release orphan", e.store.ReleaseOrphan(ctx, orphan, 7, 2))
	if got := e.emitted(t, orphan); !slices.Equal(got, []string{"request_release:late_hold"}) {
		t.Errorf("orphan emitted %v", got)
	}
	if err := e.store.ReleaseOrphan(ctx, held.ID, 7, 2); !errors.Is(err, booking.ErrInvalidTransition) {
		t.Errorf("release orphan of an existing booking: %v", err)
	}
}

// testListByFlight pages through every user's bookings of one flight, oldest first.
func testListByFlight(t *testing.T, e *env) {
	ctx := context.Background()
	var want []string
	for i, user := range []string{"a", "b", "c", "d", "e"} {
		b, err := e.store.Create(ctx, user, 7, 1)
		testenv.Fatal(t, "create", err)
		want = append(want, b.ID)
		if i == 2 {
			_, err := e.store.Create(ctx, user, 8, 1) // another flight
			testenv.Fatal(t, "create", err)
		}
	}
	var got []string
	after, pages := "", 0
	for {
		bs, next, err := e.store.ListByFlight(ctx, booking.FlightQuery{FlightID: 7, After: after, Limit: 2})
		testenv.Fatal(t, "list", err)
		pages++
		for _, b := range bs {
			got = append(got, b.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("%d pages: %v, want %v", pages, got, want)
	}
	all, _, err := e.store.ListByFlight(ctx, booking.FlightQuery{Limit: 100})
	testenv.Fatal(t, "list all", err)
	if len(all) != 6 {
		t.Fatalf("every flight: %d bookings, want 6", len(all))
	}
}
