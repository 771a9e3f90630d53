// Package storetest is the contract of the flight service's stores: one suite of behaviour
// tests that every storage adapter (postgres, sqlite) runs against itself, so that the
// catalogue, the seat inventory and the catalogue announcements behave the same whichever
// database holds them.
package storetest

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/testenv"
	"github.com/flightbook/flightbook/validation"
)

// Announce is the catalogue's announce hook, the type of postgres.Announce and sqlite.Announce.
type Announce = func(ctx context.Context, f flight.Flight) (outbox.Message, error)

// Announcer is a catalogue that announces its flights.
type Announcer interface {
	flight.Catalog
	AnnounceDue(ctx context.Context, olderThan time.Duration, limit int) (int, error)
}

// Stores is one adapter's stores on a fresh, empty database, and the few ways into that
// database the tests need to set up states the stores never produce themselves.
type Stores struct {
	Catalog   flight.Catalog
	Inventory flight.Inventory
	// Announcing returns the catalogue of the same database announcing with hook.
	Announcing func(hook Announce) Announcer
	// Outbox counts the messages in the outbox.
	Outbox func(ctx context.Context) (int, error)
	// AgeAnnouncements moves every flight's last announcement d into the past.
	AgeAnnouncements func(ctx context.Context, d time.Duration) error
	// TakeSeat moves one of a flight's seats from available to held behind the inventory's
	// back, as a bug would.
	TakeSeat func(ctx context.Context, flightID int64) error
}

// Run runs the contract against the stores newStores returns, a fresh database per test.
func Run(t *testing.T, newStores func(t *testing.T) Stores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Stores)
	}{
		{"CatalogLifecycle", testCatalogLifecycle},
		{"CreateFlightValidation", testCreateFlightValidation},
		{"Search", testSearch},
		{"HoldOutcomes", testHoldOutcomes},
		{"ReleaseConfirmAndTombstone", testReleaseConfirmAndTombstone},
		{"HoldBatch", testHoldBatch},
		{"AuditFindsDrift", testAuditFindsDrift},
		{"HoldsPage", testHoldsPage},
		{"ConfirmRacesRelease", testConfirmRacesRelease},
		{"NoOversell", testNoOversell},
		{"Announce", testAnnounce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStores(t))
		})
	}
}

// fare is the seeded flights' fare, in paise.
const fare = 450000

var seq atomic.Int64

// seedFlight creates, through the catalogue, what a flight needs and a DEL-BOM flight with
// seats seats departing at departure; a status of cancelled cancels it. It returns its id.
func seedFlight(t testing.TB, cat flight.Catalog, seats int, departure time.Time, status string) int64 {
	t.Helper()
	ctx := context.Background()
	city, err := cat.CreateCity(ctx, flight.City{Name: fmt.Sprintf("City %d", seq.Add(1)), Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		if _, err := cat.Airport(ctx, code); err == nil {
			continue
		}
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: seats})
	testenv.Fatal(t, "airplane", err)
	f, err := cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: "DEL",
		ArrivalAirport: "BOM", DepartureTime: departure, ArrivalTime: departure.Add(2 * time.Hour), FareAmount: fare, Currency: "INR"})
	testenv.Fatal(t, "flight", err)
	if status == flight.StatusCancelled {
		_, err := cat.Cancel(ctx, f.ID)
		testenv.Fatal(t, "cancel", err)
	}
	return f.ID
}

// audit fails the test when the flight's counters break the invariant or disagree with its
// holds, and returns the counters.
func audit(t *testing.T, inv flight.Inventory, flightID int64) flight.SeatCounts {
	t.Helper()
	a, err := inv.Audit(context.Background(), flightID)
	testenv.Fatal(t, "audit", err)
	if p := a.Problems(); len(p) > 0 {
		t.Fatalf("flight %d: %q", flightID, p)
	}
	return a.Counts
}

// fields returns the sorted fields of a validation error, or fails the test.
func fields(t *testing.T, err error) []string {
	t.Helper()
	fe, ok := validation.As(err)
	if !ok {
		t.Fatalf("%v: not a validation error", err)
	}
	var fs []string
	for _, e := range fe {
		fs = append(fs, e.Field)
	}
	sort.Strings(fs)
	return fs
}

func newBooking() string { return uuid.NewString() }

func ptr[T any](v T) *T { return &v }
