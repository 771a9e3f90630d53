package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

// TestFlightCache checks the cache trusts a flight for its ttl and no longer, never keeps an
// unknown flight (so a new one is bookable as soon as it is known), passes errors through, and
// stays bounded.
func TestFlightCache(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	catalogue := map[int64]booking.Flight{7: {ID: 7, Number: "FB7"}}
	loads := 0
	broken := false
	c := &flightCache{ttl: time.Second, now: func() time.Time { return now },
		load: func(_ context.Context, id int64) (booking.Flight, error) {
			loads++
			if broken {
				return booking.Flight{}, errors.New("database down")
			}
			f, ok := catalogue[id]
			if !ok {
				return f, fmt.Errorf("flight %d: %w", id, booking.ErrFlightNotFound)
			}
			return f, nil
		}}
	get := func(id int64) (string, bool) {
		t.Helper()
		f, found, err := c.get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %d: %v", id, err)
		}
		return f.Number, found
	}

	if n, found := get(7); !found || n != "FB7" || loads != 1 {
		t.Fatalf("first read: %q %v after %d loads", n, found, loads)
	}
	catalogue[7] = booking.Flight{ID: 7, Number: "FB7", Cancelled: true}
	now = now.Add(999 * time.Millisecond)
	if _, _ = get(7); loads != 1 {
		t.Fatalf("read within the ttl loaded again (%d loads)", loads)
	}
	now = now.Add(time.Millisecond)
	if f, _, _ := c.get(context.Background(), 7); !f.Cancelled || loads != 2 {
		t.Fatalf("read after the ttl: cancelled %v after %d loads", f.Cancelled, loads)
	}

	if _, found := get(8); found {
		t.Fatal("unknown flight 8 found")
	}
	catalogue[8] = booking.Flight{ID: 8, Number: "FB8"}
	if _, found := get(8); !found {
		t.Fatal("flight 8 not found right after it became known: the unknown answer was cached")
	}

	broken = true
	now = now.Add(time.Hour)
	if _, _, err := c.get(context.Background(), 7); err == nil {
		t.Fatal("a failed load was not reported")
	}
	broken = false

	for id := range int64(maxCachedFlights + 10) {
		catalogue[100+id] = booking.Flight{ID: 100 + id}
		get(100 + id)
	}
	if len(c.flights) > maxCachedFlights {
		t.Fatalf("cache holds %d flights, more than %d", len(c.flights), maxCachedFlights)
	}
}
