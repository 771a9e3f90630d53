package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/flightbook/flightbook/migrate"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// newInventoryTestDB returns a pool on a fresh, migrated database.
func newInventoryTestDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	testenv.Fatal(t, "parse url", err)
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Fatal(t, "open pool", err)
	t.Cleanup(pool.Close)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	testenv.Fatal(t, "migrate", migrate.Up(context.Background(), goose.DialectPostgres, db, os.DirFS("migrations"), discardLog()))
	return pool
}

// seedFlight creates the catalogue a flight needs and returns the flight's id.
func seedFlight(t testing.TB, pool *pgxpool.Pool, seats int, departure time.Time, status string) int64 {
	t.Helper()
	ctx := context.Background()
	var city, plane, id int64
	suffix := uuid.NewString()[:8]
	testenv.Fatal(t, "city", pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ($1, 'IN') RETURNING id`, "City "+suffix).Scan(&city))
	_, _ = pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1) ON CONFLICT DO NOTHING`, city)
	testenv.Fatal(t, "airplane", pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', $1) RETURNING id`, seats).Scan(&plane))
	testenv.Fatal(t, "flight", pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, status, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 450000, 'INR', $4, $5, $5) RETURNING id`,
		plane, departure, departure.Add(2*time.Hour), status, seats).Scan(&id))
	return id
}

func counts(t *testing.T, inv *postgres.Inventory, flightID int64) flight.SeatCounts {
	t.Helper()
	c, err := inv.SeatCounts(context.Background(), flightID)
	testenv.Fatal(t, "seat counts", err)
	if !c.Balanced() {
		t.Fatalf("invariant broken on flight %d: %+v", flightID, c)
	}
	return c
}

// heldInHolds sums the seats the holds table says are held and sold, which must equal the
// flight's counters.
func heldInHolds(t *testing.T, pool *pgxpool.Pool, flightID int64) (held, sold int) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `
		SELECT coalesce(sum(seats) FILTER (WHERE status = 'held'), 0), coalesce(sum(seats) FILTER (WHERE status = 'sold'), 0)
		FROM holds WHERE flight_id = $1`, flightID).Scan(&held, &sold)
	testenv.Fatal(t, "sum holds", err)
	return held, sold
}

func TestHoldOutcomes(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	future := time.Now().Add(48 * time.Hour)
	open := seedFlight(t, pool, 3, future, "scheduled")
	cancelled := seedFlight(t, pool, 3, future, "cancelled")
	departed := seedFlight(t, pool, 3, time.Now().Add(-time.Hour), "scheduled")

	tests := []struct {
		name   string
		req    flight.HoldRequest
		status flight.HoldStatus
		reason string
	}{
		{"held", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: open, Seats: 2}, flight.HoldHeld, ""},
		{"sold out", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: open, Seats: 2}, flight.HoldRejected, flight.ReasonSoldOut},
		{"unknown flight", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: 999999, Seats: 1}, flight.HoldRejected, flight.ReasonFlightNotFound},
		{"cancelled flight", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: cancelled, Seats: 1}, flight.HoldRejected, flight.ReasonFlightClosed},
		{"departed flight", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: departed, Seats: 1}, flight.HoldRejected, flight.ReasonFlightClosed},
		{"zero seats", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: open, Seats: 0}, flight.HoldRejected, flight.ReasonInvalidRequest},
		{"ten seats", flight.HoldRequest{BookingID: uuid.NewString(), FlightID: open, Seats: 10}, flight.HoldRejected, flight.ReasonInvalidRequest},
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
		// Asking again returns the same outcome and changes nothing.
		before := counts(t, inv, open)
		again, err := inv.Hold(ctx, tc.req)
		if err != nil || again.Status != h.Status || again.Reason != h.Reason {
			t.Errorf("%s: repeat gave %s/%q (%v), first %s/%q", tc.name, again.Status, again.Reason, err, h.Status, h.Reason)
		}
		if after := counts(t, inv, open); after != before {
			t.Errorf("%s: repeat changed counts %+v -> %+v", tc.name, before, after)
		}
	}
	if h, _ := inv.Hold(ctx, tests[0].req); h.Total != 900000 || h.UnitPrice != 450000 || h.Currency != "INR" {
		t.Errorf("price: got %d x %d %s", h.UnitPrice, h.Total, h.Currency)
	}
	if c := counts(t, inv, open); c.Available != 1 || c.Held != 2 {
		t.Errorf("counts after one hold of 2 on 3 seats: %+v", c)
	}
}

func TestReleaseConfirmAndTombstone(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")

	paid, cancelled, late := uuid.NewString(), uuid.NewString(), uuid.NewString()
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
	if _, err := inv.Confirm(ctx, uuid.NewString()); !errors.Is(err, flight.ErrHoldNotFound) {
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
	full := seedFlight(t, pool, 1, time.Now().Add(48*time.Hour), "scheduled")
	refused := uuid.NewString()
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
	got, err := inv.HoldsOf(ctx, []string{paid, cancelled, late, refused, uuid.NewString(), "nope"})
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
}

func TestHoldBatch(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	future := time.Now().Add(48 * time.Hour)
	a := seedFlight(t, pool, 5, future, "scheduled")
	b := seedFlight(t, pool, 5, future, "scheduled")
	closed := seedFlight(t, pool, 5, future, "cancelled")

	before, tomb := uuid.NewString(), uuid.NewString()
	if _, err := inv.Hold(ctx, flight.HoldRequest{BookingID: before, FlightID: a, Seats: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Release(ctx, tomb, a); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = uuid.NewString()
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
		if hs[0].Total != 3*450000 || hs[6].Total != 5*450000 {
			t.Errorf("%s: totals %d and %d", round, hs[0].Total, hs[6].Total)
		}
		if c := counts(t, inv, a); c.Available != 0 || c.Held != 5 {
			t.Errorf("%s: flight a %+v, want all 5 held", round, c)
		}
		if c := counts(t, inv, b); c.Available != 0 || c.Held != 5 {
			t.Errorf("%s: flight b %+v, want all 5 held", round, c)
		}
		audit(t, inv, a)
		audit(t, inv, b)
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

func TestAuditFindsDrift(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
	if _, err := inv.Hold(ctx, flight.HoldRequest{BookingID: uuid.NewString(), FlightID: f, Seats: 2}); err != nil {
		t.Fatal(err)
	}
	audit(t, inv, f)
	// A seat taken behind the inventory's back keeps the balance but not the books.
	_, err := pool.Exec(ctx, `UPDATE flights SET available_seats = available_seats - 1, held_seats = held_seats + 1 WHERE id = $1`, f)
	testenv.Fatal(t, "drift", err)
	a, err := inv.Audit(ctx, f)
	testenv.Fatal(t, "audit", err)
	if p := a.Problems(); len(p) != 1 || a.Held != 2 || a.Counts.Held != 3 {
		t.Errorf("audit after drift: %+v, problems %q", a, p)
	}
	if _, err := inv.Audit(ctx, 999999); !errors.Is(err, flight.ErrNotFound) {
		t.Errorf("audit of unknown flight: %v", err)
	}
}

// audit fails the test when the flight's counters break the invariant or disagree with its
// holds, checked both by plain SQL and by Inventory.Audit.
func audit(t *testing.T, inv *postgres.Inventory, flightID int64) flight.SeatCounts {
	t.Helper()
	a, err := inv.Audit(context.Background(), flightID)
	testenv.Fatal(t, "audit", err)
	if p := a.Problems(); len(p) > 0 {
		t.Fatalf("flight %d: %q", flightID, p)
	}
	return a.Counts
}

// TestHoldLosesRaceForBooking makes another transaction record a booking while a hold for
// it waits on the insert (the same booking on an unknown flight, so no flight lock keeps them
// apart): the single hold answers with the recorded outcome, and the batch is retried and
// then answers the same, with the rest of the batch granted and counted once.
func TestHoldLosesRaceForBooking(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")

	for _, batch := range []bool{false, true} {
		x, y := uuid.NewString(), uuid.NewString()
		first, err := pool.Begin(ctx)
		testenv.Fatal(t, "begin", err)
		h, err := inv.HoldTx(ctx, first, flight.HoldRequest{BookingID: x, FlightID: 999999, Seats: 1})
		if err != nil || h.Reason != flight.ReasonFlightNotFound {
			t.Fatalf("first hold: %+v %v", h, err)
		}
		type result struct {
			hs  []flight.Hold
			err error
		}
		done := make(chan result, 1)
		go func() {
			if batch {
				hs, err := inv.HoldBatch(ctx, []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 2}, {BookingID: x, FlightID: f, Seats: 1}})
				done <- result{hs, err}
				return
			}
			h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: x, FlightID: f, Seats: 1})
			done <- result{[]flight.Hold{h}, err}
		}()
		// Let the second transaction reach the insert and wait there for the first.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var waiting int
			testenv.Fatal(t, "pg_stat_activity", pool.QueryRow(ctx, `
				SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO holds%'`).Scan(&waiting))
			if waiting > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the second hold never waited for the first")
			}
			time.Sleep(5 * time.Millisecond)
		}
		testenv.Fatal(t, "commit first", first.Commit(ctx))
		r := <-done
		if r.err != nil {
			t.Fatalf("batch=%v: %v", batch, r.err)
		}
		last := r.hs[len(r.hs)-1]
		if last.BookingID != x || last.Reason != flight.ReasonFlightNotFound {
			t.Errorf("batch=%v: the losing hold answered %+v, want the recorded flight_not_found", batch, last)
		}
		if batch && !r.hs[0].Held() {
			t.Errorf("the rest of the batch: %+v", r.hs[0])
		}
	}
	if c := audit(t, inv, f); c.Held != 2 || c.Available != 8 {
		t.Errorf("counts %+v, want only the batch's other booking holding 2 seats", c)
	}
}

// TestConfirmRacesRelease delivers, for each of 50 held bookings, a confirm and two copies of
// a release at once: whichever order the row lock gives them, the seats come back exactly
// once and a confirm that finds the hold gone says so.
func TestConfirmRacesRelease(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 100, time.Now().Add(48*time.Hour), "scheduled")
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = uuid.NewString()
		if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: ids[i], FlightID: f, Seats: 2}); err != nil || !h.Held() {
			t.Fatalf("hold: %+v %v", h, err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	var confirmed, refused sync.Map
	for _, id := range ids {
		wg.Go(func() {
			<-start
			_, err := inv.Confirm(ctx, id)
			switch {
			case err == nil:
				confirmed.Store(id, true)
			case errors.Is(err, flight.ErrHoldReleased):
				refused.Store(id, true)
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
	var nc, nr int
	confirmed.Range(func(any, any) bool { nc++; return true })
	refused.Range(func(any, any) bool { nr++; return true })
	if nc+nr != len(ids) {
		t.Errorf("%d confirmed + %d refused != %d bookings", nc, nr, len(ids))
	}
	t.Logf("confirmed before release %d, refused after release %d", nc, nr)
}

// TestNoOversell is the test the seed failed: 500 concurrent one-seat holds on a 100-seat
// flight, with duplicate deliveries and releases mixed in, one hold per transaction and in
// batches of ten.
func TestNoOversell(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 10} {
		for _, mode := range []string{"plain", "duplicates", "releases"} {
			t.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(t *testing.T) {
				t.Parallel()
				oversell(t, mode, batch)
			})
		}
	}
}

func oversell(t *testing.T, mode string, batch int) {
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	f := seedFlight(t, pool, 100, time.Now().Add(48*time.Hour), "scheduled")
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = uuid.NewString()
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
	held, sold := heldInHolds(t, pool, f)
	if c.Held != held || c.Sold != sold || c.Available+c.Held+c.Sold != 100 || c.Available < 0 {
		t.Fatalf("flight counters %+v disagree with holds table: held %d sold %d", c, held, sold)
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
	t.Logf("%s/batch=%d: granted %d, sold out %d, refused by tombstone %d, given back %d, counts %+v",
		mode, batch, granted, soldOut, refused, givenBack, c)
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
