package postgres_test

import (
	"context"
	"os"
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
	if _, err := inv.Confirm(ctx, cancelled); err == nil {
		t.Error("confirming a released hold succeeded")
	}
	if _, err := inv.Confirm(ctx, uuid.NewString()); err == nil {
		t.Error("confirming an unknown hold succeeded")
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
}

// TestNoOversell is the test the seed failed: 500 concurrent one-seat holds on a 100-seat
// flight, with duplicate deliveries and releases mixed in.
func TestNoOversell(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"plain", "duplicates", "releases"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			pool := newInventoryTestDB(t)
			inv := postgres.NewInventory(pool)
			f := seedFlight(t, pool, 100, time.Now().Add(48*time.Hour), "scheduled")
			ids := make([]string, 500)
			for i := range ids {
				ids[i] = uuid.NewString()
			}
			var mu sync.Mutex
			outcome := map[string]flight.Hold{}
			released := map[string]bool{}
			var wg sync.WaitGroup
			start := make(chan struct{})
			hold := func(id string) {
				defer wg.Done()
				<-start
				h, err := inv.Hold(context.Background(), flight.HoldRequest{BookingID: id, FlightID: f, Seats: 1})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := outcome[id]; ok && (prev.Status != h.Status || prev.Reason != h.Reason) {
					// A duplicate of a released booking legitimately reads released.
					if !(released[id] && h.Status == flight.HoldReleased) {
						t.Errorf("duplicate %s: %s then %s", id, prev.Status, h.Status)
					}
				}
				if _, ok := outcome[id]; !ok {
					outcome[id] = h
				}
			}
			for _, id := range ids {
				wg.Add(1)
				go hold(id)
				if mode == "duplicates" { // every booking delivered twice
					wg.Add(1)
					go hold(id)
				}
			}
			if mode == "releases" {
				for i := range 100 {
					wg.Add(1)
					go func(id string) {
						defer wg.Done()
						<-start
						h, err := inv.Release(context.Background(), id, f)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						released[id] = h.Status == flight.HoldReleased
						mu.Unlock()
					}(ids[i*5])
				}
			}
			close(start)
			wg.Wait()

			c := counts(t, inv, f)
			held, sold := heldInHolds(t, pool, f)
			if c.Held != held || c.Sold != sold {
				t.Fatalf("flight counters %+v disagree with holds table: held %d sold %d", c, held, sold)
			}
			granted, soldOut := 0, 0
			for _, h := range outcome {
				switch {
				case h.Held():
					granted++
				case h.Reason == flight.ReasonSoldOut:
					soldOut++
				}
			}
			switch mode {
			case "plain", "duplicates":
				if granted != 100 || soldOut != 400 || c.Available != 0 || c.Held != 100 {
					t.Fatalf("granted %d, sold out %d, counts %+v; want 100 held, 400 sold_out", granted, soldOut, c)
				}
			case "releases":
				// Released seats may be granted again to later requests, never beyond capacity.
				if c.Held > 100 || granted > 200 {
					t.Fatalf("granted %d, counts %+v", granted, c)
				}
				var stillHeld int
				for id, h := range outcome {
					if h.Held() && !released[id] {
						stillHeld++
					}
				}
				if stillHeld != c.Held {
					t.Fatalf("%d bookings hold seats but flight says %d held", stillHeld, c.Held)
				}
			}
			t.Logf("%s: granted %d, sold out %d, counts %+v", mode, granted, soldOut, c)
		})
	}
}
