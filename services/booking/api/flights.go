package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

// maxCachedFlights bounds the cache; past it the cache starts afresh rather than keeping
// track of which entry is oldest.
const maxCachedFlights = 10_000

// flightCache keeps flights read from the local catalogue for ttl. A hot flight takes
// thousands of bookings a second while its row changes only when it is rescheduled or
// cancelled, and reading it on every POST cost a fifth of the POST rate here (a second pool
// checkout per request). A flight cancelled within ttl of a read is still refused, by the
// saga (flight_closed) instead of a 422. Only flights that exist are kept, so a new flight is
// bookable as soon as its FlightScheduled has arrived.
type flightCache struct {
	ttl  time.Duration
	load func(ctx context.Context, id int64) (booking.Flight, error)
	now  func() time.Time

	mu      sync.Mutex
	flights map[int64]cachedFlight
}

type cachedFlight struct {
	flight  booking.Flight
	expires time.Time
}

// get returns the flight from the cache or, when it is not there or too old, from load;
// found is false for a flight the catalogue does not have.
func (c *flightCache) get(ctx context.Context, id int64) (f booking.Flight, found bool, err error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.flights[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.flight, true, nil
	}
	f, err = c.load(ctx, id)
	if errors.Is(err, booking.ErrFlightNotFound) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	c.mu.Lock()
	if c.flights == nil || len(c.flights) >= maxCachedFlights {
		c.flights = make(map[int64]cachedFlight)
	}
	c.flights[id] = cachedFlight{flight: f, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return f, true, nil
}
