package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// TestCreateFlightRacesAirplaneShrink runs a flight's creation against a shrink of its
// airplane, many times: whichever commits first, no flight may end up with more seats than
// its airplane has.
func TestCreateFlightRacesAirplaneShrink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 10, discardLog())
	testenv.Fatal(t, "open", err)
	t.Cleanup(pool.Close)
	cat := postgres.NewCatalog(pool)
	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	dep := time.Now().Add(48 * time.Hour)
	seats := 180
	for range 40 {
		plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 180})
		testenv.Fatal(t, "airplane", err)
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = cat.CreateFlight(ctx, flight.NewFlight{
				FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: "DEL", ArrivalAirport: "BOM",
				DepartureTime: dep, ArrivalTime: dep.Add(time.Hour), FareAmount: 1000, Currency: "INR", Seats: &seats,
			})
		})
		wg.Go(func() {
			_, _ = cat.UpdateAirplane(ctx, flight.Airplane{ID: plane.ID, Model: "A319", Capacity: 100})
		})
		wg.Wait()
		var over int
		testenv.Fatal(t, "check", pool.QueryRow(ctx, `
			SELECT count(*) FROM flights f JOIN airplanes a ON a.id = f.airplane_id
			WHERE f.total_seats > a.capacity`).Scan(&over))
		if over > 0 {
			t.Fatalf("a flight has more seats than its airplane after a create raced a shrink")
		}
	}
}
