package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// announcements records what an Announce hook was called with, as "<id>:<status>".
type announcements struct {
	mu   sync.Mutex
	seen []string
	fail bool
}

func (a *announcements) hook(_ context.Context, f flight.Flight) (outbox.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return outbox.Message{}, errors.New("outbox down")
	}
	a.seen = append(a.seen, f.FlightNumber+":"+f.Status)
	return outbox.Message{ID: uuid.NewString(), Subject: "test.flight", AggregateID: fmt.Sprint(f.ID)}, nil
}

func (a *announcements) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.seen
	a.seen = nil
	return out
}

// TestCatalogAnnouncesFlights checks that every change to a flight is announced in its own
// transaction (a failed announcement undoes the change), and that AnnounceDue re-announces
// exactly the open, future flights whose last announcement is old or missing.
func TestCatalogAnnouncesFlights(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 4, discardLog())
	testenv.Fatal(t, "open", err)
	t.Cleanup(pool.Close)
	var a announcements
	plain := postgres.NewCatalog(pool)
	cat := plain.WithAnnounce(a.hook)

	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 180})
	testenv.Fatal(t, "airplane", err)
	dep := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	newFlight := func(c *postgres.Catalog, number string) flight.Flight {
		t.Helper()
		f, err := c.CreateFlight(ctx, flight.NewFlight{FlightNumber: number, AirplaneID: plane.ID, DepartureAirport: "DEL",
			ArrivalAirport: "BOM", DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 5000, Currency: "INR"})
		testenv.Fatal(t, "create "+number, err)
		return f
	}

	announced := newFlight(cat, "AI101")
	silent := newFlight(plain, "AI102") // as if created before announcements existed
	cancelled := newFlight(cat, "AI103")
	_, err = cat.Cancel(ctx, cancelled.ID)
	testenv.Fatal(t, "cancel", err)
	_, err = cat.Reschedule(ctx, announced.ID, flight.Schedule{BoardingGate: ptr("B7")})
	testenv.Fatal(t, "reschedule", err)
	if got, want := a.take(), []string{"AI101:scheduled", "AI103:scheduled", "AI103:cancelled", "AI101:scheduled"}; !slices.Equal(got, want) {
		t.Fatalf("announcements %v, want %v", got, want)
	}

	a.fail = true
	_, err = cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI104", AirplaneID: plane.ID, DepartureAirport: "DEL",
		ArrivalAirport: "BOM", DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 5000, Currency: "INR"})
	if err == nil {
		t.Fatal("create with a failing announcement succeeded")
	}
	var n int
	testenv.Fatal(t, "count", pool.QueryRow(ctx, `SELECT count(*) FROM flights WHERE flight_number = 'AI104'`).Scan(&n))
	if n != 0 {
		t.Fatal("a flight whose announcement failed was created anyway")
	}
	a.fail = false

	// Only the never-announced flight is due within the hour.
	got, err := cat.AnnounceDue(ctx, time.Hour, 100)
	testenv.Fatal(t, "announce due", err)
	if seen := a.take(); got != 1 || !slices.Equal(seen, []string{"AI102:scheduled"}) {
		t.Fatalf("AnnounceDue announced %d: %v, want AI102 alone", got, seen)
	}
	// Once an announcement is old, the open flights are due again; the cancelled one is not,
	// and neither is one that has departed.
	_, err = pool.Exec(ctx, `UPDATE flights SET announced_at = now() - interval '2 hours'`)
	testenv.Fatal(t, "age", err)
	_, err = pool.Exec(ctx, `UPDATE flights SET departure_time = now() - interval '1 hour', arrival_time = now() WHERE id = $1`, silent.ID)
	testenv.Fatal(t, "depart", err)
	got, err = cat.AnnounceDue(ctx, time.Hour, 100)
	testenv.Fatal(t, "announce due", err)
	if seen := a.take(); got != 1 || !slices.Equal(seen, []string{"AI101:scheduled"}) {
		t.Fatalf("AnnounceDue announced %d: %v, want AI101 alone", got, seen)
	}
	if got, err := cat.AnnounceDue(ctx, time.Hour, 100); err != nil || got != 0 {
		t.Fatalf("second AnnounceDue = %d, %v; want 0", got, err)
	}
}

func ptr[T any](v T) *T { return &v }
