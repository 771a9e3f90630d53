package storetest

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
	"github.com/flightbook/flightbook/testenv"
)

// announcements records what an announce hook was called with, as "<number>:<status>".
type announcements struct {
	mu   sync.Mutex
	seen []string
	fail bool
}

func (a *announcements) hook(_ context.Context, f flight.Flight) (outbox.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return outbox.Message{}, errors.New("encoder down")
	}
	a.seen = append(a.seen, f.FlightNumber+":"+f.Status)
	return outbox.Message{ID: uuid.NewString(), Subject: "test.flight", Data: []byte(`{}`), AggregateID: fmt.Sprint(f.ID)}, nil
}

func (a *announcements) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.seen
	a.seen = nil
	return out
}

// testAnnounce checks that every change to a flight is announced in the outbox in its own
// transaction (a failed announcement undoes the change), and that AnnounceDue re-announces
// exactly the open, future flights whose last announcement is old or missing.
func testAnnounce(t *testing.T, s Stores) {
	ctx := context.Background()
	var a announcements
	plain := s.Catalog
	cat := s.Announcing(a.hook)

	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 180})
	testenv.Fatal(t, "airplane", err)
	dep := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	newFlight := func(c flight.Catalog, number string) (flight.Flight, error) {
		return c.CreateFlight(ctx, flight.NewFlight{FlightNumber: number, AirplaneID: plane.ID, DepartureAirport: "DEL",
			ArrivalAirport: "BOM", DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 5000, Currency: "INR"})
	}
	outboxHas := func(want int) {
		t.Helper()
		n, err := s.Outbox(ctx)
		testenv.Fatal(t, "count outbox", err)
		if n != want {
			t.Fatalf("outbox holds %d messages, want %d", n, want)
		}
	}

	announced, err := newFlight(cat, "AI101")
	testenv.Fatal(t, "create AI101", err)
	silent, err := newFlight(plain, "AI102") // as if created before announcements existed
	testenv.Fatal(t, "create AI102", err)
	cancelled, err := newFlight(cat, "AI103")
	testenv.Fatal(t, "create AI103", err)
	_, err = cat.Cancel(ctx, cancelled.ID)
	testenv.Fatal(t, "cancel", err)
	_, err = cat.Reschedule(ctx, announced.ID, flight.Schedule{BoardingGate: ptr("B7")})
	testenv.Fatal(t, "reschedule", err)
	if got, want := a.take(), []string{"AI101:scheduled", "AI103:scheduled", "AI103:cancelled", "AI101:scheduled"}; !slices.Equal(got, want) {
		t.Fatalf("announcements %v, want %v", got, want)
	}
	outboxHas(4)

	a.fail = true
	if _, err := newFlight(cat, "AI104"); err == nil {
		t.Fatal("create with a failing announcement succeeded")
	}
	if _, err := cat.Cancel(ctx, announced.ID); err == nil {
		t.Fatal("cancel with a failing announcement succeeded")
	}
	a.fail = false
	if f, err := cat.Flight(ctx, announced.ID); err != nil || f.Status != flight.StatusScheduled {
		t.Fatalf("a cancel whose announcement failed took effect: %+v %v", f, err)
	}
	if page, _, err := cat.Search(ctx, search(t, "limit=100"), time.Now()); err != nil || len(page) != 2 {
		t.Fatalf("a flight whose announcement failed was created anyway: %d flights, %v", len(page), err)
	}
	outboxHas(4)

	// Only the never-announced flight is due within the hour.
	got, err := cat.AnnounceDue(ctx, time.Hour, 100)
	testenv.Fatal(t, "announce due", err)
	if seen := a.take(); got != 1 || !slices.Equal(seen, []string{"AI102:scheduled"}) {
		t.Fatalf("AnnounceDue announced %d: %v, want AI102 alone", got, seen)
	}
	outboxHas(5)
	// A flight that departs is not announced again, however old its announcement.
	_, err = cat.Reschedule(ctx, silent.ID, flight.Schedule{DepartureTime: ptr(time.Now().Add(-time.Hour)), ArrivalTime: ptr(time.Now())})
	testenv.Fatal(t, "depart", err)
	a.take()
	// Once an announcement is old, the open flights are due again; the cancelled one is not,
	// and neither is the departed one.
	testenv.Fatal(t, "age announcements", s.AgeAnnouncements(ctx, 2*time.Hour))
	got, err = cat.AnnounceDue(ctx, time.Hour, 100)
	testenv.Fatal(t, "announce due", err)
	if seen := a.take(); got != 1 || !slices.Equal(seen, []string{"AI101:scheduled"}) {
		t.Fatalf("AnnounceDue announced %d: %v, want AI101 alone", got, seen)
	}
	if got, err := cat.AnnounceDue(ctx, time.Hour, 100); err != nil || got != 0 {
		t.Fatalf("second AnnounceDue = %d, %v; want 0", got, err)
	}
	if p, ok := plain.(Announcer); ok {
		if got, err := p.AnnounceDue(ctx, 0, 100); err != nil || got != 0 {
			t.Fatalf("AnnounceDue without a hook = %d, %v; want 0", got, err)
		}
	}
}
