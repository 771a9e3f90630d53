package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		name               string
		values             []time.Duration
		p50, p95, p99, max float64 // ms
	}{
		{name: "empty"},
		{name: "one value", values: []time.Duration{ms(7)}, p50: 7, p95: 7, p99: 7, max: 7},
		{
			name: "1..100 ms",
			values: func() []time.Duration {
				var v []time.Duration
				for i := 1; i <= 100; i++ {
					v = append(v, ms(i))
				}
				return v
			}(),
			p50: 50, p95: 95, p99: 99, max: 100,
		},
		{
			name: "a slow tail",
			values: func() []time.Duration {
				v := make([]time.Duration, 0, 1000)
				for range 990 {
					v = append(v, ms(2))
				}
				for range 10 {
					v = append(v, 3*time.Second)
				}
				return v
			}(),
			p50: 2, p95: 2, p99: 2, max: 3000,
		},
		{name: "sub-microsecond clamps to 1 µs", values: []time.Duration{10 * time.Nanosecond}, p50: 0.001, p95: 0.001, p99: 0.001, max: 0.001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := NewRecorder()
			for _, v := range tt.values {
				rec.Saga(sagaPostToHeld, v)
			}
			steps := rec.SagaSteps()
			if len(tt.values) == 0 {
				assert.Empty(t, steps)
				assert.Equal(t, Latency{Name: "x"}, summarize("x", newHistogram()))
				return
			}
			require.Len(t, steps, 1)
			l := steps[0]
			assert.Equal(t, int64(len(tt.values)), l.Count)
			// HDR keeps three significant digits: every figure is within 0.1% of the exact one.
			within := func(want, got float64, what string) {
				assert.InDelta(t, want, got, math.Max(want*0.001, 0.0005), what)
			}
			within(tt.p50, l.P50, "p50")
			within(tt.p95, l.P95, "p95")
			within(tt.p99, l.P99, "p99")
			within(tt.max, l.Max, "max")
		})
	}
}

func TestRecorderErrors(t *testing.T) {
	t.Parallel()
	rec := NewRecorder()
	rec.Request(epBook, time.Millisecond, 202, "")
	rec.Request(epBook, time.Millisecond, 200, "")
	rec.Request(epBook, time.Millisecond, 422, "validation_failed")
	rec.Request(epBook, time.Millisecond, 0, "connection_refused")
	rec.Request(epBook, time.Millisecond, 0, "connection_refused")
	rec.Request(epPay, time.Millisecond, 409, "hold_expired")

	reqs, fails := rec.Counts()
	assert.Equal(t, int64(6), reqs)
	assert.Equal(t, int64(4), fails)
	assert.Equal(t, []ErrorCount{
		{Endpoint: epBook, Status: 0, Code: "connection_refused", Count: 2},
		{Endpoint: epBook, Status: 422, Code: "validation_failed", Count: 1},
		{Endpoint: epPay, Status: 409, Code: "hold_expired", Count: 1},
	}, rec.Errors())
	eps := rec.Endpoints()
	require.Len(t, eps, 2)
	assert.Equal(t, epBook, eps[0].Name)
	assert.Equal(t, int64(5), eps[0].Count)
	assert.Equal(t, int64(3), eps[0].Errors)
	assert.Equal(t, epPay, eps[1].Name)
}

func TestPick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		x    float64
		want action
	}{
		{0, actSearch},
		{0.5999, actSearch},
		{0.60, actBook},
		{0.8199, actBook},
		{0.82, actPay},
		{0.9699, actPay},
		{0.97, actCancel},
		{0.99999, actCancel},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pick(mixedShares, tt.x), "x=%v", tt.x)
	}

	// Over an even sweep of x the shares come out as the weights say.
	counts := map[action]int{}
	const n = 10000
	for i := range n {
		counts[pick(mixedShares, (float64(i)+0.5)/n)]++
	}
	assert.Equal(t, map[action]int{actSearch: 6000, actBook: 2200, actPay: 1500, actCancel: 300}, counts)

	// Weights need not add up to 100.
	assert.Equal(t, actPay, pick([]share{{actBook, 1}, {actPay, 3}}, 0.3))
}

func TestPartySize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		x    float64
		want int
	}{{0, 1}, {0.69, 1}, {0.7, 2}, {0.89, 2}, {0.9, 3}, {0.97, 4}, {0.999, 4}} {
		assert.Equal(t, tt.want, partySize(tt.x), "x=%v", tt.x)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url         string
		allowRemote bool
		wantErr     string
	}{
		{url: "http://127.0.0.1:8081"},
		{url: "http://127.1.2.3:8081"},
		{url: "http://localhost:8082"},
		{url: "https://LOCALHOST"},
		{url: "http://[::1]:8082"},
		{url: "http://10.0.0.5:8081", wantErr: "not a loopback address"},
		{url: "http://example.com", wantErr: "not a loopback address"},
		{url: "http://localhost.example.com", wantErr: "not a loopback address"},
		{url: "http://0.0.0.0:8081", wantErr: "not a loopback address"},
		{url: "http://[::ffff:10.0.0.1]:80", wantErr: "not a loopback address"},
		{url: "http://example.com", allowRemote: true},
		{url: "ftp://127.0.0.1", wantErr: "scheme must be http or https"},
		{url: "127.0.0.1:8081", wantErr: "invalid URL"},
		{url: "localhost:8081", wantErr: "scheme must be http or https"},
		{url: "http://", wantErr: "has no host"},
		{url: "http://%zz", wantErr: "invalid URL"},
	}
	for _, tt := range tests {
		err := checkURL(tt.url, tt.allowRemote)
		if tt.wantErr == "" {
			assert.NoError(t, err, tt.url)
			continue
		}
		assert.ErrorContains(t, err, tt.wantErr, tt.url)
		if tt.wantErr == "not a loopback address" {
			assert.ErrorIs(t, err, errRemote, tt.url)
		}
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	t.Parallel()
	c := Config{Scenario: ScenarioBurst, Wait: -1, Secret: "s"}.withDefaults()
	assert.Equal(t, 500, c.Requests)
	assert.Equal(t, 100, c.SeatsPerFlight)
	assert.Equal(t, 1, c.Flights)
	assert.Equal(t, 0, c.Wait)
	assert.NoError(t, c.validate())

	c = Config{Scenario: ScenarioSaga, Wait: -1, Flights: 3}.withDefaults()
	assert.Equal(t, 5, c.Wait)
	assert.Equal(t, 3, c.Flights)
	assert.Equal(t, 0, c.Requests, "only burst bounds requests by default")

	c = Config{Scenario: ScenarioHot, Flights: 9}.withDefaults()
	assert.Equal(t, 1, c.Flights, "hot is one flight whatever --flights says")

	c = Config{Chaos: Chaos{Enabled: true, KillCmd: "true"}, Duration: 30 * time.Second}.withDefaults()
	assert.Equal(t, 10*time.Second, c.Chaos.At)
	assert.Equal(t, time.Minute, c.RetryFor, "a chaos run retries long enough to outlast the restart")

	err := Config{Scenario: "nope", FlightURL: "http://10.1.1.1", BookingURL: "http://localhost", Clients: -1,
		Duration: time.Second, SeatsPerFlight: 1, Flights: 1, Wait: 11, Chaos: Chaos{Enabled: true}}.validate()
	require.Error(t, err)
	for _, want := range []string{`unknown scenario "nope"`, "flight URL", "clients must be at least 1", "wait is at most 10", "chaos needs a kill command"} {
		assert.ErrorContains(t, err, want)
	}
	assert.NotContains(t, err.Error(), "booking URL")
}

func TestID(t *testing.T) {
	t.Parallel()
	var v struct {
		A ID `json:"a"`
		B ID `json:"b"`
		C ID `json:"c"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"a":42,"b":"0197-abc/x","c":null}`), &v))
	assert.Equal(t, "42", v.A.String())
	assert.Equal(t, "0197-abc/x", v.B.String())
	assert.Equal(t, "", v.C.String())
	out, err := json.Marshal(bookingRequest{FlightID: v.A, Seats: 1})
	require.NoError(t, err)
	assert.JSONEq(t, `{"flight_id":42,"seats":1}`, string(out), "a numeric id goes back as a number")
	out, err = json.Marshal(bookingRequest{FlightID: v.B, Seats: 2})
	require.NoError(t, err)
	assert.JSONEq(t, `{"flight_id":"0197-abc/x","seats":2}`, string(out))
	assert.Equal(t, "/api/v1/bookings/0197-abc%2Fx/payments", paymentsPath(v.B))
	out, err = json.Marshal(struct{ X ID }{X: "plain"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"X":"plain"}`, string(out))
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	flight := func(id ID, total, avail, held, sold int) Flight {
		return Flight{ID: id, TotalSeats: total, AvailableSeats: avail, HeldSeats: held, SoldSeats: sold}
	}
	bk := func(flight ID, seats int, status string) BookingSnapshot {
		return BookingSnapshot{FlightID: flight, Seats: seats, Status: status}
	}
	repeat := func(n int, b BookingSnapshot) []BookingSnapshot {
		out := make([]BookingSnapshot, n)
		for i := range out {
			out[i] = b
		}
		return out
	}
	tests := []struct {
		name         string
		flights      []Flight
		bookings     []BookingSnapshot
		unknown      map[ID]int
		wantOversold int
		want         []string // substrings, one per violation, in order
	}{
		{
			name:     "burst that went right: 100 held, 400 rejected",
			flights:  []Flight{flight("1", 100, 0, 100, 0)},
			bookings: append(repeat(100, bk("1", 1, StatusHeld)), repeat(400, bk("1", 1, StatusRejected))...),
		},
		{
			name:    "saga mix that went right",
			flights: []Flight{flight("1", 10, 4, 2, 4)},
			bookings: []BookingSnapshot{
				bk("1", 2, StatusHeld), bk("1", 3, StatusConfirmed), bk("1", 1, StatusConfirmed),
				bk("1", 2, StatusCancelled), bk("1", 1, StatusExpired), bk("1", 4, StatusRejected),
			},
		},
		{
			name:         "oversold: the seed's bug, 103 bookings held on 100 seats",
			flights:      []Flight{flight("1", 100, -3, 103, 0)},
			bookings:     append(repeat(103, bk("1", 1, StatusHeld)), repeat(397, bk("1", 1, StatusRejected))...),
			wantOversold: 3,
			want:         []string{"available_seats = -3 is negative", "OVERSOLD by 3"},
		},
		{
			name:         "oversold although the flight's counts balance",
			flights:      []Flight{flight("1", 100, 0, 100, 0)},
			bookings:     repeat(102, bk("1", 1, StatusHeld)),
			wantOversold: 2,
			want:         []string{"OVERSOLD by 2", "flight holds+sold 100 seats, HELD+CONFIRMED bookings have 102"},
		},
		{
			name:     "counts do not balance",
			flights:  []Flight{flight("1", 100, 50, 40, 5)},
			bookings: append(repeat(40, bk("1", 1, StatusHeld)), repeat(5, bk("1", 1, StatusConfirmed))...),
			want:     []string{"available+held+sold = 50+40+5 = 95, total_seats = 100"},
		},
		{
			name:     "a cancelled booking's seats were never released",
			flights:  []Flight{flight("1", 10, 7, 3, 0)},
			bookings: []BookingSnapshot{bk("1", 2, StatusHeld), bk("1", 1, StatusCancelled)},
			want:     []string{"flight holds+sold 3 seats, HELD+CONFIRMED bookings have 2"},
		},
		{
			name:     "a confirmed booking still only held on the flight",
			flights:  []Flight{flight("1", 10, 8, 2, 0)},
			bookings: []BookingSnapshot{bk("1", 2, StatusConfirmed)},
			want:     []string{"flight held/sold 2/0 seats, bookings HELD/CONFIRMED 0/2"},
		},
		{
			name:     "seats lost: rejected while seats remained and nothing was released",
			flights:  []Flight{flight("1", 100, 2, 98, 0)},
			bookings: append(repeat(98, bk("1", 1, StatusHeld)), repeat(2, bk("1", 1, StatusRejected))...),
			want:     []string{"seats lost: a booking of 1 seat(s) was REJECTED while 2 seats remain"},
		},
		{
			name:     "a rejection is fine when seats were released later",
			flights:  []Flight{flight("1", 2, 1, 1, 0)},
			bookings: []BookingSnapshot{bk("1", 1, StatusHeld), bk("1", 1, StatusRejected), bk("1", 1, StatusCancelled)},
		},
		{
			name:     "a rejection of a party bigger than what remains is fine",
			flights:  []Flight{flight("1", 10, 2, 8, 0)},
			bookings: []BookingSnapshot{bk("1", 8, StatusHeld), bk("1", 3, StatusRejected)},
		},
		{
			name:     "unknown outcomes widen the comparison",
			flights:  []Flight{flight("1", 10, 5, 5, 0)},
			bookings: repeat(4, bk("1", 1, StatusHeld)),
			unknown:  map[ID]int{"1": 2},
		},
		{
			name:     "unknown outcomes cannot explain more seats than they asked for",
			flights:  []Flight{flight("1", 10, 2, 8, 0)},
			bookings: repeat(4, bk("1", 1, StatusHeld)),
			unknown:  map[ID]int{"1": 2},
			want:     []string{"flight holds+sold 8 seats, HELD+CONFIRMED bookings have 4 (+ up to 2 of unknown outcome)"},
		},
		{
			name:     "bookings left PENDING or unreadable",
			flights:  []Flight{flight("1", 10, 9, 1, 0)},
			bookings: []BookingSnapshot{bk("1", 1, StatusHeld), bk("1", 1, StatusPending), bk("1", 1, StatusPending), bk("1", 1, "MISSING")},
			want:     []string{"1 booking(s) still MISSING", "2 booking(s) still PENDING"},
		},
		{
			name:    "two flights judged separately",
			flights: []Flight{flight("1", 5, 0, 5, 0), flight("2", 5, 5, 0, 0)},
			bookings: append(repeat(5, bk("1", 1, StatusHeld)),
				bk("2", 1, StatusHeld)),
			want: []string{"flight 2: flight holds+sold 0 seats, HELD+CONFIRMED bookings have 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := evaluate(tt.flights, tt.bookings, tt.unknown)
			assert.Equal(t, tt.wantOversold, v.Oversold)
			require.Len(t, v.Violations, len(tt.want), "violations: %q", v.Violations)
			for i, w := range tt.want {
				assert.Contains(t, v.Violations[i], w)
			}
			require.Len(t, v.Flights, len(tt.flights))
			byStatus := 0
			for _, n := range v.ByStatus {
				byStatus += n
			}
			assert.Equal(t, len(tt.bookings), byStatus)
		})
	}
}

func TestQueueFigures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		dlq, outbox map[string]float64
	}{
		{name: "today's readyz has none", body: `{"status":"ok","checks":{"postgres":"ok"}}`, dlq: map[string]float64{}, outbox: map[string]float64{}},
		{name: "not JSON", body: `ok`, dlq: map[string]float64{}, outbox: map[string]float64{}},
		{
			name:   "nested",
			body:   `{"status":"ok","outbox":{"lag_seconds":1.5,"pending":3,"published_total":900},"dlq":{"count":2}}`,
			dlq:    map[string]float64{"dlq.count": 2},
			outbox: map[string]float64{"outbox.lag_seconds": 1.5, "outbox.pending": 3},
		},
		{
			name:   "flat and in lists",
			body:   `{"outbox_backlog":0,"consumers":[{"name":"holds","dead_letters":1}],"dlq_messages":4}`,
			dlq:    map[string]float64{"consumers.0.dead_letters": 1, "dlq_messages": 4},
			outbox: map[string]float64{"outbox_backlog": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dlq, outbox := queueFigures(statusFigures([]byte(tt.body)))
			assert.Equal(t, tt.dlq, dlq)
			assert.Equal(t, tt.outbox, outbox)
		})
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	httpErr := func(status int) error { return &HTTPError{Endpoint: epBook, Problem: Problem{Status: status}} }
	tests := []struct {
		err        error
		inProgress bool
		want       bool
		unknown    bool
	}{
		{err: errors.New("dial tcp: connection refused"), want: true, unknown: true},
		{err: errNoID, want: true, unknown: true},
		{err: httpErr(503), want: true, unknown: true},
		{err: httpErr(500), want: false, unknown: true},
		{err: httpErr(409), inProgress: true, want: true, unknown: true},
		{err: httpErr(409), want: false, unknown: true},
		{err: httpErr(422), want: false, unknown: false},
		{err: httpErr(404), want: false, unknown: false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, retryable(tt.err, tt.inProgress), "%v", tt.err)
		assert.Equal(t, tt.unknown, unknownOutcome(tt.err), "%v", tt.err)
	}
}

func sampleReport() Report {
	return Report{
		Scenario: ScenarioSaga, Clients: 64, Elapsed: 10, Operations: 1000, Requests: 4000, Failures: 2,
		RequestsPerSec: 400, BookingsAccepted: 1000, BookingsPerSec: 100,
		Endpoints: []EndpointStats{{Latency: Latency{Name: epBook, Count: 1000, P50: 1.5, P95: 4.25, P99: 9, Max: 31}, Errors: 2}},
		Saga:      []Latency{{Name: sagaPostToHeld, Count: 998, P50: 20, P95: 40, P99: 80, Max: 120}},
		Errors:    []ErrorCount{{Endpoint: epBook, Status: 0, Code: "timeout", Count: 2}},
		Bookings:  map[string]int{StatusConfirmed: 990, StatusRejected: 8, StatusHeld: 2},
		Flights:   []FlightCheck{{FlightID: "7", Total: 1000, Available: 8, Held: 2, Sold: 990, BookedHeld: 2, BookedConfirmed: 990}},
		Services: []ServiceStatus{
			{Service: "flight", Note: "GET http://127.0.0.1:8081/readyz has no outbox or DLQ figures"},
			{Service: "booking", Available: true, Outbox: map[string]float64{"outbox.lag": 0}, DLQBefore: map[string]float64{"dlq": 1}, DLQAfter: map[string]float64{"dlq": 1}},
		},
		Verified: true,
	}
}

func TestWriteText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Report)
		want   []string
		not    []string
	}{
		{
			name: "pass",
			want: []string{
				"scenario saga, 64 clients: 1000 operations, 4000 requests in 10.0s",
				"400.0 requests/s, 100.0 bookings accepted/s (1000 accepted), 2 failed requests",
				"POST /bookings  1000  1.50  4.25  9.00  31.00  2",
				"POST to HELD  998  20.00  40.00  80.00  120.00",
				"POST /bookings  -  timeout  2",
				"bookings    CONFIRMED 990, HELD 2, REJECTED 8",
				"oversold    0 seats",
				"flight      outbox and DLQ figures not available (GET http://127.0.0.1:8081/readyz has no outbox or DLQ figures)",
				"booking     outbox outbox.lag=0; DLQ before dlq=1, after dlq=1",
				"PASS: every invariant held",
			},
			not: []string{"FAIL", "chaos", "schedule", "cpu"},
		},
		{
			name: "cpu of the processes that ran",
			modify: func(r *Report) {
				r.CPU = []ProcessCPU{
					{Name: "flightbook", Seconds: 7.5, MsPerBooking: 7.5, ProcessesAtEnd: 1},
					{Name: "mysqld", ProcessesAtEnd: 0},
					{Name: "postgres", Seconds: 4, MsPerBooking: 4, ProcessesAtEnd: 12},
				}
			},
			want: []string{"cpu  11.5s, 11.50 ms per booking accepted: flightbook 7.5s (7.50 ms), postgres 4.0s (4.00 ms)"},
			not:  []string{"mysqld"},
		},
		{
			name: "fail lists every violation",
			modify: func(r *Report) {
				r.Oversold = 3
				r.Flights[0].Oversold, r.Flights[0].Violations = 3, []string{"OVERSOLD by 3"}
				r.Violations = []string{"flight 7: OVERSOLD by 3", "2 booking(s) still PENDING"}
				r.UnknownOutcomes = 1
			},
			want: []string{"oversold    3 seats", "; 1 of unknown outcome", "FAIL: 2 invariant violation(s)", "  - flight 7: OVERSOLD by 3", "  - 2 booking(s) still PENDING", "NO"},
			not:  []string{"PASS"},
		},
		{
			name:   "not verified",
			modify: func(r *Report) { r.Verified = false },
			want:   []string{"NOT VERIFIED"},
			not:    []string{"PASS"},
		},
		{
			name: "open loop and chaos",
			modify: func(r *Report) {
				r.Rate = 500
				r.ScheduleLag = &Latency{Name: "start lag", Count: 1000, P99: 3}
				r.Chaos = &ChaosReport{KilledAt: 10, StartedAt: 12, Recovered: 0.5, Errors: []string{"start: exit status 1"}}
			},
			want: []string{", target 500/s", "start lag  1000  0.00  0.00  3.00  0.00", "chaos       killed at 10.0s, started at 12.0s, healthy 0.5s later", "chaos       error: start: exit status 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := sampleReport()
			if tt.modify != nil {
				tt.modify(&r)
			}
			var b bytes.Buffer
			require.NoError(t, r.WriteText(&b))
			out := b.String()
			// Column widths are the tabwriter's business: compare with runs of spaces squeezed.
			spaces := regexp.MustCompile(` {2,}`)
			squeezed := spaces.ReplaceAllString(out, "  ")
			for _, w := range tt.want {
				assert.Contains(t, squeezed, spaces.ReplaceAllString(w, "  "))
			}
			for _, n := range tt.not {
				assert.NotContains(t, out, n)
			}
			if t.Failed() {
				t.Log("\n" + out)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, sampleReport().WriteJSON(&b))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	assert.Equal(t, "saga", doc["scenario"])
	assert.Equal(t, 400.0, doc["requests_per_s"])
	assert.Equal(t, true, doc["verified"])
	ep := doc["endpoints"].([]any)[0].(map[string]any)
	assert.Equal(t, epBook, ep["name"])
	assert.Equal(t, 9.0, ep["p99_ms"])
	assert.Equal(t, 2.0, ep["errors"])
	assert.Equal(t, 990.0, doc["bookings_by_status"].(map[string]any)[StatusConfirmed])
	assert.True(t, strings.HasPrefix(b.String(), "{\n  \""), "indented")

	var back Report
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	assert.Equal(t, sampleReport().Flights, back.Flights)
	assert.True(t, back.OK())
}
