package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// BookingSnapshot is one booking as last read from the booking service.
type BookingSnapshot struct {
	ID       ID
	FlightID ID
	Seats    int
	Status   string
}

// FlightCheck is the verdict on one flight the run created.
type FlightCheck struct {
	FlightID  string `json:"flight_id"`
	Total     int    `json:"total_seats"`
	Available int    `json:"available_seats"`
	Held      int    `json:"held_seats"`
	Sold      int    `json:"sold_seats"`
	// BookedHeld and BookedConfirmed are the seats of the run's HELD and CONFIRMED bookings on
	// this flight, from the booking service.
	BookedHeld      int `json:"booked_held_seats"`
	BookedConfirmed int `json:"booked_confirmed_seats"`
	// UnknownSeats are the seats of booking requests whose outcome was never learned.
	UnknownSeats int      `json:"unknown_seats,omitempty"`
	Oversold     int      `json:"oversold"`
	Violations   []string `json:"violations,omitempty"`
}

// Verdict is the outcome of evaluate: a check per flight, the bookings by status, and every
// broken invariant in words.
type Verdict struct {
	Flights    []FlightCheck
	ByStatus   map[string]int
	Oversold   int
	Violations []string
}

// finalOrHeld are the states a booking may be in once the system is quiet.
var finalOrHeld = []string{StatusHeld, StatusConfirmed, StatusRejected, StatusExpired, StatusCancelled}

// evaluate judges the invariants on flights (as GET /flights/{id} answered once the system was
// quiet) against the run's bookings and the seats of requests whose outcome is unknown:
//
//   - per flight, available + held + sold == total and available >= 0;
//   - no oversell: the seats of HELD and CONFIRMED bookings fit in the flight;
//   - the flight holds exactly the seats of the HELD bookings and has sold exactly those of the
//     CONFIRMED ones (with unknown outcomes, the total may exceed them by at most those seats);
//   - no seat lost: on a flight where nothing was ever released (no booking EXPIRED or
//     CANCELLED), a booking was REJECTED only if fewer seats than it asked for remain, because
//     available seats only go down when nothing is released;
//   - every booking is HELD or in a final state.
func evaluate(flights []Flight, bookings []BookingSnapshot, unknown map[ID]int) Verdict {
	type tally struct {
		held, confirmed int
		released        bool
		minRejected     int // fewest seats of a REJECTED booking; 0 when none
	}
	tallies := map[ID]*tally{}
	byStatus := map[string]int{}
	for _, b := range bookings {
		byStatus[b.Status]++
		t := tallies[b.FlightID]
		if t == nil {
			t = &tally{}
			tallies[b.FlightID] = t
		}
		switch b.Status {
		case StatusHeld:
			t.held += b.Seats
		case StatusConfirmed:
			t.confirmed += b.Seats
		case StatusExpired, StatusCancelled:
			t.released = true
		case StatusRejected:
			if t.minRejected == 0 || b.Seats < t.minRejected {
				t.minRejected = b.Seats
			}
		}
	}

	v := Verdict{ByStatus: byStatus}
	for _, f := range flights {
		t := tallies[f.ID]
		if t == nil {
			t = &tally{}
		}
		c := FlightCheck{
			FlightID: f.ID.String(), Total: f.TotalSeats, Available: f.AvailableSeats,
			Held: f.HeldSeats, Sold: f.SoldSeats,
			BookedHeld: t.held, BookedConfirmed: t.confirmed, UnknownSeats: unknown[f.ID],
		}
		fail := func(format string, args ...any) { c.Violations = append(c.Violations, fmt.Sprintf(format, args...)) }
		if sum := f.AvailableSeats + f.HeldSeats + f.SoldSeats; sum != f.TotalSeats {
			fail("available+held+sold = %d+%d+%d = %d, total_seats = %d", f.AvailableSeats, f.HeldSeats, f.SoldSeats, sum, f.TotalSeats)
		}
		if f.AvailableSeats < 0 {
			fail("available_seats = %d is negative", f.AvailableSeats)
		}
		booked := t.held + t.confirmed
		c.Oversold = max(0, booked-f.TotalSeats)
		if c.Oversold > 0 {
			fail("OVERSOLD by %d: HELD+CONFIRMED bookings have %d seats, the flight has %d", c.Oversold, booked, f.TotalSeats)
		}
		onFlight := f.HeldSeats + f.SoldSeats
		switch {
		case c.UnknownSeats == 0 && onFlight != booked:
			fail("flight holds+sold %d seats, HELD+CONFIRMED bookings have %d", onFlight, booked)
		case c.UnknownSeats == 0 && (f.HeldSeats != t.held || f.SoldSeats != t.confirmed):
			fail("flight held/sold %d/%d seats, bookings HELD/CONFIRMED %d/%d", f.HeldSeats, f.SoldSeats, t.held, t.confirmed)
		case c.UnknownSeats > 0 && (onFlight < booked || onFlight > booked+c.UnknownSeats):
			fail("flight holds+sold %d seats, HELD+CONFIRMED bookings have %d (+ up to %d of unknown outcome)", onFlight, booked, c.UnknownSeats)
		}
		if !t.released && t.minRejected > 0 && f.AvailableSeats >= t.minRejected {
			fail("seats lost: a booking of %d seat(s) was REJECTED while %d seats remain and none were ever released", t.minRejected, f.AvailableSeats)
		}
		v.Oversold += c.Oversold
		for _, msg := range c.Violations {
			v.Violations = append(v.Violations, "flight "+c.FlightID+": "+msg)
		}
		v.Flights = append(v.Flights, c)
	}

	for _, status := range slices.Sorted(maps.Keys(byStatus)) {
		if !slices.Contains(finalOrHeld, status) {
			v.Violations = append(v.Violations, fmt.Sprintf("%d booking(s) still %s once the system should be quiet", byStatus[status], cmp.Or(status, `""`)))
		}
	}
	return v
}

// statusFigures flattens a readiness document into its numeric leaves, keyed by dotted path
// ({"outbox":{"lag":2}} gives "outbox.lag": 2). Anything that is not JSON gives nil.
func statusFigures(body []byte) map[string]float64 {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil
	}
	out := map[string]float64{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				walk(strings.TrimPrefix(path+"."+k, "."), child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s.%d", path, i), child)
			}
		case float64:
			out[path] = v
		}
	}
	walk("", doc)
	return out
}

// queueFigures picks the dead-letter counts and outbox backlogs out of statusFigures' result,
// by the naming convention described next to outboxBacklogWords.
func queueFigures(figures map[string]float64) (dlq, outbox map[string]float64) {
	dlq, outbox = map[string]float64{}, map[string]float64{}
	for k, v := range figures {
		lk := strings.ToLower(k)
		switch {
		case strings.Contains(lk, "dlq") || strings.Contains(lk, "dead_letter") || strings.Contains(lk, "deadletter"):
			dlq[k] = v
		case strings.Contains(lk, "outbox") && slices.ContainsFunc(outboxBacklogWords, func(w string) bool { return strings.Contains(lk, w) }):
			outbox[k] = v
		}
	}
	return dlq, outbox
}
