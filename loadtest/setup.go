package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// catalogue is what the run created through the admin API: its own airports and flights, so
// concurrent runs, and anything else on the deployment, never share a seat with it.
type catalogue struct {
	from, to string    // airport codes
	date     time.Time // the departure day of every flight, for searches
	flights  []ID
}

// setUp creates a city, two airports with random unused codes, an airplane big enough for
// seats, and n flights of seats seats each, departing on one day a month from now.
func setUp(ctx context.Context, c *client, flightURL, bookingURL, adminToken, runID string, n, seats int, rng *rand.Rand) (catalogue, error) {
	post := func(endpoint, path string, in, out any) (int, error) {
		return c.do(ctx, request{endpoint: endpoint, method: http.MethodPost, url: flightURL + path, token: adminToken, in: in, out: out})
	}

	var city created
	if _, err := post("POST /cities", pathCities, cityRequest{Name: "Loadtest " + runID, Country: "Loadtest"}, &city); err != nil {
		return catalogue{}, fmt.Errorf("create city: %w", err)
	}

	var codes []string
	for len(codes) < 2 {
		code, err := createAirport(ctx, post, city.ID, runID, rng)
		if err != nil {
			return catalogue{}, err
		}
		codes = append(codes, code)
	}

	// Ten seats a row, as many rows as the flights need: the flight's seats may be fewer than
	// the airplane's capacity, never more.
	const perRow = 10
	rows := (seats + perRow - 1) / perRow
	var plane created
	if _, err := post("POST /airplanes", pathAirplanes, airplaneRequest{
		Model:    "Loadtest " + runID,
		Capacity: rows * perRow,
		Cabins:   []cabin{{Class: "economy", Rows: rows, SeatsPerRow: perRow}},
	}, &plane); err != nil {
		return catalogue{}, fmt.Errorf("create airplane: %w", err)
	}

	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 30)
	cat := catalogue{from: codes[0], to: codes[1], date: day}
	for i := range n {
		dep := day.Add(6*time.Hour + time.Duration(i)*time.Minute)
		var f created
		if _, err := post("POST /flights", pathFlights, flightRequest{
			FlightNumber:     fmt.Sprintf("LT%d", 1+i),
			AirplaneID:       plane.ID,
			DepartureAirport: codes[0],
			ArrivalAirport:   codes[1],
			DepartureTime:    dep,
			ArrivalTime:      dep.Add(2 * time.Hour),
			FareAmount:       10_000 + int64(i%50)*100,
			Currency:         "EUR",
			BoardingGate:     "A1",
			Seats:            seats,
		}, &f); err != nil {
			return catalogue{}, fmt.Errorf("create flight %d of %d: %w", i+1, n, err)
		}
		cat.flights = append(cat.flights, f.ID)
	}
	if err := awaitBookable(ctx, c, bookingURL, adminToken, cat.flights); err != nil {
		return catalogue{}, err
	}
	return cat, nil
}

// awaitBookable waits until the booking service's copy of the catalogue has every flight:
// its FlightScheduled event arrives a few milliseconds after the flight is created, and a
// booking before that is refused as an unknown flight.
func awaitBookable(ctx context.Context, c *client, bookingURL, adminToken string, flights []ID) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, id := range flights {
		for {
			_, err := c.do(ctx, request{endpoint: "GET /admin/flights/{id}", method: http.MethodGet,
				url: fmt.Sprintf("%s/api/v1/admin/flights/%s", bookingURL, id), token: adminToken})
			if err == nil {
				break
			}
			if statusOf(err) != http.StatusNotFound {
				return fmt.Errorf("wait for the booking service to know flight %s: %w", id, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for the booking service to know flight %s: %w", id, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// createAirport creates an airport with a random three-letter code, trying again with another
// code while the chosen one is taken (409).
func createAirport(ctx context.Context, post func(string, string, any, any) (int, error), city ID, runID string, rng *rand.Rand) (string, error) {
	var err error
	for range 50 {
		code := randomCode(rng)
		_, err = post("POST /airports", pathAirports, airportRequest{Code: code, Name: "Loadtest " + runID + " " + code, CityID: city}, nil)
		if err == nil {
			return code, nil
		}
		if statusOf(err) != http.StatusConflict {
			return "", fmt.Errorf("create airport %s: %w", code, err)
		}
	}
	return "", errors.Join(errors.New("create airport: no free code after 50 tries"), err)
}

func randomCode(rng *rand.Rand) string {
	b := make([]byte, 3)
	for i := range b {
		b[i] = byte('A' + rng.IntN(26))
	}
	return string(b)
}
