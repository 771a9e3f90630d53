package flight_test

import (
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

func TestNewFlightValidate(t *testing.T) {
	t.Parallel()
	dep := time.Date(2027, 1, 15, 6, 0, 0, 0, time.UTC)
	valid := flight.NewFlight{
		FlightNumber: "AI101", AirplaneID: 1, DepartureAirport: "DEL", ArrivalAirport: "BOM",
		DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 450000, Currency: "INR", BoardingGate: "A1",
	}
	seats := func(n int) *int { return &n }
	tests := []struct {
		name     string
		change   func(*flight.NewFlight)
		capacity int
		fields   []string
	}{
		{"valid", func(*flight.NewFlight) {}, 180, nil},
		{"seats within capacity", func(f *flight.NewFlight) { f.Seats = seats(180) }, 180, nil},
		{"seats above capacity", func(f *flight.NewFlight) { f.Seats = seats(181) }, 180, []string{"seats"}},
		{"seats not checked against an unknown airplane", func(f *flight.NewFlight) { f.Seats = seats(500) }, 0, nil},
		{"no seats", func(f *flight.NewFlight) { f.Seats = seats(0) }, 180, []string{"seats"}},
		{"same airports", func(f *flight.NewFlight) { f.ArrivalAirport = "DEL" }, 180, []string{"arrival_airport"}},
		{"lower-case airport", func(f *flight.NewFlight) { f.DepartureAirport = "del" }, 180, []string{"departure_airport"}},
		{"arrival at departure", func(f *flight.NewFlight) { f.ArrivalTime = dep }, 180, []string{"arrival_time"}},
		{"missing times", func(f *flight.NewFlight) { f.DepartureTime, f.ArrivalTime = time.Time{}, time.Time{} }, 180, []string{"arrival_time", "departure_time"}},
		{"zero fare", func(f *flight.NewFlight) { f.FareAmount = 0 }, 180, []string{"fare_amount"}},
		{"well-formed unknown currency", func(f *flight.NewFlight) { f.Currency = "ABC" }, 180, []string{"currency"}},
		{"lower-case currency", func(f *flight.NewFlight) { f.Currency = "inr" }, 180, []string{"currency"}},
		{"euro", func(f *flight.NewFlight) { f.Currency = "EUR" }, 180, nil},
		{"bad flight number", func(f *flight.NewFlight) { f.FlightNumber = "AI-101" }, 180, []string{"flight_number"}},
		{"long gate", func(f *flight.NewFlight) { f.BoardingGate = "Terminal 3 gate 42" }, 180, []string{"boarding_gate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := valid
			tc.change(&f)
			var got []string
			if errs, ok := validation.As(f.Validate(tc.capacity)); ok {
				for _, e := range errs {
					got = append(got, e.Field)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields %v, want %v", got, tc.fields)
			}
		})
	}
}
