package loadtest

import (
	"math/rand/v2"
	"sync"
)

// booking is the tool's own record of one booking it made: enough to read it again (its
// owner's token) and to add up the seats it should hold.
type booking struct {
	id       ID
	flightID ID
	seats    int
	token    string
	status   string
	total    int64
	currency string
}

// attempt is a booking request whose outcome the tool never learned (every try failed in
// transport): the booking may or may not exist. Its Idempotency-Key lets the tool ask again
// once the services are back, and learn the answer without making a second booking.
type attempt struct {
	key      string
	flightID ID
	seats    int
	token    string
}

// ledger is every booking the run made, plus the attempts with unknown outcome. The
// verification at the end compares it with the flights' seat counts.
type ledger struct {
	mu       sync.Mutex
	bookings map[ID]*booking
	order    []ID
	unknown  []attempt
	// held are HELD bookings not yet paid or cancelled, for the mixed scenario to pick from.
	held []ID
}

func newLedger() *ledger { return &ledger{bookings: map[ID]*booking{}} }

// add records b, or updates the record when the booking is already known (a retried
// idempotent request answers with the same booking).
func (l *ledger) add(b booking) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.bookings[b.id]; ok {
		old.status = b.status
		return
	}
	l.bookings[b.id] = &b
	l.order = append(l.order, b.id)
}

// update stores what the service said about a known booking.
func (l *ledger) update(b Booking) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec, ok := l.bookings[b.ID]; ok {
		rec.status = b.Status
		if b.Total != 0 {
			rec.total, rec.currency = b.Total, b.Currency
		}
	}
}

func (l *ledger) addUnknown(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unknown = append(l.unknown, a)
}

// unknownCount is how many booking requests still have an unknown outcome.
func (l *ledger) unknownCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.unknown)
}

// takeUnknown removes and returns the attempts with unknown outcome.
func (l *ledger) takeUnknown() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.unknown
	l.unknown = nil
	return u
}

// pushHeld offers a HELD booking to later payments and cancellations.
func (l *ledger) pushHeld(id ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = append(l.held, id)
}

// takeHeld removes a random HELD booking from the pool; ok is false when there is none.
func (l *ledger) takeHeld(rng *rand.Rand) (booking, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) == 0 {
		return booking{}, false
	}
	i := rng.IntN(len(l.held))
	id := l.held[i]
	l.held[i] = l.held[len(l.held)-1]
	l.held = l.held[:len(l.held)-1]
	return *l.bookings[id], true
}

// size returns how many bookings the ledger holds.
func (l *ledger) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bookings)
}

// selectBookings returns copies of the bookings whose status keep says to keep.
func (l *ledger) selectBookings(keep func(status string) bool) []booking {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []booking
	for _, id := range l.order {
		if b := l.bookings[id]; keep(b.status) {
			out = append(out, *b)
		}
	}
	return out
}

// snapshot returns the bookings as the verification reads them, and the seats of the attempts
// still unknown, per flight.
func (l *ledger) snapshot() ([]BookingSnapshot, map[ID]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]BookingSnapshot, 0, len(l.order))
	for _, id := range l.order {
		b := l.bookings[id]
		out = append(out, BookingSnapshot{ID: b.id, FlightID: b.flightID, Seats: b.seats, Status: b.status})
	}
	unknown := map[ID]int{}
	for _, a := range l.unknown {
		unknown[a.flightID] += a.seats
	}
	return out, unknown
}
