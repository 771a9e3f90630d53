package flights

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/flight/api"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
	"github.com/flightbook/flightbook/validation"
	"github.com/flightbook/flightbook/web"
)

// TestCheckAgainstTheFlightService asks a real flight service (its API on PostgreSQL) about
// flights as they are created, cancelled and depart, and while it is down.
func TestCheckAgainstTheFlightService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 5, log)
	testenv.Fatal(t, "postgres", err)
	t.Cleanup(pool.Close)
	a, err := auth.New(auth.Config{Secret: auth.DevSecret, Issuer: "flightbook"}, nil)
	testenv.Fatal(t, "auth", err)
	engine := web.NewEngine(log)
	api.Routes(engine, postgres.NewCatalog(pool), a)
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)

	var city, plane, id int64
	testenv.Fatal(t, "city", pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ('Delhi', 'IN') RETURNING id`).Scan(&city))
	_, err = pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1)`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', 10) RETURNING id`).Scan(&plane))
	dep := time.Now().Add(48 * time.Hour)
	testenv.Fatal(t, "flight", pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', 10, 10) RETURNING id`, plane, dep, dep.Add(2*time.Hour)).Scan(&id))

	now := time.Now()
	c := New(Config{URL: srv.URL, CacheTTL: time.Minute, Timeout: 2 * time.Second}, log)
	c.now = func() time.Time { return now }
	refused := func(err error) bool {
		fe, ok := validation.As(err)
		return ok && len(fe) == 1 && fe[0].Field == "flight_id"
	}

	if err := c.Check(ctx, id+1000); !refused(err) {
		t.Fatalf("unknown flight: %v, want a flight_id error", err)
	}
	if err := c.Check(ctx, id); err != nil {
		t.Fatalf("scheduled flight: %v", err)
	}
	_, err = pool.Exec(ctx, `UPDATE flights SET status = 'cancelled' WHERE id = $1`, id)
	testenv.Fatal(t, "cancel", err)
	if err := c.Check(ctx, id); err != nil {
		t.Fatalf("within the cache TTL the cancellation is not seen yet, but got %v", err)
	}
	now = now.Add(2 * time.Minute)
	if err := c.Check(ctx, id); !refused(err) {
		t.Fatalf("cancelled flight after the TTL: %v, want a flight_id error", err)
	}
	_, err = pool.Exec(ctx, `UPDATE flights SET status = 'scheduled' WHERE id = $1`, id)
	testenv.Fatal(t, "reschedule", err)
	now = dep.Add(time.Minute) // cache expired too
	if err := c.Check(ctx, id); !refused(err) {
		t.Fatalf("departed flight: %v, want a flight_id error", err)
	}

	// The flight service down: the booking is accepted and the saga decides.
	srv.Close()
	now = now.Add(time.Hour)
	if err := c.Check(ctx, id+1000); err != nil {
		t.Fatalf("flight service down: %v, want nil", err)
	}
	if err := (*Client)(nil).Check(ctx, 1); err != nil {
		t.Fatalf("no client: %v", err)
	}
}
