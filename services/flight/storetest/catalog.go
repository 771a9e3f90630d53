package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/testenv"
)

// testCatalogLifecycle creates, reads, changes and deletes every kind of record, and checks
// the errors of duplicates, missing records and deletes of records still in use.
func testCatalogLifecycle(t *testing.T, s Stores) {
	ctx := context.Background()
	cat := s.Catalog
	city, err := cat.CreateCity(ctx, flight.City{Name: " Delhi ", Country: "IN"})
	testenv.Fatal(t, "create city", err)
	if city.Name != "Delhi" || city.ID == 0 || city.CreatedAt.IsZero() {
		t.Fatalf("new city: %+v", city)
	}
	if _, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"}); !errors.Is(err, flight.ErrConflict) {
		t.Errorf("duplicate city: %v, want ErrConflict", err)
	}
	city, err = cat.UpdateCity(ctx, flight.City{ID: city.ID, Name: "New Delhi", Country: "IN"})
	testenv.Fatal(t, "update city", err)
	if got, err := cat.City(ctx, city.ID); err != nil || got.Name != "New Delhi" {
		t.Fatalf("city after update: %+v %v", got, err)
	}
	for _, code := range []string{"DEL", "BOM", "BLR"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code + " airport", CityID: city.ID})
		testenv.Fatal(t, "create airport", err)
	}
	if _, err := cat.CreateAirport(ctx, flight.Airport{Code: "DEL", Name: "again", CityID: city.ID}); !errors.Is(err, flight.ErrConflict) {
		t.Errorf("duplicate airport: %v, want ErrConflict", err)
	}
	if _, err := cat.UpdateAirport(ctx, flight.Airport{Code: "DEL", Name: "Delhi", CityID: 999999}); !slices.Equal(fields(t, err), []string{"city_id"}) {
		t.Errorf("airport in an unknown city: %v", err)
	}
	if _, err := cat.CreateAirport(ctx, flight.Airport{Code: "PNQ", Name: "Pune", CityID: 999999}); !slices.Equal(fields(t, err), []string{"city_id"}) {
		t.Errorf("new airport in an unknown city: %v", err)
	}
	err = cat.DeleteCity(ctx, city.ID)
	if want := fmt.Sprintf("city %d is used by 3 airports; delete or change those first: in use: conflict", city.ID); !errors.Is(err, flight.ErrInUse) || err.Error() != want {
		t.Errorf("delete city with airports: %v, want %q", err, want)
	}
	for _, err := range []error{
		func() error { _, err := cat.City(ctx, 999999); return err }(),
		func() error { _, err := cat.Airport(ctx, "XXX"); return err }(),
		func() error { _, err := cat.Airplane(ctx, 999999); return err }(),
		func() error { _, err := cat.Flight(ctx, 999999); return err }(),
		func() error {
			_, err := cat.UpdateCity(ctx, flight.City{ID: 999999, Name: "x", Country: "y"})
			return err
		}(),
		func() error {
			_, err := cat.UpdateAirplane(ctx, flight.Airplane{ID: 999999, Model: "x", Capacity: 1})
			return err
		}(),
		func() error { _, err := cat.Reschedule(ctx, 999999, flight.Schedule{}); return err }(),
		func() error { _, err := cat.Cancel(ctx, 999999); return err }(),
		cat.DeleteCity(ctx, 999999),
		cat.DeleteAirport(ctx, "XXX"),
		cat.DeleteAirplane(ctx, 999999),
	} {
		if !errors.Is(err, flight.ErrNotFound) {
			t.Errorf("missing record: %v, want ErrNotFound", err)
		}
	}

	cabins := []flight.Cabin{{Class: flight.CabinBusiness, Rows: 2, SeatsPerRow: 6}, {Class: flight.CabinEconomy, Rows: 28, SeatsPerRow: 6}}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 180, Cabins: cabins})
	testenv.Fatal(t, "create airplane", err)
	if got, err := cat.Airplane(ctx, plane.ID); err != nil || !slices.Equal(got.Cabins, cabins) || got.Capacity != 180 {
		t.Fatalf("airplane read back: %+v %v", got, err)
	}
	bare, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "ATR 72", Capacity: 70})
	testenv.Fatal(t, "create airplane without layout", err)
	if bare.Cabins == nil || len(bare.Cabins) != 0 {
		t.Errorf("airplane without layout has cabins %#v, want an empty list", bare.Cabins)
	}

	dep := time.Now().Add(72 * time.Hour).Truncate(time.Second).UTC()
	f, err := cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: "DEL", ArrivalAirport: "BOM",
		DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: fare, Currency: "INR", BoardingGate: "A1"})
	testenv.Fatal(t, "create flight", err)
	if f.Total != 180 || f.Available != 180 || f.Status != flight.StatusScheduled || !f.DepartureTime.Equal(dep) || f.DepartureTime.Location() != time.UTC {
		t.Fatalf("new flight: %+v", f)
	}
	if got, err := cat.Flight(ctx, f.ID); err != nil || got.DepartureTime != f.DepartureTime || got.ArrivalTime != f.ArrivalTime || got.SeatCounts != f.SeatCounts {
		t.Fatalf("flight read back: %+v %v, created %+v", got, err, f)
	}
	for what, err := range map[string]error{
		"airport BOM is used by 1 flight; delete or change those first: in use: conflict":                        cat.DeleteAirport(ctx, "BOM"),
		fmt.Sprintf("airplane %d is used by 1 flight; delete or change those first: in use: conflict", plane.ID): cat.DeleteAirplane(ctx, plane.ID),
	} {
		if !errors.Is(err, flight.ErrInUse) || err.Error() != what {
			t.Errorf("delete in use: %v, want %q", err, what)
		}
	}
	if _, err := cat.UpdateAirplane(ctx, flight.Airplane{ID: plane.ID, Model: "A319", Capacity: 100}); !slices.Equal(fields(t, err), []string{"capacity"}) {
		t.Errorf("shrinking an airplane below a flight: %v", err)
	}
	if p, err := cat.UpdateAirplane(ctx, flight.Airplane{ID: plane.ID, Model: "A321", Capacity: 200}); err != nil || p.Model != "A321" || len(p.Cabins) != 0 {
		t.Errorf("growing an airplane: %+v %v", p, err)
	}

	// Times keep microseconds, as PostgreSQL does, and drop what is finer.
	later := dep.Add(time.Hour + 1234567*time.Nanosecond)
	f, err = cat.Reschedule(ctx, f.ID, flight.Schedule{DepartureTime: &later, ArrivalTime: ptr(later.Add(2 * time.Hour)), BoardingGate: ptr("B7")})
	testenv.Fatal(t, "reschedule", err)
	if want := later.Truncate(time.Microsecond); !f.DepartureTime.Equal(want) || f.BoardingGate != "B7" {
		t.Fatalf("rescheduled: %+v, want departure %v", f, want)
	}
	if _, err := cat.Reschedule(ctx, f.ID, flight.Schedule{ArrivalTime: ptr(later.Add(-time.Hour))}); !slices.Equal(fields(t, err), []string{"arrival_time"}) {
		t.Errorf("arrival before departure: %v", err)
	}
	f, err = cat.Cancel(ctx, f.ID)
	testenv.Fatal(t, "cancel", err)
	if f.Status != flight.StatusCancelled {
		t.Fatalf("cancelled flight: %+v", f)
	}
	if _, err := cat.Reschedule(ctx, f.ID, flight.Schedule{BoardingGate: ptr("C1")}); !errors.Is(err, flight.ErrConflict) {
		t.Errorf("rescheduling a cancelled flight: %v, want ErrConflict", err)
	}
	page, _, err := cat.Search(ctx, search(t, "from=DEL&to=BOM"), time.Now())
	if err != nil || len(page) != 0 {
		t.Fatalf("cancelled flight is searchable: %+v %v", page, err)
	}

	testenv.Fatal(t, "delete unused airport", cat.DeleteAirport(ctx, "BLR"))
	testenv.Fatal(t, "delete unused airplane", cat.DeleteAirplane(ctx, bare.ID))
	if as, err := cat.Airports(ctx); err != nil || len(as) != 2 || as[0].Code != "BOM" || as[1].Code != "DEL" {
		t.Errorf("airports by code: %+v %v", as, err)
	}
	if ps, err := cat.Airplanes(ctx); err != nil || len(ps) != 1 {
		t.Errorf("airplanes: %+v %v", ps, err)
	}
	if cs, err := cat.Cities(ctx); err != nil || len(cs) != 1 {
		t.Errorf("cities: %+v %v", cs, err)
	}
}

// testCreateFlightValidation checks that a flight is refused with every problem named by
// field, the ones only the database knows (unknown airplane or airports) among them, and that
// nothing is written.
func testCreateFlightValidation(t *testing.T, s Stores) {
	ctx := context.Background()
	cat := s.Catalog
	seedFlight(t, cat, 100, time.Now().Add(72*time.Hour), flight.StatusScheduled)
	planes, err := cat.Airplanes(ctx)
	testenv.Fatal(t, "airplanes", err)
	plane := planes[0].ID
	dep := time.Now().Add(72 * time.Hour)
	tests := []struct {
		name   string
		in     flight.NewFlight
		fields []string
	}{
		{"every field wrong", flight.NewFlight{FlightNumber: "?", AirplaneID: plane, DepartureAirport: "DEL", ArrivalAirport: "DEL",
			DepartureTime: dep, ArrivalTime: dep.Add(-time.Hour), FareAmount: -5, Currency: "rupees", Seats: ptr(101)},
			[]string{"arrival_airport", "arrival_time", "currency", "fare_amount", "flight_number", "seats"}},
		{"unknown airplane and airports", flight.NewFlight{FlightNumber: "AI1", AirplaneID: 999999, DepartureAirport: "XXX", ArrivalAirport: "YYY",
			DepartureTime: dep, ArrivalTime: dep.Add(time.Hour), FareAmount: 100, Currency: "INR"},
			[]string{"airplane_id", "arrival_airport", "departure_airport"}},
		{"missing times", flight.NewFlight{FlightNumber: "AI1", AirplaneID: plane, DepartureAirport: "DEL", ArrivalAirport: "BOM", FareAmount: 1, Currency: "INR"},
			[]string{"arrival_time", "departure_time"}},
	}
	for _, tc := range tests {
		_, err := cat.CreateFlight(ctx, tc.in)
		if got := fields(t, err); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v, want %v", tc.name, got, tc.fields)
		}
	}
	page, _, err := cat.Search(ctx, search(t, "limit=100"), time.Now())
	if err != nil || len(page) != 1 {
		t.Fatalf("flights after refused creations: %d %v, want the seeded one", len(page), err)
	}
}

func search(t *testing.T, query string) flight.Search {
	t.Helper()
	q, err := url.ParseQuery(query)
	testenv.Fatal(t, "parse query", err)
	s, err := flight.ParseSearch(q)
	testenv.Fatal(t, "parse search "+query, err)
	return s
}

// testSearch checks the search's filters, its sort orders and its pages: every flight once,
// in order, whatever the sort.
func testSearch(t *testing.T, s Stores) {
	ctx := context.Background()
	cat := s.Catalog
	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM", "BLR"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 100})
	testenv.Fatal(t, "airplane", err)
	create := func(from, to string, dep time.Time, fare int64, seats *int) int64 {
		t.Helper()
		f, err := cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: from, ArrivalAirport: to,
			DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: fare, Currency: "INR", Seats: seats})
		testenv.Fatal(t, "create flight", err)
		return f.ID
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 10)
	// 24 DEL-BOM flights over two days with varied fares, one on another route, one nearly
	// full, one departed and one cancelled.
	var want []int64
	for i := range 24 {
		dep := day.Add(time.Duration(i%12)*time.Hour + time.Duration(i/12)*24*time.Hour)
		want = append(want, create("DEL", "BOM", dep, int64(1000+(i%5)*1000), nil))
	}
	create("DEL", "BLR", day, 1000, nil)
	create("DEL", "BOM", day.Add(30*time.Minute), 1000, ptr(1))
	create("DEL", "BOM", time.Now().Add(-time.Hour), 1000, nil)
	_, err = cat.Cancel(ctx, create("DEL", "BOM", day, 1000, nil))
	testenv.Fatal(t, "cancel", err)

	date := day.Format(time.DateOnly)
	for q, n := range map[string]int{
		"from=DEL&to=BOM&limit=100":                                          25,
		"from=DEL&to=BOM&travellers=2&limit=100":                             24,
		"from=DEL&to=BOM&date=" + date + "&limit=100":                        13,
		"trips=DEL-BOM&tripDate=" + date + "&limit=100":                      13,
		"from=DEL&to=BOM&min_price=2000&max_price=3000&limit=100":            10,
		"trips=DEL-BOM&price=2000-3000&limit=100":                            10,
		"from=DEL&to=BLR":                                                    1,
		"from=BOM&to=DEL":                                                    0,
		"date=" + date + "&limit=100":                                        14,
		"limit=100":                                                          26,
		"from=DEL&to=BOM&date=" + day.AddDate(0, 0, 5).Format(time.DateOnly): 0,
	} {
		page, next, err := cat.Search(ctx, search(t, q), time.Now())
		if err != nil || len(page) != n || next != "" {
			t.Errorf("%s: %d flights, next %q, %v; want %d on one page", q, len(page), next, err, n)
		}
	}

	for _, sortParam := range []string{"price,-departure_time", "price_ASC,departureTime_DESC", "-price", "departure_time", "-arrival_time,price"} {
		var seen []flight.Flight
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("%s: too many pages", sortParam)
			}
			q := url.Values{"from": {"DEL"}, "to": {"BOM"}, "travellers": {"2"}, "sort": {sortParam}, "limit": {"7"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			page, next, err := cat.Search(ctx, search(t, q.Encode()), time.Now())
			testenv.Fatal(t, sortParam, err)
			seen = append(seen, page...)
			if next == "" {
				break
			}
			cursor = next
		}
		ids := make([]int64, len(seen))
		for i, f := range seen {
			ids[i] = f.ID
		}
		if sorted := slices.Sorted(slices.Values(ids)); !slices.Equal(sorted, want) {
			t.Fatalf("%s: pages returned %v, want each of %v once", sortParam, ids, want)
		}
		ordered := slices.IsSortedFunc(seen, func(a, b flight.Flight) int {
			switch sortParam {
			case "-price":
				return int(b.FareAmount - a.FareAmount)
			case "departure_time":
				return a.DepartureTime.Compare(b.DepartureTime)
			case "-arrival_time,price":
				if c := b.ArrivalTime.Compare(a.ArrivalTime); c != 0 {
					return c
				}
				return int(a.FareAmount - b.FareAmount)
			}
			if a.FareAmount != b.FareAmount {
				return int(a.FareAmount - b.FareAmount)
			}
			return b.DepartureTime.Compare(a.DepartureTime)
		})
		if !ordered {
			t.Fatalf("%s: results out of order", sortParam)
		}
	}
}
