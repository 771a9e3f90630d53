// Package flights lets the booking service refuse a booking for a flight that does not exist,
// was cancelled or has left, before writing anything, by asking the flight service's public
// API. It is a courtesy to the client, not a guarantee: seat availability and the flight's
// final word stay with the saga, and when the flight service cannot be asked the booking is
// accepted and the saga decides (an unknown flight then ends REJECTED flight_not_found).
package flights

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Config is where the flight service is and how long its answers are trusted. The booking
// service reads it under FLIGHTBOOK_FLIGHT_ (FLIGHTBOOK_FLIGHT_SERVICE_URL, ...).
type Config struct {
	URL      string        `envconfig:"SERVICE_URL" default:"http://127.0.0.1:8081" desc:"base URL of the flight service's API, asked whether a flight exists before a booking is written; empty to let the saga alone decide"`
	CacheTTL time.Duration `envconfig:"CACHE_TTL" default:"30s" desc:"how long the booking service trusts what the flight service said about a flight"`
	Timeout  time.Duration `envconfig:"LOOKUP_TIMEOUT" default:"500ms" desc:"how long a booking request waits for the flight service before accepting the booking and leaving the check to the saga"`
}

// maxCached bounds the cache; past it the cache is emptied (flights are few, lookups cheap).
const maxCached = 100_000

// Client checks flights against the flight service, with a cache of the answers.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	cache map[int64]cached
}

type cached struct {
	flight
	at time.Time
}

// flight is the part of the flight service's answer that decides bookability.
type flight struct {
	Status        string    `json:"status"`
	DepartureTime time.Time `json:"departure_time"`
}

// New returns a client; with an empty URL every check passes.
func New(cfg Config, log *slog.Logger) *Client {
	if log == nil {
		log = slog.Default()
	}
	return &Client{
		cfg:   cfg,
		http:  &http.Client{Timeout: cfg.Timeout},
		log:   log.With("component", "flights"),
		now:   time.Now,
		cache: map[int64]cached{},
	}
}

// Check returns a validation error naming flight_id when the flight service says the flight
// does not exist, is cancelled or has departed. It returns nil when the flight is bookable, or
// when the flight service could not be asked (the saga then decides).
func (c *Client) Check(ctx context.Context, flightID int64) error {
	if c == nil || c.cfg.URL == "" {
		return nil
	}
	f, ok := c.cached(flightID)
	if !ok {
		var found bool
		var err error
		f, found, err = c.fetch(ctx, flightID)
		switch {
		case err != nil:
			c.log.WarnContext(ctx, "flight service not asked; the saga will check the flight", "flight_id", flightID, "error", err)
			return nil
		case !found:
			// Not cached: a flight created a moment ago must be bookable at once.
			return validation.Field("flight_id", fmt.Sprintf("no flight with id %d", flightID))
		}
		c.store(flightID, f)
	}
	switch {
	case f.Status != "scheduled":
		return validation.Field("flight_id", fmt.Sprintf("flight %d is %s and cannot be booked", flightID, f.Status))
	case !f.DepartureTime.After(c.now()):
		return validation.Field("flight_id", fmt.Sprintf("flight %d has departed", flightID))
	}
	return nil
}

func (c *Client) cached(id int64) (flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[id]
	if !ok || c.now().Sub(e.at) > c.cfg.CacheTTL {
		return flight{}, false
	}
	return e.flight, true
}

func (c *Client) store(id int64, f flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= maxCached {
		clear(c.cache)
	}
	c.cache[id] = cached{flight: f, at: c.now()}
}

// fetch asks the flight service for one flight. found is false on a 404.
func (c *Client) fetch(ctx context.Context, id int64) (f flight, found bool, err error) {
	url := strings.TrimSuffix(c.cfg.URL, "/") + "/api/v1/flights/" + strconv.FormatInt(id, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return flight{}, false, fmt.Errorf("flight %d: %w", id, err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return flight{}, false, fmt.Errorf("flight %d: %w", id, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return flight{}, false, nil
	default:
		return flight{}, false, fmt.Errorf("flight %d: GET %s answered %s", id, url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&f); err != nil {
		return flight{}, false, fmt.Errorf("flight %d: decode the flight service's answer: %w", id, err)
	}
	return f, true, nil
}
