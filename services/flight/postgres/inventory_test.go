package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// awaitLockWait waits until another session of the test's database waits for a lock, in a
// statement whose text is LIKE query, and fails with failure after 10 s.
func awaitLockWait(t *testing.T, pool *pgxpool.Pool, query, failure string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		testenv.Fatal(t, "pg_stat_activity", pool.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
			  AND query LIKE $1`, query).Scan(&waiting))
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHoldLosesRaceForBooking makes another transaction record a booking while a hold for
// it waits on the insert (the same booking on an unknown flight, so no flight lock keeps them
// apart): the single hold answers with the recorded outcome, and the batch is retried and
// then answers the same, with the rest of the batch granted and counted once. A saga
// transaction's batch, which writes with its COMMIT, fails there and is retried the same way.
func TestHoldLosesRaceForBooking(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")

	for _, mode := range []string{"hold", "batch", "saga"} {
		batch := mode != "hold"
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
		reqs := []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 2}, {BookingID: x, FlightID: f, Seats: 1}}
		go func() {
			switch mode {
			case "batch":
				hs, err := inv.HoldBatch(ctx, reqs)
				done <- result{hs, err}
				return
			case "saga":
				var hs []flight.Hold
				err := inv.InTx(ctx, func(tx *postgres.InventoryTx) (err error) {
					hs, err = tx.HoldBatch(ctx, reqs)
					return err
				})
				done <- result{hs, err}
				return
			}
			h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: x, FlightID: f, Seats: 1})
			done <- result{[]flight.Hold{h}, err}
		}()
		// Let the second transaction reach the insert and wait there for the first.
		awaitLockWait(t, pool, "%INSERT INTO holds%", "the second hold never waited for the first")
		testenv.Fatal(t, "commit first", first.Commit(ctx))
		r := <-done
		if r.err != nil {
			t.Fatalf("%s: %v", mode, r.err)
		}
		last := r.hs[len(r.hs)-1]
		if last.BookingID != x || last.Reason != flight.ReasonFlightNotFound {
			t.Errorf("%s: the losing hold answered %+v, want the recorded flight_not_found", mode, last)
		}
		if batch && !r.hs[0].Held() {
			t.Errorf("%s: the rest of the batch: %+v", mode, r.hs[0])
		}
	}
	if c := audit(t, inv, f); c.Held != 4 || c.Available != 6 {
		t.Errorf("counts %+v, want only the batches' other bookings holding 2 seats each", c)
	}
}

// TestConfirmLocksFlightFirst: a confirm takes its flight's row lock before it touches the
// hold, the order every hold, release and confirm keeps so that none of them deadlock. While
// another transaction holds the flight's lock, the waiting confirm must not yet hold the hold's
// row; once the lock is released it sells the seats.
func TestConfirmLocksFlightFirst(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
	b := uuid.NewString()
	if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: b, FlightID: f, Seats: 2}); err != nil || !h.Held() {
		t.Fatalf("hold: %+v %v", h, err)
	}

	blocker, err := pool.Begin(ctx)
	testenv.Fatal(t, "begin", err)
	defer blocker.Rollback(ctx) //nolint:errcheck
	_, err = blocker.Exec(ctx, `SELECT 1 FROM flights WHERE id = $1 FOR UPDATE`, f)
	testenv.Fatal(t, "lock flight", err)

	done := make(chan error, 1)
	go func() {
		_, err := inv.Confirm(ctx, b)
		done <- err
	}()
	awaitLockWait(t, pool, "%", "the confirm never waited for the flight's lock")
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM holds WHERE booking_id = $1 FOR UPDATE NOWAIT`, b); err != nil {
		t.Fatalf("the confirm holds the hold's row while it waits for the flight's: %v", err)
	}
	testenv.Fatal(t, "release the flight", blocker.Rollback(ctx))
	testenv.Fatal(t, "confirm", <-done)
	if c := audit(t, inv, f); c.Sold != 2 || c.Held != 0 {
		t.Errorf("counts %+v, want the 2 seats sold", c)
	}
}

// TestRedeliveryQueuedOnItsFlight: a batch that waits for its flight's lock while the
// transaction ahead records one of its bookings (a redelivery, on the same flight) must answer
// that booking with the recorded outcome, without a serialization failure. It runs without
// HoldBatch's retries, which hid the failure until a burst of redeliveries outlasted them.
func TestRedeliveryQueuedOnItsFlight(t *testing.T) {
	t.Parallel()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	ctx := context.Background()
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
	x, y := uuid.NewString(), uuid.NewString()

	first, err := pool.Begin(ctx)
	testenv.Fatal(t, "begin", err)
	defer first.Rollback(ctx) //nolint:errcheck
	if hs, err := inv.HoldBatchTx(ctx, first, []flight.HoldRequest{{BookingID: x, FlightID: f, Seats: 3}}); err != nil || !hs[0].Held() {
		t.Fatalf("first hold: %+v %v", hs, err)
	}

	type result struct {
		hs  []flight.Hold
		err error
	}
	done := make(chan result, 1)
	go func() {
		var hs []flight.Hold
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
			hs, err = inv.HoldBatchTx(ctx, tx, []flight.HoldRequest{
				{BookingID: y, FlightID: f, Seats: 2}, {BookingID: x, FlightID: f, Seats: 3}})
			return err
		})
		done <- result{hs, err}
	}()
	awaitLockWait(t, pool, "%FOR UPDATE%", "the second batch never waited for the flight's lock")
	testenv.Fatal(t, "commit first", first.Commit(ctx))
	r := <-done
	if r.err != nil {
		t.Fatalf("the queued batch: %v", r.err)
	}
	if !r.hs[0].Held() || !r.hs[1].Held() || r.hs[1].Seats != 3 {
		t.Errorf("the queued batch answered %+v, want y held and x's recorded hold of 3", r.hs)
	}
	if c := audit(t, inv, f); c.Held != 5 || c.Available != 5 {
		t.Errorf("counts %+v, want x's 3 seats and y's 2 held once each", c)
	}
}
