package flight_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight"
)

const bookingID = "6f1c2a1e-6a51-4c64-9b8e-3d0f6f1f2a10"

func TestHoldRequestCheckReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  flight.HoldRequest
		want string
	}{
		{"one seat", flight.HoldRequest{BookingID: bookingID, FlightID: 1, Seats: 1}, ""},
		{"nine seats", flight.HoldRequest{BookingID: bookingID, FlightID: 1, Seats: 9}, ""},
		{"zero seats", flight.HoldRequest{BookingID: bookingID, FlightID: 1, Seats: 0}, flight.ReasonInvalidRequest},
		{"negative seats", flight.HoldRequest{BookingID: bookingID, FlightID: 1, Seats: -1}, flight.ReasonInvalidRequest},
		{"ten seats", flight.HoldRequest{BookingID: bookingID, FlightID: 1, Seats: 10}, flight.ReasonInvalidRequest},
		{"booking id not a uuid", flight.HoldRequest{BookingID: "b-1", FlightID: 1, Seats: 1}, flight.ReasonInvalidRequest},
		{"empty booking id", flight.HoldRequest{FlightID: 1, Seats: 1}, flight.ReasonInvalidRequest},
		{"flight id zero", flight.HoldRequest{BookingID: bookingID, FlightID: 0, Seats: 1}, flight.ReasonInvalidRequest},
		{"flight id negative", flight.HoldRequest{BookingID: bookingID, FlightID: -4, Seats: 1}, flight.ReasonInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.Check(); got != tc.want {
				t.Errorf("Check() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecideHoldRule(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	open := flight.Seating{Status: "scheduled", Departure: now.Add(time.Hour), Available: 3, Fare: 450000, Currency: "INR"}
	with := func(f func(*flight.Seating)) flight.Seating { s := open; f(&s); return s }
	tests := []struct {
		name   string
		seats  int
		s      flight.Seating
		status flight.HoldStatus
		reason string
		total  int64
	}{
		{"held, priced per seat", 2, open, flight.HoldHeld, "", 900000},
		{"exactly the seats left", 3, open, flight.HoldHeld, "", 1350000},
		{"one seat too many", 4, open, flight.HoldRejected, flight.ReasonSoldOut, 0},
		{"none left", 1, with(func(s *flight.Seating) { s.Available = 0 }), flight.HoldRejected, flight.ReasonSoldOut, 0},
		{"cancelled", 1, with(func(s *flight.Seating) { s.Status = "cancelled" }), flight.HoldRejected, flight.ReasonFlightClosed, 0},
		{"departing now", 1, with(func(s *flight.Seating) { s.Departure = now }), flight.HoldRejected, flight.ReasonFlightClosed, 0},
		{"departed", 1, with(func(s *flight.Seating) { s.Departure = now.Add(-time.Minute) }), flight.HoldRejected, flight.ReasonFlightClosed, 0},
		// A closed flight is closed even with seats to spare, and says so rather than sold out.
		{"cancelled and full", 1, with(func(s *flight.Seating) { s.Status, s.Available = "cancelled", 0 }), flight.HoldRejected, flight.ReasonFlightClosed, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := flight.HoldRequest{BookingID: bookingID, FlightID: 7, Seats: tc.seats}
			h := flight.Decide(req, tc.s, now)
			if h.Status != tc.status || h.Reason != tc.reason || h.Total != tc.total {
				t.Fatalf("Decide = %s/%q total %d, want %s/%q total %d", h.Status, h.Reason, h.Total, tc.status, tc.reason, tc.total)
			}
			if h.BookingID != bookingID || h.FlightID != 7 || h.Seats != tc.seats {
				t.Errorf("Decide lost the request: %+v", h)
			}
			if h.Held() != (tc.status == flight.HoldHeld) {
				t.Errorf("Held() = %v for %s", h.Held(), h.Status)
			}
			if h.Held() && (h.UnitPrice != 450000 || h.Currency != "INR") {
				t.Errorf("price %d %s, want 450000 INR", h.UnitPrice, h.Currency)
			}
			if !h.Held() && (h.UnitPrice != 0 || h.Detail == "") {
				t.Errorf("a rejection carries a price (%d) or no detail (%q)", h.UnitPrice, h.Detail)
			}
		})
	}
}

func TestHoldHeld(t *testing.T) {
	t.Parallel()
	for status, want := range map[flight.HoldStatus]bool{
		flight.HoldHeld: true, flight.HoldSold: true, flight.HoldReleased: false, flight.HoldRejected: false,
	} {
		if got := (flight.Hold{Status: status}).Held(); got != want {
			t.Errorf("Held() for %s = %v, want %v", status, got, want)
		}
	}
}

func TestAuditProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a    flight.Audit
		want []string // a fragment of each problem, in order
	}{
		{"sound", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: 5, Held: 3, Sold: 2}, Held: 3, Sold: 2}, nil},
		{"empty flight", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: 10}}, nil},
		{"oversold", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: -1, Held: 11}, Held: 11},
			[]string{"negative"}},
		{"seats lost", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: 5, Held: 3}, Held: 3},
			[]string{"!= total 10"}},
		{"held counter drifted", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: 6, Held: 4}, Held: 3},
			[]string{"4 seats held, its holds say 3"}},
		{"sold counter drifted", flight.Audit{Counts: flight.SeatCounts{Total: 10, Available: 8, Sold: 2}, Sold: 1},
			[]string{"2 seats sold, its holds say 1"}},
		{"everything wrong", flight.Audit{Counts: flight.SeatCounts{Total: 1, Available: -1, Held: 1, Sold: 2}},
			[]string{"negative", "!= total 1", "1 seats held", "2 seats sold"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.a.Problems()
			if len(got) != len(tc.want) {
				t.Fatalf("Problems() = %q, want %d problems", got, len(tc.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want it to mention %q", i, got[i], tc.want[i])
				}
			}
			if (len(got) == 0) != tc.a.Counts.Balanced() && tc.a.Counts.Held == tc.a.Held && tc.a.Counts.Sold == tc.a.Sold {
				t.Errorf("Balanced() = %v disagrees with Problems() %q", tc.a.Counts.Balanced(), got)
			}
		})
	}
}
