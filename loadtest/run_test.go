package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/auth"
)

// These tests run the whole tool in-process against a small in-memory stand-in for the two
// services' REST APIs. They test the tool (set-up, scenarios, retries, verification, report),
// not the services: the end-to-end run against the real services belongs with them.

type fakeFlight struct {
	total, available, held, sold int
	fare                         int64
}

type fakeBooking struct {
	id, user, flight string
	seats            int
	status           string
	total            int64
	settled          chan struct{} // closed when the booking leaves PENDING
}

// fakeServices answers the REST API the tool drives, with holds applied asynchronously as the
// saga does. oversell skips the availability check (the seed's bug); dropResponses makes the
// first that many booking POSTs commit and then cut the connection before answering; downFile,
// while it exists, makes the booking API answer 503 (the chaos commands create and remove it).
type fakeServices struct {
	auth          *auth.Authenticator
	oversell      bool
	dropResponses int
	downFile      string
	adminList     bool          // serve GET /api/v1/admin/bookings, as the real service does
	holdDelay     time.Duration // how long a booking stays PENDING, as a saga behind a queue
	holdInline    bool          // decide each booking before its POST answers: none is PENDING

	gets, lists int // GET /api/v1/bookings/{id} and admin list requests answered

	mu       sync.Mutex
	seq      int
	flights  map[string]*fakeFlight
	bookings map[string]*fakeBooking
	keys     map[string]*fakeBooking
	posts    int
}

func startFake(t *testing.T, f *fakeServices) (flightURL, bookingURL string) {
	t.Helper()
	a, err := auth.New(auth.Config{Secret: auth.DevSecret, Issuer: "flightbook"}, nil)
	require.NoError(t, err)
	f.auth, f.flights, f.bookings, f.keys = a, map[string]*fakeFlight{}, map[string]*fakeBooking{}, map[string]*fakeBooking{}

	fm := http.NewServeMux()
	create := func(w http.ResponseWriter, r *http.Request) {
		if f.user(r) != "admin" {
			problem(w, 403, "forbidden")
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			problem(w, 400, "bad_json")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.seq++
		id := f.seq
		if strings.HasSuffix(r.URL.Path, "/flights") {
			seats := int(body["seats"].(float64))
			f.flights[strconv.Itoa(id)] = &fakeFlight{total: seats, available: seats, fare: int64(body["fare_amount"].(float64))}
		}
		writeJSON(w, 201, map[string]any{"id": id, "extra_field": "ignored"})
	}
	for _, p := range []string{pathCities, pathAirports, pathAirplanes, pathFlights} {
		fm.HandleFunc("POST "+p, create)
	}
	fm.HandleFunc("GET /api/v1/flights/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fl := f.flights[r.PathValue("id")]
		if fl == nil {
			problem(w, 404, "not_found")
			return
		}
		id, _ := strconv.Atoi(r.PathValue("id"))
		writeJSON(w, 200, map[string]any{"id": id, "total_seats": fl.total, "available_seats": fl.available,
			"held_seats": fl.held, "sold_seats": fl.sold, "status": "scheduled"})
	})
	fm.HandleFunc("GET /api/v1/flights", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("from") == "" || r.URL.Query().Get("date") == "" {
			problem(w, 422, "validation_failed")
			return
		}
		writeJSON(w, 200, map[string]any{"data": []any{}})
	})
	fm.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"status": "ok"}) })
	fm.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"status": "ok", "checks": map[string]any{"postgres": "ok"}})
	})

	bm := http.NewServeMux()
	bm.HandleFunc("GET /api/v1/admin/flights/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": r.PathValue("id")})
	})
	bm.HandleFunc("POST /api/v1/bookings", f.book)
	bm.HandleFunc("GET /api/v1/bookings/{id}", func(w http.ResponseWriter, r *http.Request) {
		b := f.owned(w, r)
		if b == nil {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.gets++
		writeJSON(w, 200, b.json())
	})
	bm.HandleFunc("GET /api/v1/admin/bookings", func(w http.ResponseWriter, r *http.Request) {
		if !f.adminList {
			problem(w, 404, "not found")
			return
		}
		if f.user(r) != "admin" {
			problem(w, 403, "admins only")
			return
		}
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lists++
		var ids []string
		for id, b := range f.bookings {
			if b.flight == q.Get("flight_id") && id > q.Get("after") {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		page := map[string]any{}
		if len(ids) > limit {
			ids = ids[:limit]
			page["next_after"] = ids[limit-1]
		}
		items := []any{}
		for _, id := range ids {
			items = append(items, f.bookings[id].json())
		}
		page["items"] = items
		writeJSON(w, 200, page)
	})
	bm.HandleFunc("POST /api/v1/bookings/{id}/payments", f.pay)
	bm.HandleFunc("POST /api/v1/bookings/{id}/cancel", f.cancel)
	bm.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"status": "ok"}) })
	bm.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"status": "ok", "outbox": map[string]any{"lag_seconds": 0}, "dlq": map[string]any{"count": 0}})
	})
	down := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if f.downFile != "" && r.URL.Path != pathHealth {
				if _, err := os.Stat(f.downFile); err == nil {
					problem(w, 503, "unavailable")
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	fs, bs := httptest.NewServer(fm), httptest.NewServer(down(bm))
	t.Cleanup(fs.Close)
	t.Cleanup(bs.Close)
	return fs.URL, bs.URL
}

func (f *fakeServices) user(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	u, err := f.auth.Verify(tok)
	if err != nil {
		return ""
	}
	if u.IsAdmin() {
		return "admin"
	}
	return u.ID
}

func (f *fakeServices) book(w http.ResponseWriter, r *http.Request) {
	user := f.user(r)
	if user == "" {
		problem(w, 401, "unauthenticated")
		return
	}
	var req struct {
		FlightID json.Number `json:"flight_id"`
		Seats    int         `json:"seats"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Seats < 1 || req.Seats > 9 {
		problem(w, 422, "validation_failed")
		return
	}
	key := user + "/" + r.Header.Get(headerIdempotencyKey)
	f.mu.Lock()
	b := f.keys[key]
	fresh := b == nil
	if fresh {
		f.seq++
		b = &fakeBooking{id: fmt.Sprintf("bk-%d", f.seq), user: user, flight: req.FlightID.String(), seats: req.Seats,
			status: StatusPending, settled: make(chan struct{})}
		f.bookings[b.id] = b
		f.keys[key] = b
		f.posts++
		if !f.holdInline {
			go f.hold(b)
		}
	}
	drop := fresh && f.dropResponses > 0
	if drop {
		f.dropResponses--
	}
	f.mu.Unlock()
	if fresh && f.holdInline {
		f.hold(b)
	}
	if drop {
		panic(http.ErrAbortHandler) // committed, but the client never hears of it
	}
	if wait, ok := strings.CutPrefix(r.Header.Get(headerPrefer), "wait="); ok {
		n, _ := strconv.Atoi(wait)
		select {
		case <-b.settled:
		case <-time.After(time.Duration(n) * time.Second):
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	status := 202
	if b.status != StatusPending {
		status = 200
	}
	writeJSON(w, status, b.json())
}

// hold is the saga's round trip: the flight decides, the booking follows.
func (f *fakeServices) hold(b *fakeBooking) {
	time.Sleep(f.holdDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.flights[b.flight]
	switch {
	case fl == nil:
		b.status = StatusRejected
	case fl.available >= b.seats || f.oversell:
		fl.available -= b.seats
		fl.held += b.seats
		b.status, b.total = StatusHeld, fl.fare*int64(b.seats)
	default:
		b.status = StatusRejected
	}
	close(b.settled)
}

func (f *fakeServices) owned(w http.ResponseWriter, r *http.Request) *fakeBooking {
	user := f.user(r)
	f.mu.Lock()
	b := f.bookings[r.PathValue("id")]
	f.mu.Unlock()
	if b == nil || (b.user != user && user != "admin") {
		problem(w, 404, "not_found")
		return nil
	}
	return b
}

func (f *fakeServices) pay(w http.ResponseWriter, r *http.Request) {
	b := f.owned(w, r)
	if b == nil {
		return
	}
	var req paymentRequest
	if r.Header.Get(headerIdempotencyKey) == "" || json.NewDecoder(r.Body).Decode(&req) != nil {
		problem(w, 422, "validation_failed")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case b.status != StatusHeld:
		problem(w, 409, "not_held")
	case req.Amount != b.total || req.Currency != "EUR" || req.CardToken != cardSuccess:
		problem(w, 422, "wrong_amount")
	default:
		fl := f.flights[b.flight]
		fl.held -= b.seats
		fl.sold += b.seats
		b.status = StatusConfirmed
		writeJSON(w, 200, b.json())
	}
}

func (f *fakeServices) cancel(w http.ResponseWriter, r *http.Request) {
	b := f.owned(w, r)
	if b == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.flights[b.flight]
	switch b.status {
	case StatusHeld:
		fl.held -= b.seats
	case StatusConfirmed:
		fl.sold -= b.seats
	default:
		problem(w, 409, "not_cancellable")
		return
	}
	fl.available += b.seats
	b.status = StatusCancelled
	writeJSON(w, 200, b.json())
}

func (b *fakeBooking) json() map[string]any {
	flight, _ := strconv.Atoi(b.flight)
	m := map[string]any{"id": b.id, "flight_id": flight, "seats": b.seats, "status": b.status, "currency": "EUR"}
	if b.total > 0 {
		m["total"] = b.total
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "code": code, "title": http.StatusText(status)})
}

func testConfig(flightURL, bookingURL string) Config {
	return Config{
		FlightURL: flightURL, BookingURL: bookingURL, Secret: auth.DevSecret,
		Clients: 8, Duration: 20 * time.Second, Wait: -1, QuietTimeout: 10 * time.Second,
	}
}

func TestRunScenarios(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		drop  int // booking answers the fake cuts off
		cfg   func(*Config)
		check func(t *testing.T, rep Report, f *fakeServices)
	}{
		{
			name: "hot: 150 bookings on 100 seats",
			drop: 5,
			cfg:  func(c *Config) { c.Scenario, c.Requests, c.SeatsPerFlight = ScenarioHot, 150, 100 },
			check: func(t *testing.T, rep Report, f *fakeServices) {
				assert.Equal(t, map[string]int{StatusHeld: 100, StatusRejected: 50}, rep.Bookings)
				assert.Equal(t, 150, f.posts, "a booking whose answer was lost is asked about again, not made twice")
				assert.Equal(t, int64(150), rep.Operations)
				assert.Equal(t, int64(150), rep.BookingsAccepted)
				require.Len(t, rep.Flights, 1)
				assert.Equal(t, 100, rep.Flights[0].Held)
				assert.Equal(t, epBook, rep.Endpoints[0].Name)
				// 150 answered and up to 5 cut off; net/http itself replays some of those, since a
				// request with an Idempotency-Key is safe to send again.
				assert.GreaterOrEqual(t, rep.Endpoints[0].Count, int64(150))
				assert.LessOrEqual(t, rep.Endpoints[0].Count, int64(155))
			},
		},
		{
			name: "burst: 60 at once on 20 seats",
			cfg:  func(c *Config) { c.Scenario, c.Requests, c.SeatsPerFlight = ScenarioBurst, 60, 20 },
			check: func(t *testing.T, rep Report, _ *fakeServices) {
				assert.Equal(t, map[string]int{StatusHeld: 20, StatusRejected: 40}, rep.Bookings)
				assert.Equal(t, 60, rep.Clients, "a burst runs every request at once")
			},
		},
		{
			name: "spread over 5 flights",
			cfg:  func(c *Config) { c.Scenario, c.Requests, c.Flights, c.SeatsPerFlight = ScenarioSpread, 100, 5, 30 },
			check: func(t *testing.T, rep Report, _ *fakeServices) {
				assert.Len(t, rep.Flights, 5)
				assert.Equal(t, 100, rep.Bookings[StatusHeld]+rep.Bookings[StatusRejected])
			},
		},
		{
			name: "saga: 40 booked and paid",
			cfg:  func(c *Config) { c.Scenario, c.Requests, c.Flights = ScenarioSaga, 40, 3 },
			check: func(t *testing.T, rep Report, _ *fakeServices) {
				assert.Equal(t, map[string]int{StatusConfirmed: 40}, rep.Bookings)
				require.Len(t, rep.Saga, 3)
				for _, s := range rep.Saga {
					assert.Equal(t, int64(40), s.Count, s.Name)
				}
			},
		},
		{
			name: "mixed: 400 operations",
			cfg:  func(c *Config) { c.Scenario, c.Requests, c.Flights, c.SeatsPerFlight = ScenarioMixed, 400, 2, 40 },
			check: func(t *testing.T, rep Report, _ *fakeServices) {
				names := map[string]int64{}
				for _, e := range rep.Endpoints {
					names[e.Name] = e.Count
					// Payments and cancellations go to bookings other workers made, as their
					// owners: the fake, like the service, answers 404 to anyone else.
					assert.Zero(t, e.Errors, e.Name)
				}
				assert.Greater(t, names[epSearch], int64(150))
				assert.Greater(t, names[epBook], int64(40))
				assert.Greater(t, names[epPay], int64(10))
				assert.Greater(t, rep.Bookings[StatusConfirmed], 0)
				assert.Equal(t, 1, len(rep.Services[1].DLQAfter))
				assert.True(t, rep.Services[1].Available)
				assert.False(t, rep.Services[0].Available)
			},
		},
		{
			name: "open loop at 200/s for half a second",
			cfg: func(c *Config) {
				c.Scenario, c.Rate, c.Duration, c.Flights, c.SeatsPerFlight = ScenarioSpread, 200, 500*time.Millisecond, 2, 500
			},
			check: func(t *testing.T, rep Report, _ *fakeServices) {
				// The schedule allows at most rate x duration operations; how many start in
				// time depends on the machine's load, which the schedule lag reports (a timed
				// lower bound here failed on a busy CI machine).
				require.NotNil(t, rep.ScheduleLag)
				assert.Positive(t, rep.Operations)
				assert.LessOrEqual(t, rep.Operations, int64(105))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeServices{dropResponses: tt.drop}
			fu, bu := startFake(t, f)
			cfg := testConfig(fu, bu)
			tt.cfg(&cfg)
			var out bytes.Buffer
			rep, err := Run(context.Background(), cfg, &out, &bytes.Buffer{})
			require.NoError(t, err, out.String())
			assert.True(t, rep.OK())
			assert.Empty(t, rep.Violations)
			assert.Zero(t, rep.Oversold)
			assert.Zero(t, rep.UnknownOutcomes)
			assert.Contains(t, out.String(), "PASS: every invariant held")
			tt.check(t, rep, f)
			if t.Failed() {
				t.Log("\n" + out.String())
			}
		})
	}
}

// TestRunReportsWhenBookingsSettle: bookings the services accept at once but decide later
// show as a high accepted rate and a low decided rate, with the time the last one settled.
func TestRunReportsWhenBookingsSettle(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	f := &fakeServices{holdDelay: delay}
	fu, bu := startFake(t, f)
	cfg := testConfig(fu, bu)
	cfg.Scenario, cfg.Requests, cfg.SeatsPerFlight = ScenarioHot, 50, 100
	var out bytes.Buffer
	rep, err := Run(context.Background(), cfg, &out, &bytes.Buffer{})
	require.NoError(t, err, out.String())
	assert.GreaterOrEqual(t, float64(rep.SettledAfter), delay.Seconds(), "no booking is decided before the delay")
	assert.InDelta(t, float64(rep.BookingsAccepted)/float64(rep.SettledAfter), rep.BookingsDecidedPerSec, 0.01)
	assert.Less(t, rep.BookingsDecidedPerSec, rep.BookingsPerSec)
	assert.Contains(t, out.String(), "bookings decided/s")
}

// TestRunVerifiesThroughTheAdminList: with the booking service's admin list available, the
// verification reads the run's bookings a page at a time instead of one GET each.
func TestRunVerifiesThroughTheAdminList(t *testing.T) {
	t.Parallel()
	// Decided inline, no booking is PENDING when the verification starts, where a last few
	// would be read one by one (as they should be); what is left to read is the 100 HELD.
	f := &fakeServices{adminList: true, holdInline: true}
	fu, bu := startFake(t, f)
	cfg := testConfig(fu, bu)
	cfg.Scenario, cfg.Requests, cfg.SeatsPerFlight = ScenarioHot, 150, 100
	rep, err := Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{StatusHeld: 100, StatusRejected: 50}, rep.Bookings)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Zero(t, f.gets, "bookings read one by one")
	assert.Positive(t, f.lists)
}

func TestRunFlagsOversell(t *testing.T) {
	t.Parallel()
	fu, bu := startFake(t, &fakeServices{oversell: true})
	cfg := testConfig(fu, bu)
	cfg.Scenario, cfg.Requests, cfg.SeatsPerFlight, cfg.JSON = ScenarioBurst, 50, 40, true
	cfg.QuietTimeout = 2 * time.Second // the seat counts wait that long to settle before the verdict
	var out bytes.Buffer
	rep, err := Run(context.Background(), cfg, &out, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrInvariant)
	assert.Equal(t, 10, rep.Oversold)
	assert.False(t, rep.OK())

	var doc Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc), "--json writes the report as JSON")
	assert.Equal(t, 10, doc.Oversold)
	assert.Contains(t, strings.Join(doc.Violations, "\n"), "OVERSOLD by 10")
	assert.Contains(t, strings.Join(doc.Violations, "\n"), "available_seats = -10 is negative")
}

func TestRunChaos(t *testing.T) {
	t.Parallel()
	down := filepath.Join(t.TempDir(), "down")
	f := &fakeServices{downFile: down}
	fu, bu := startFake(t, f)
	cfg := testConfig(fu, bu)
	cfg.Scenario, cfg.Requests, cfg.Clients, cfg.Flights = ScenarioSaga, 60, 4, 2
	cfg.Rate = 100 // spread the sagas over the outage
	cfg.Chaos = Chaos{Enabled: true, At: 100 * time.Millisecond, Down: 300 * time.Millisecond,
		KillCmd: "touch " + down, StartCmd: "rm " + down}
	var out bytes.Buffer
	rep, err := Run(context.Background(), cfg, &out, &bytes.Buffer{})
	require.NoError(t, err, out.String())
	require.NotNil(t, rep.Chaos)
	assert.Empty(t, rep.Chaos.Skipped)
	assert.Empty(t, rep.Chaos.Errors)
	// Lower bounds only: how late the steps run depends on the machine's load.
	assert.GreaterOrEqual(t, float64(rep.Chaos.KilledAt), 0.1, "killed before --chaos-at")
	assert.GreaterOrEqual(t, float64(rep.Chaos.StartedAt-rep.Chaos.KilledAt), 0.3, "started again before --chaos-down passed")
	assert.Equal(t, map[string]int{StatusConfirmed: 60}, rep.Bookings, "requests refused during the outage were retried")
	var unavailable int64
	for _, e := range rep.Errors {
		if e.Status == 503 {
			unavailable += e.Count
		}
	}
	assert.Positive(t, unavailable, "the outage shows in the error table")
	assert.Contains(t, out.String(), "chaos       killed at")
	assert.NoFileExists(t, down)
}

func TestRunRefusesRemoteAndBadConfig(t *testing.T) {
	t.Parallel()
	cfg := testConfig("http://192.0.2.1:8081", "http://127.0.0.1:8082")
	_, err := Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorIs(t, err, errRemote)

	cfg = testConfig("http://127.0.0.1:1", "http://127.0.0.1:1")
	cfg.Secret = "short"
	_, err = Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "secret")

	// Nothing listens on port 1: the set-up fails with a clear error and no report.
	cfg.Secret = auth.DevSecret
	_, err = Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "set up catalogue")
}

func TestRunProgress(t *testing.T) {
	t.Parallel()
	fu, bu := startFake(t, &fakeServices{})
	cfg := testConfig(fu, bu)
	cfg.Scenario, cfg.Rate, cfg.Duration, cfg.Progress = ScenarioSpread, 50, 1200*time.Millisecond, true
	var stderr bytes.Buffer
	_, err := Run(context.Background(), cfg, &bytes.Buffer{}, &stderr)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.Len(t, lines, 1, "one line a second: %q", stderr.String())
	assert.Regexp(t, `^\s*1s  \d+ ops  \d+ requests  \d+ req/s \(avg \d+\)  0 errors$`, lines[0])
}

func TestRunFailsWhenBookingsCannotBeAccountedFor(t *testing.T) {
	t.Parallel()
	fu, _ := startFake(t, &fakeServices{})
	// The booking service knows the flights, then drops every other request's connection, so
	// no booking request gets an answer.
	bm := http.NewServeMux()
	bm.HandleFunc("GET /api/v1/admin/flights/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": r.PathValue("id")})
	})
	bm.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	bs := httptest.NewServer(bm)
	t.Cleanup(bs.Close)
	cfg := testConfig(fu, bs.URL)
	cfg.Scenario, cfg.Requests, cfg.Clients = ScenarioHot, 3, 1
	cfg.RetryFor, cfg.QuietTimeout = 100*time.Millisecond, time.Second
	var out bytes.Buffer
	rep, err := Run(context.Background(), cfg, &out, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrInvariant)
	assert.Equal(t, 3, rep.UnknownOutcomes)
	assert.Contains(t, out.String(), "bookings    none; 3 of unknown outcome")
	assert.Contains(t, out.String(), "3 booking request(s) of unknown outcome")
	assert.True(t, rep.Verified)
}

// lateContext reports a deadline whose timer has not fired yet, as on a loaded machine, where
// the schedule can run past the deadline before the context is done.
type lateContext struct {
	context.Context
	end time.Time
}

func (c lateContext) Deadline() (time.Time, bool) { return c.end, true }

// TestScheduleStopsAtTheDeadline: however late the schedule runs, it sends no start time at
// or after the deadline, so an open-loop run starts at most rate x duration operations. (It
// once started 106 of 100 on a busy CI machine.)
func TestScheduleStopsAtTheDeadline(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now().Add(-time.Second) // a second behind: every time is already due
	ctx := lateContext{Context: parent, end: start.Add(100 * time.Millisecond)}
	due := make(chan time.Time)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		schedule(ctx, start, 100, due) // every 10 ms: 10 times before the deadline
	}()
	var sent []time.Time
	for len(sent) <= 10 {
		select {
		case tm := <-due:
			sent = append(sent, tm)
			continue
		case <-returned:
		}
		break
	}
	cancel()
	<-returned
	require.Len(t, sent, 10, "start times sent")
	for _, tm := range sent {
		assert.True(t, tm.Before(ctx.end), "%v is not before the deadline %v", tm, ctx.end)
	}
}
