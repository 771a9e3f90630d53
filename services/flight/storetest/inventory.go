package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/testenv"
)

func counts(t *testing.T, inv flight.Inventory, flightID int64) flight.SeatCounts {
	t.Helper()
	c, err := inv.SeatCounts(context.Background(), flightID)
	testenv.Fatal(t, "seat counts", err)
	if !c.Balanced() {
		t.Fatalf("invariant broken on flight %d: %+v", flightID, c)
	}
	return c
}

// testHoldOutcomes checks every outcome of a hold, and that asking again gets the same
// outcome and changes nothing.
func testHoldOutcomes(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	future := time.Now().Add(48 * time.Hour)
	open := seedFlight(t, s.Catalog, 3, future, flight.StatusScheduled)
	cancelled := seedFlight(t, s.Catalog, 3, future, flight.StatusCancelled)
	departed := seedFlight(t, s.Catalog, 3, time.Now().Add(-time.Hour), flight.StatusScheduled)

	tests := []struct {
		name   string
		req    flight.HoldRequest
		status flight.HoldStatus
		reason string
	}{
		{"held", flight.HoldRequest{BookingID: newBooking(), FlightID: open, Seats: 2}, flight.HoldHeld, ""},
		{"sold out", flight.HoldRequest{BookingID: newBooking(), FlightID: open, Seats: 2}, flight.HoldRejected, flight.ReasonSoldOut},
		{"unknown flight", flight.HoldRequest{BookingID: newBooking(), FlightID: 999999, Seats: 1}, flight.HoldRejected, flight.ReasonFlightNotFound},
		{"cancelled flight", flight.HoldRequest{BookingID: newBooking(), FlightID: cancelled, Seats: 1}, flight.HoldRejected, flight.ReasonFlightClosed},
		{"departed flight", flight.HoldRequest{BookingID: newBooking(), FlightID: departed, Seats: 1}, flight.HoldRejected, flight.ReasonFlightClosed},
		{"zero seats", flight.HoldRequest{BookingID: newBooking(), FlightID: open, Seats: 0}, flight.HoldRejected, flight.ReasonInvalidRequest},
		{"ten seats", flight.HoldRequest{BookingID: newBooking(), FlightID: open, Seats: 10}, flight.HoldRejected, flight.ReasonInvalidRequest},
		{"bad booking id", flight.HoldRequest{BookingID: "nope", FlightID: open, Seats: 1}, flight.HoldRejected, flight.ReasonInvalidRequest},
	}
	for _, tc := range tests {
		h, err := inv.Hold(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.Status != tc.status || h.Reason != tc.reason {
			t.Errorf("%s: got %s/%q, want %s/%q", tc.name, h.Status, h.Reason, tc.status, tc.reason)
		}
		before := counts(t, inv, open)
		again, err := inv.Hold(ctx, tc.req)
		if err != nil || again.Status != h.Status || again.Reason != h.Reason {
			t.Errorf("%s: repeat gave %s/%q (%v), first %s/%q", tc.name, again.Status, again.Reason, err, h.Status, h.Reason)
		}
		if after := counts(t, inv, open); after != before {
			t.Errorf("%s: repeat changed counts %+v -> %+v", tc.name, before, after)
		}
	}
	if h, _ := inv.Hold(ctx, tests[0].req); h.Total != 2*fare || h.UnitPrice != fare || h.Currency != "INR" {
		t.Errorf("price: got %d x %d %s", h.UnitPrice, h.Total, h.Currency)
	}
	if c := counts(t, inv, open); c.Available != 1 || c.Held != 2 {
		t.Errorf("counts after one hold of 2 on 3 seats: %+v", c)
	}
	if h, ok, err := inv.HoldOf(ctx, tests[0].req.BookingID); err != nil || !ok || h.Status != flight.HoldHeld || h.Seats != 2 || h.Total != 2*fare {
		t.Errorf("HoldOf the held booking: %+v %v %v", h, ok, err)
	}
	if _, ok, err := inv.HoldOf(ctx, newBooking()); err != nil || ok {
		t.Errorf("HoldOf an unknown booking: %v %v", ok, err)
	}
}

// testReleaseConfirmAndTombstone checks confirm and release, their repeats, a release that
// overtakes its hold, and the holds' standing afterwards.
func testReleaseConfirmAndTombstone(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	f := seedFlight(t, s.Catalog, 10, time.Now().Add(48*time.Hour), flight.StatusScheduled)

	paid, cancelled, late := newBooking(), newBooking(), newBooking()
	for _, id := range []string{paid, cancelled} {
		if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: id, FlightID: f, Seats: 2}); err != nil || h.Status != flight.HoldHeld {
			t.Fatalf("hold %s: %v %v", id, h.Status, err)
		}
	}
	for range 2 { // the second confirm and release are no-ops
		if h, err := inv.Confirm(ctx, paid); err != nil || h.Status != flight.HoldSold {
			t.Fatalf("confirm: %v %v", h.Status, err)
		}
		if h, err := inv.Release(ctx, cancelled, f); err != nil || h.Status != flight.HoldReleased || h.Seats != 2 {
			t.Fatalf("release: %+v %v", h, err)
		}
	}
	if c := counts(t, inv, f); c.Available != 8 || c.Held != 0 || c.Sold != 2 {
		t.Errorf("after confirm and release: %+v", c)
	}
	if _, err := inv.Confirm(ctx, cancelled); !errors.Is(err, flight.ErrHoldReleased) {
		t.Errorf("confirming a released hold: %v, want ErrHoldReleased", err)
	}
	if _, err := inv.Confirm(ctx, newBooking()); !errors.Is(err, flight.ErrHoldNotFound) {
		t.Errorf("confirming an unknown hold: %v, want ErrHoldNotFound", err)
	}

	// A release that overtakes its hold leaves a tombstone; the late hold is refused.
	if h, err := inv.Release(ctx, late, f); err != nil || h.Seats != 0 {
		t.Fatalf("early release: %+v %v", h, err)
	}
	if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: late, FlightID: f, Seats: 1}); err != nil || h.Held() || h.Reason == "" {
		t.Fatalf("late hold after tombstone: %+v %v", h, err)
	}

	// A confirmed booking can be cancelled: its sold seats go back on sale.
	if h, err := inv.Release(ctx, paid, f); err != nil || h.Seats != 2 {
		t.Fatalf("release sold: %+v %v", h, err)
	}
	if c := counts(t, inv, f); c.Available != 10 || c.Sold != 0 {
		t.Errorf("after releasing everything: %+v", c)
	}

	// A rejected hold has nothing to confirm and nothing to give back.
	full := seedFlight(t, s.Catalog, 1, time.Now().Add(48*time.Hour), flight.StatusScheduled)
	refused := newBooking()
	if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: refused, FlightID: full, Seats: 2}); err != nil || h.Reason != flight.ReasonSoldOut {
		t.Fatalf("hold 2 of 1: %+v %v", h, err)
	}
	if _, err := inv.Confirm(ctx, refused); !errors.Is(err, flight.ErrHoldNotFound) {
		t.Errorf("confirm rejected hold: %v, want ErrHoldNotFound", err)
	}
	if h, err := inv.Release(ctx, refused, full); err != nil || h.Seats != 0 || h.Status != flight.HoldRejected {
		t.Errorf("release rejected hold: %+v %v", h, err)
	}
	if c := counts(t, inv, full); c.Available != 1 {
		t.Errorf("rejected hold changed counts: %+v", c)
	}

	// The admin read gives every booking's standing; unknown and malformed ids are absent.
	got, err := inv.HoldsOf(ctx, []string{paid, cancelled, late, refused, newBooking(), "nope"})
	testenv.Fatal(t, "holds of", err)
	want := map[string]flight.HoldStatus{paid: flight.HoldReleased, cancelled: flight.HoldReleased, late: flight.HoldReleased, refused: flight.HoldRejected}
	if len(got) != len(want) {
		t.Errorf("HoldsOf returned %d holds, want %d: %+v", len(got), len(want), got)
	}
	for id, status := range want {
		if got[id].Status != status {
			t.Errorf("HoldsOf[%s] = %s, want %s", id, got[id].Status, status)
		}
	}
	if got[late].Seats != 0 || got[paid].Seats != 2 {
		t.Errorf("tombstone has %d seats, released sale %d; want 0 and 2", got[late].Seats, got[paid].Seats)
	}
	list, err := inv.Holds(ctx, f)
	testenv.Fatal(t, "holds", err)
	if len(list) != 3 {
		t.Errorf("flight %d lists %d holds, want 3", f, len(list))
	}
	audit(t, inv, f)
}

// testHoldBatch decides a batch with every kind of outcome, then the same batch again.
func testHoldBatch(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	future := time.Now().Add(48 * time.Hour)
	a := seedFlight(t, s.Catalog, 5, future, flight.StatusScheduled)
	b := seedFlight(t, s.Catalog, 5, future, flight.StatusScheduled)
	closed := seedFlight(t, s.Catalog, 5, future, flight.StatusCancelled)

	before, tomb := newBooking(), newBooking()
	if _, err := inv.Hold(ctx, flight.HoldRequest{BookingID: before, FlightID: a, Seats: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Release(ctx, tomb, a); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = newBooking()
	}
	reqs := []flight.HoldRequest{
		{BookingID: ids[0], FlightID: a, Seats: 3},      // held: 4 left before it
		{BookingID: ids[1], FlightID: a, Seats: 2},      // sold out: 1 left
		{BookingID: ids[2], FlightID: a, Seats: 1},      // held: the last seat
		{BookingID: ids[0], FlightID: a, Seats: 3},      // duplicate in the batch: first outcome
		{BookingID: before, FlightID: a, Seats: 1},      // recorded before: that outcome
		{BookingID: tomb, FlightID: a, Seats: 1},        // released before: refused
		{BookingID: ids[3], FlightID: b, Seats: 5},      // another flight: held
		{BookingID: ids[4], FlightID: closed, Seats: 1}, // cancelled
		{BookingID: ids[5], FlightID: 999999, Seats: 1}, // unknown
		{BookingID: "nope", FlightID: a, Seats: 1},      // invalid, not recorded
	}
	want := []struct {
		status flight.HoldStatus
		reason string
	}{
		{flight.HoldHeld, ""}, {flight.HoldRejected, flight.ReasonSoldOut}, {flight.HoldHeld, ""}, {flight.HoldHeld, ""},
		{flight.HoldHeld, ""}, {flight.HoldReleased, flight.ReasonInvalidRequest}, {flight.HoldHeld, ""},
		{flight.HoldRejected, flight.ReasonFlightClosed}, {flight.HoldRejected, flight.ReasonFlightNotFound},
		{flight.HoldRejected, flight.ReasonInvalidRequest},
	}
	check := func(round string, hs []flight.Hold) {
		t.Helper()
		if len(hs) != len(reqs) {
			t.Fatalf("%s: %d outcomes for %d requests", round, len(hs), len(reqs))
		}
		for i, h := range hs {
			if h.BookingID != reqs[i].BookingID || h.Status != want[i].status || h.Reason != want[i].reason {
				t.Errorf("%s: request %d (%s): got %s/%q, want %s/%q", round, i, h.BookingID, h.Status, h.Reason, want[i].status, want[i].reason)
			}
		}
		if hs[0].Total != 3*fare || hs[6].Total != 5*fare {
			t.Errorf("%s: totals %d and %d", round, hs[0].Total, hs[6].Total)
		}
		if c := audit(t, inv, a); c.Available != 0 || c.Held != 5 {
			t.Errorf("%s: flight a %+v, want all 5 held", round, c)
		}
		if c := audit(t, inv, b); c.Available != 0 || c.Held != 5 {
			t.Errorf("%s: flight b %+v, want all 5 held", round, c)
		}
	}
	hs, err := inv.HoldBatch(ctx, reqs)
	testenv.Fatal(t, "hold batch", err)
	check("first", hs)
	// The whole batch delivered again, as after a crash before the ack, changes nothing.
	hs, err = inv.HoldBatch(ctx, reqs)
	testenv.Fatal(t, "hold batch again", err)
	check("again", hs)
	if hs, err := inv.HoldBatch(ctx, nil); err != nil || len(hs) != 0 {
		t.Errorf("empty batch: %v %v", hs, err)
	}
}

// testAuditFindsDrift moves a seat behind the inventory's back: the balance holds, the books
// do not, and Audit says so.
func testAuditFindsDrift(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	f := seedFlight(t, s.Catalog, 10, time.Now().Add(48*time.Hour), flight.StatusScheduled)
	if _, err := inv.Hold(ctx, flight.HoldRequest{BookingID: newBooking(), FlightID: f, Seats: 2}); err != nil {
		t.Fatal(err)
	}
	audit(t, inv, f)
	testenv.Fatal(t, "drift", s.TakeSeat(ctx, f))
	a, err := inv.Audit(ctx, f)
	testenv.Fatal(t, "audit", err)
	if p := a.Problems(); len(p) != 1 || a.Held != 2 || a.Counts.Held != 3 {
		t.Errorf("audit after drift: %+v, problems %q", a, p)
	}
	if _, err := inv.Audit(ctx, 999999); !errors.Is(err, flight.ErrNotFound) {
		t.Errorf("audit of unknown flight: %v", err)
	}
}

// testHoldsPage pages through a flight's holds in booking id order, with every status, and
// leaves the other flight's holds out.
func testHoldsPage(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	dep := time.Now().Add(48 * time.Hour)
	f, other := seedFlight(t, s.Catalog, 20, dep, flight.StatusScheduled), seedFlight(t, s.Catalog, 20, dep, flight.StatusScheduled)

	want := map[string]flight.HoldStatus{}
	for i := range 5 {
		id := newBooking()
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
	_, err := inv.Hold(ctx, flight.HoldRequest{BookingID: newBooking(), FlightID: other, Seats: 1})
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

// testConfirmRacesRelease delivers, for each of 50 held bookings, a confirm and two copies of
// a release at once: whichever order they run in, the seats come back exactly once and a
// confirm that finds the hold gone says so.
func testConfirmRacesRelease(t *testing.T, s Stores) {
	inv := s.Inventory
	ctx := context.Background()
	f := seedFlight(t, s.Catalog, 100, time.Now().Add(48*time.Hour), flight.StatusScheduled)
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = newBooking()
		if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: ids[i], FlightID: f, Seats: 2}); err != nil || !h.Held() {
			t.Fatalf("hold: %+v %v", h, err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	confirmed, refused := 0, 0
	for _, id := range ids {
		wg.Go(func() {
			<-start
			_, err := inv.Confirm(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				confirmed++
			case errors.Is(err, flight.ErrHoldReleased):
				refused++
			default:
				t.Error(err)
			}
		})
		for range 2 {
			wg.Go(func() {
				<-start
				if h, err := inv.Release(ctx, id, f); err != nil || h.Status != flight.HoldReleased || h.Seats != 2 {
					t.Errorf("release %s: %+v %v", id, h, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if c := audit(t, inv, f); c.Available != 100 || c.Held != 0 || c.Sold != 0 {
		t.Errorf("after every booking was released: %+v", c)
	}
	if confirmed+refused != len(ids) {
		t.Errorf("%d confirmed + %d refused != %d bookings", confirmed, refused, len(ids))
	}
}

// testNoOversell is the test the seed failed: 500 concurrent one-seat holds on a 100-seat
// flight, with duplicate deliveries and releases mixed in, one hold per transaction and in
// batches of ten.
func testNoOversell(t *testing.T, s Stores) {
	for _, batch := range []int{1, 10} {
		for _, mode := range []string{"plain", "duplicates", "releases"} {
			t.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(t *testing.T) {
				t.Parallel()
				oversell(t, s, mode, batch)
			})
		}
	}
}

func oversell(t *testing.T, s Stores, mode string, batch int) {
	inv := s.Inventory
	f := seedFlight(t, s.Catalog, 100, time.Now().Add(48*time.Hour), flight.StatusScheduled)
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = newBooking()
	}
	reqs := make([]flight.HoldRequest, 0, 1000)
	for _, id := range ids {
		reqs = append(reqs, flight.HoldRequest{BookingID: id, FlightID: f, Seats: 1})
	}
	if mode == "duplicates" { // every booking delivered twice, the copies in another order
		dup := slices.Clone(reqs)
		rand.Shuffle(len(dup), func(i, j int) { dup[i], dup[j] = dup[j], dup[i] })
		reqs = append(reqs, dup...)
	}

	var (
		mu       sync.Mutex
		outcomes = map[string][]flight.Hold{}
		releases = map[string]flight.Hold{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
		answered = map[string]chan struct{}{} // closed when the booking's first hold is answered
	)
	for _, id := range ids {
		answered[id] = make(chan struct{})
	}
	for chunk := range slices.Chunk(reqs, batch) {
		wg.Go(func() {
			<-start
			var hs []flight.Hold
			var err error
			if batch == 1 {
				var h flight.Hold
				h, err = inv.Hold(context.Background(), chunk[0])
				hs = []flight.Hold{h}
			} else {
				hs, err = inv.HoldBatch(context.Background(), chunk)
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, h := range hs {
				outcomes[h.BookingID] = append(outcomes[h.BookingID], h)
				if len(outcomes[h.BookingID]) == 1 {
					close(answered[h.BookingID])
				}
			}
		})
	}
	if mode == "releases" {
		// Every fifth booking is cancelled once its hold is answered, as the saga would, while
		// the burst goes on; every 25th is cancelled at once, so its release may overtake its
		// hold and leave a tombstone.
		for i := 0; i < len(ids); i += 5 {
			wg.Go(func() {
				<-start
				if i%25 != 0 {
					<-answered[ids[i]]
				}
				h, err := inv.Release(context.Background(), ids[i], f)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				releases[ids[i]] = h
				mu.Unlock()
			})
		}
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	c := audit(t, inv, f)
	if c.Available+c.Held+c.Sold != 100 || c.Available < 0 {
		t.Fatalf("flight counters %+v", c)
	}
	var granted, soldOut, refused, givenBack int
	for _, id := range ids {
		hs := outcomes[id]
		if len(hs) == 0 {
			t.Fatalf("booking %s got no answer", id)
		}
		for _, h := range hs[1:] { // every delivery of a booking gets the same answer
			if h.Status != hs[0].Status || h.Reason != hs[0].Reason {
				t.Errorf("booking %s answered %s/%q and %s/%q", id, hs[0].Status, hs[0].Reason, h.Status, h.Reason)
			}
		}
		h := hs[0]
		rel, wasReleased := releases[id]
		switch {
		case h.Held():
			granted++
		case h.Reason == flight.ReasonSoldOut:
			soldOut++
		case h.Status == flight.HoldReleased && wasReleased && rel.Seats == 0:
			refused++ // the release overtook the hold and left a tombstone
		default:
			t.Errorf("booking %s: unexpected outcome %s/%q (release %+v)", id, h.Status, h.Reason, rel)
		}
		if wasReleased && rel.Seats > 0 {
			if !h.Held() {
				t.Errorf("booking %s gave back %d seats it was never granted", id, rel.Seats)
			}
			givenBack += rel.Seats
		}
	}
	switch mode {
	case "plain", "duplicates":
		if granted != 100 || soldOut != 400 || c.Available != 0 || c.Held != 100 {
			t.Fatalf("granted %d, sold out %d, counts %+v; want 100 held, 400 sold_out", granted, soldOut, c)
		}
	case "releases":
		// Seats given back may be granted again, so more than 100 bookings can have been
		// granted; but a sold-out answer means all 100 were taken at that moment, so at
		// least 100 were, and what is still held is exactly what was granted and not given back.
		if granted < 100 || granted+soldOut+refused != len(ids) || c.Held != granted-givenBack || c.Available != 100-c.Held {
			t.Fatalf("granted %d, sold out %d, refused %d, given back %d, counts %+v", granted, soldOut, refused, givenBack, c)
		}
	}
}
