package flight_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

func fields(err error) []string {
	fe, _ := validation.As(err)
	var out []string
	for _, f := range fe {
		out = append(out, f.Field)
	}
	return out
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	open := flight.Seating{Status: "scheduled", Departure: now.Add(time.Hour), Available: 3, Fare: 1000, Currency: "EUR"}
	req := flight.HoldRequest{BookingID: uuid.NewString(), FlightID: 1, Seats: 2}
	tests := []struct {
		name   string
		s      flight.Seating
		seats  int
		status flight.HoldStatus
		reason string
		total  int64
	}{
		{"held", open, 2, flight.HoldHeld, "", 2000},
		{"last seats", open, 3, flight.HoldHeld, "", 3000},
		{"one too many", open, 4, flight.HoldRejected, flight.ReasonSoldOut, 0},
		{"cancelled", flight.Seating{Status: "cancelled", Departure: now.Add(time.Hour), Available: 3}, 1, flight.HoldRejected, flight.ReasonFlightClosed, 0},
		{"departing now", flight.Seating{Status: "scheduled", Departure: now, Available: 3}, 1, flight.HoldRejected, flight.ReasonFlightClosed, 0},
	}
	for _, tc := range tests {
		r := req
		r.Seats = tc.seats
		h := flight.Decide(r, tc.s, now)
		if h.Status != tc.status || h.Reason != tc.reason || h.Total != tc.total {
			t.Errorf("%s: got %s/%q total %d, want %s/%q total %d", tc.name, h.Status, h.Reason, h.Total, tc.status, tc.reason, tc.total)
		}
	}
}

func TestHoldRequestCheck(t *testing.T) {
	id := uuid.NewString()
	for _, tc := range []struct {
		req  flight.HoldRequest
		want string
	}{
		{flight.HoldRequest{BookingID: id, FlightID: 1, Seats: 1}, ""},
		{flight.HoldRequest{BookingID: id, FlightID: 1, Seats: 9}, ""},
		{flight.HoldRequest{BookingID: id, FlightID: 1, Seats: 10}, flight.ReasonInvalidRequest},
		{flight.HoldRequest{BookingID: id, FlightID: 1, Seats: 0}, flight.ReasonInvalidRequest},
		{flight.HoldRequest{BookingID: id, FlightID: 0, Seats: 1}, flight.ReasonInvalidRequest},
		{flight.HoldRequest{BookingID: "b-1", FlightID: 1, Seats: 1}, flight.ReasonInvalidRequest},
	} {
		if got := tc.req.Check(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.req, got, tc.want)
		}
	}
}

func TestAirplaneValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    flight.Airplane
		want []string
	}{
		{"no layout", flight.Airplane{Model: "A320", Capacity: 180}, nil},
		{"layout adds up", flight.Airplane{Model: "A320", Capacity: 180, Cabins: []flight.Cabin{{Class: "business", Rows: 2, SeatsPerRow: 6}, {Class: "economy", Rows: 28, SeatsPerRow: 6}}}, nil},
		{"layout short", flight.Airplane{Model: "A320", Capacity: 180, Cabins: []flight.Cabin{{Class: "economy", Rows: 28, SeatsPerRow: 6}}}, []string{"capacity"}},
		{"bad cabin", flight.Airplane{Model: "A320", Capacity: 6, Cabins: []flight.Cabin{{Class: "economy", Rows: 1, SeatsPerRow: 6}, {Class: "economy", Rows: 0, SeatsPerRow: 0}}}, []string{"cabins[1].class", "cabins[1].rows", "cabins[1].seats_per_row"}},
		{"empty", flight.Airplane{}, []string{"model", "capacity"}},
	} {
		if got := fields(tc.a.Validate()); !slices.Equal(got, tc.want) {
			t.Errorf("%s: fields %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseSearch(t *testing.T) {
	for _, tc := range []struct {
		query  string
		sort   string
		from   string
		min    int64
		max    int64
		fields []string
	}{
		{"from=del&to=bom", "departure_time", "DEL", 0, 0, nil},
		{"trips=DEL-BOM&price=1000-5000", "departure_time", "DEL", 1000, 5000, nil},
		{"sort=price,-departure_time", "price,-departure_time", "", 0, 0, nil},
		{"sort=price_ASC,departureTime_DESC", "price,-departure_time", "", 0, 0, nil},
		{"sort=-arrival_time", "-arrival_time", "", 0, 0, nil},
		{"sort=price,price", "price", "", 0, 0, []string{"sort"}},
		{"sort=name", "", "", 0, 0, []string{"sort"}},
		{"price=5000-1000", "departure_time", "", 0, 0, []string{"price"}},
		{"min_price=5000&max_price=1000", "departure_time", "", 5000, 1000, []string{"max_price"}},
		{"date=2026-13-01&tripDate=x&travellers=10&limit=0&from=DE1", "departure_time", "", 0, 0, []string{"from", "date", "tripDate", "travellers", "limit"}},
		{"cursor=garbage", "departure_time", "", 0, 0, []string{"cursor"}},
		{"trips=DELBOM", "", "", 0, 0, []string{"trips"}},
		{"trips=DE-BOM&price=cheap", "", "", 0, 0, []string{"trips", "price"}},
	} {
		q, _ := url.ParseQuery(tc.query)
		s, err := flight.ParseSearch(q)
		got := fields(err)
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v, want %v", tc.query, got, tc.fields)
			continue
		}
		if err == nil && (s.SortString() != tc.sort || s.From != tc.from || s.MinPrice != tc.min || s.MaxPrice != tc.max) {
			t.Errorf("%s: got sort %q from %q price %d-%d", tc.query, s.SortString(), s.From, s.MinPrice, s.MaxPrice)
		}
	}
	// A cursor only fits the sort it was made for.
	cur := flight.Cursor{Sort: "price", Values: []int64{100}, ID: 7}.Encode()
	if _, err := flight.ParseSearch(url.Values{"sort": {"price"}, "cursor": {cur}}); err != nil {
		t.Errorf("matching cursor refused: %v", err)
	}
	if _, err := flight.ParseSearch(url.Values{"sort": {"-price"}, "cursor": {cur}}); err == nil {
		t.Error("cursor for another sort accepted")
	}
}
