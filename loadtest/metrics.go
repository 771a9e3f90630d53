package loadtest

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds into HDR histograms: constant memory however long the
// run, and every percentile within 0.1% (three significant digits) from 1 µs to an hour. A
// sorted list of samples would be exact but grows with the run (8 bytes a request, 80 MB for
// ten million), and the tool is meant to run for as long as a user likes.
const (
	histLowest  = 1                                   // µs
	histHighest = int64(time.Hour / time.Microsecond) // µs
	histDigits  = 3
)

func newHistogram() *hdr.Histogram { return hdr.New(histLowest, histHighest, histDigits) }

// Latency summarises one histogram in milliseconds.
type Latency struct {
	Name  string  `json:"name"`
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// summarize reads the percentiles of h (values in µs) as milliseconds.
func summarize(name string, h *hdr.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Latency{Name: name}
	}
	return Latency{
		Name:  name,
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtPercentile(50)),
		P95:   ms(h.ValueAtPercentile(95)),
		P99:   ms(h.ValueAtPercentile(99)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

// ErrorCount is how many responses of one endpoint failed with one status and problem code.
// Status 0 is a transport failure (refused, reset, timed out); its code says which.
type ErrorCount struct {
	Endpoint string `json:"endpoint"`
	Status   int    `json:"status"`
	Code     string `json:"code"`
	Count    int64  `json:"count"`
}

type errorKey struct {
	endpoint string
	status   int
	code     string
}

// Recorder collects the latency of every request by endpoint, the saga latencies, and the
// failures by endpoint, status and problem code. It is safe for concurrent use; one mutex is
// plenty at the few thousand requests a second one machine can drive.
type Recorder struct {
	requests atomic.Int64
	failures atomic.Int64

	mu        sync.Mutex
	endpoints map[string]*hdr.Histogram
	failed    map[string]int64
	saga      map[string]*hdr.Histogram
	errors    map[errorKey]int64
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		endpoints: map[string]*hdr.Histogram{},
		failed:    map[string]int64{},
		saga:      map[string]*hdr.Histogram{},
		errors:    map[errorKey]int64{},
	}
}

// isFailure says whether a response counts as an error: no response at all, or a 4xx/5xx.
func isFailure(status int) bool { return status == 0 || status >= 400 }

// Request records one request to endpoint that took d and ended with status (0 when no response
// came) and problem code.
func (r *Recorder) Request(endpoint string, d time.Duration, status int, code string) {
	r.requests.Add(1)
	fail := isFailure(status)
	if fail {
		r.failures.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.endpoints[endpoint]
	if h == nil {
		h = newHistogram()
		r.endpoints[endpoint] = h
	}
	_ = h.RecordValue(clampMicros(d)) // clamped, so it cannot be out of range
	if fail {
		r.failed[endpoint]++
		r.errors[errorKey{endpoint, status, code}]++
	}
}

// Saga records one saga step's latency (for example POST to HELD).
func (r *Recorder) Saga(step string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.saga[step]
	if h == nil {
		h = newHistogram()
		r.saga[step] = h
	}
	_ = h.RecordValue(clampMicros(d))
}

func clampMicros(d time.Duration) int64 {
	return min(max(d.Microseconds(), histLowest), histHighest)
}

// Counts returns the requests made and failed so far; the progress line reads it every second.
func (r *Recorder) Counts() (requests, failures int64) {
	return r.requests.Load(), r.failures.Load()
}

// EndpointStats is the latency of one endpoint with its error count.
type EndpointStats struct {
	Latency
	Errors int64 `json:"errors"`
}

// Endpoints summarises every endpoint, sorted by name.
func (r *Recorder) Endpoints() []EndpointStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]EndpointStats, 0, len(r.endpoints))
	for name, h := range r.endpoints {
		out = append(out, EndpointStats{Latency: summarize(name, h), Errors: r.failed[name]})
	}
	slices.SortFunc(out, func(a, b EndpointStats) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// sagaOrder lists the saga steps in the order they happen, for the report.
var sagaOrder = []string{sagaPostToHeld, sagaPayToConfirmed, sagaPostToConfirmed}

// Saga step names.
const (
	sagaPostToHeld      = "POST to HELD"
	sagaPayToConfirmed  = "pay to CONFIRMED"
	sagaPostToConfirmed = "POST to CONFIRMED"
)

// SagaSteps summarises the saga latencies, in saga order.
func (r *Recorder) SagaSteps() []Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Latency
	for _, step := range sagaOrder {
		if h := r.saga[step]; h != nil {
			out = append(out, summarize(step, h))
		}
	}
	return out
}

// Errors lists the failures, most frequent first.
func (r *Recorder) Errors() []ErrorCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ErrorCount, 0, len(r.errors))
	for k, n := range r.errors {
		out = append(out, ErrorCount{Endpoint: k.endpoint, Status: k.status, Code: k.code, Count: n})
	}
	slices.SortFunc(out, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Endpoint, b.Endpoint),
			cmp.Compare(a.Status, b.Status), cmp.Compare(a.Code, b.Code))
	})
	return out
}
