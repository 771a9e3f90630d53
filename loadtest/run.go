// Package loadtest drives flightbook's public REST API under load and then proves the
// system kept its promises: it sets up its own catalogue through the admin API, runs one of
// a few scenarios (hot flight, spread, burst, full sagas, a realistic mix) bounded in
// operations and time, reports throughput and latency per endpoint and per saga step, and,
// once the system is quiet, checks that no flight was oversold and every booking ended where
// it should. It is what `flightbook loadtest` runs, and Run can be called in-process by tests.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/flightbook/flightbook/auth"
)

// ErrInvariant is returned (wrapped) by Run when the verification found a broken invariant.
var ErrInvariant = errors.New("invariant broken")

// runner is one run's state, shared by its workers.
type runner struct {
	cfg    Config
	c      *client // load requests, recorded
	quiet  *client // setup and verification requests, not recorded
	rec    *Recorder
	ledger *ledger
	cat    catalogue
	admin  string // admin token, for the catalogue and the verification's bulk reads

	workers  []*worker
	ops      atomic.Int64 // operations finished
	accepted atomic.Int64 // bookings the service accepted

	lagMu sync.Mutex
	lag   *hdr.Histogram // how late operations started behind the --rate schedule
}

// Run sets up a catalogue, runs cfg's scenario, verifies the invariants once the system is
// quiet and writes the report to stdout (a table, or JSON with cfg.JSON); the progress line
// goes to stderr. It returns the report with an error wrapping ErrInvariant when an invariant
// is broken, or another error when the run could not be set up or was cancelled.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, fmt.Errorf("loadtest: %w", err)
	}
	a, err := auth.New(auth.Config{Secret: cfg.Secret, Issuer: cfg.Issuer}, nil)
	if err != nil {
		return Report{}, fmt.Errorf("loadtest: %w", err)
	}
	ttl := cfg.Duration + 2*cfg.QuietTimeout + time.Hour
	runID := fmt.Sprintf("%06x", rand.N(1<<24))
	admin, err := a.Token("loadtest-"+runID+"-admin", auth.RoleAdmin, ttl)
	if err != nil {
		return Report{}, fmt.Errorf("loadtest: %w", err)
	}

	conns := cfg.Clients
	if cfg.Scenario == ScenarioBurst {
		conns = max(conns, cfg.Requests)
	}
	base := newClient(conns, cfg.RequestTimeout)
	r := &runner{cfg: cfg, rec: NewRecorder(), ledger: newLedger(), quiet: base, lag: newHistogram(), admin: admin}
	r.c = base.recording(r.rec)
	for i := range cfg.Clients {
		tok, err := a.Token(fmt.Sprintf("loadtest-%s-%d", runID, i), "", ttl)
		if err != nil {
			return Report{}, fmt.Errorf("loadtest: %w", err)
		}
		r.workers = append(r.workers, &worker{token: tok, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))})
	}

	r.cat, err = setUp(ctx, r.quiet, cfg.FlightURL, cfg.BookingURL, admin, runID, cfg.Flights, cfg.SeatsPerFlight, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		return Report{}, fmt.Errorf("loadtest: set up catalogue on %s: %w", cfg.FlightURL, err)
	}
	before := map[string]map[string]float64{}
	for _, s := range r.services() {
		before[s.name], _ = r.queues(ctx, s.url)
	}

	rep := Report{Scenario: cfg.Scenario, Clients: cfg.Clients, Rate: cfg.Rate, Started: time.Now().UTC()}
	if cfg.Scenario == ScenarioBurst {
		rep.Clients = cfg.Requests
	}
	var cpuBefore procTimes
	if len(cfg.CPU) > 0 {
		if cpuBefore, err = readProcTimes("/proc", cfg.CPU, os.Getpid()); err != nil {
			return Report{}, fmt.Errorf("loadtest: %w", err)
		}
	}
	start := time.Now()
	loadDone := make(chan struct{})
	var chaos *ChaosReport
	var chaosDone sync.WaitGroup
	if cfg.Chaos.Enabled {
		chaosDone.Go(func() { chaos = r.chaos(ctx, start, loadDone) })
	}
	var progressDone sync.WaitGroup
	if cfg.Progress {
		progressDone.Go(func() { r.progress(stderr, start, loadDone) })
	}

	if cfg.Scenario == ScenarioBurst {
		r.burst(ctx)
	} else {
		r.load(ctx, start)
	}
	elapsed := time.Since(start)
	close(loadDone)
	progressDone.Wait()
	chaosDone.Wait()

	rep.Elapsed = secondsOf(elapsed)
	rep.Operations = r.ops.Load()
	rep.Requests, rep.Failures = r.rec.Counts()
	rep.RequestsPerSec = float64(rep.Requests) / elapsed.Seconds()
	rep.BookingsAccepted = r.accepted.Load()
	rep.BookingsPerSec = float64(rep.BookingsAccepted) / elapsed.Seconds()
	rep.Endpoints = r.rec.Endpoints()
	rep.Saga = r.rec.SagaSteps()
	rep.Errors = r.rec.Errors()
	rep.Chaos = chaos
	if cfg.Rate > 0 {
		lag := summarize("start lag", r.lag)
		rep.ScheduleLag = &lag
	}

	verr := r.verify(ctx, &rep, before, start)
	if cpuBefore != nil {
		after, err := readProcTimes("/proc", cfg.CPU, os.Getpid())
		if err != nil {
			verr = errors.Join(verr, err)
		} else {
			rep.CPU = cpuSpent(cpuBefore, after, cfg.CPU, rep.BookingsAccepted)
		}
	}
	if werr := r.write(stdout, rep); werr != nil {
		return rep, errors.Join(verr, werr)
	}
	if verr != nil {
		return rep, fmt.Errorf("loadtest: %w", verr)
	}
	if len(rep.Violations) > 0 {
		return rep, fmt.Errorf("loadtest: %d violation(s), first: %s: %w", len(rep.Violations), rep.Violations[0], ErrInvariant)
	}
	return rep, nil
}

func (r *runner) write(w io.Writer, rep Report) error {
	if r.cfg.JSON {
		return rep.WriteJSON(w)
	}
	return rep.WriteText(w)
}

// load runs the scenario with cfg.Clients workers until cfg.Requests operations have started
// or cfg.Duration has passed. Operations already under way then run to their end on ctx, so a
// booking is never abandoned half-sent just because the clock ran out.
func (r *runner) load(ctx context.Context, start time.Time) {
	loadCtx, cancel := context.WithDeadline(ctx, start.Add(r.cfg.Duration))
	defer cancel()

	var due chan time.Time
	if r.cfg.Rate > 0 {
		due = make(chan time.Time, len(r.workers))
		go schedule(loadCtx, start, r.cfg.Rate, due)
	}
	var started atomic.Int64
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() {
			for {
				if due != nil {
					select {
					case t := <-due:
						r.late(time.Since(t))
					case <-loadCtx.Done():
						return
					}
				} else if loadCtx.Err() != nil {
					return
				}
				if n := started.Add(1); r.cfg.Requests > 0 && n > int64(r.cfg.Requests) {
					return
				}
				r.operate(ctx, w)
				r.ops.Add(1)
			}
		})
	}
	wg.Wait()
}

// schedule sends the start time of each operation of an open-loop run at rate a second, up to
// ctx's deadline. When every worker is busy it blocks, and the times it then sends are already
// past: the lag the workers record is the queueing a real user would have seen (coordinated
// omission). A time at or after the deadline is never sent, however late the schedule runs, so
// a run never starts more than rate x duration operations.
func schedule(ctx context.Context, start time.Time, rate float64, due chan<- time.Time) {
	interval := time.Duration(float64(time.Second) / rate)
	end, bounded := ctx.Deadline()
	for i := int64(0); ; i++ {
		t := start.Add(time.Duration(i) * interval)
		if bounded && !t.Before(end) {
			return
		}
		if d := time.Until(t); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		select {
		case due <- t:
		case <-ctx.Done():
			return
		}
	}
}

func (r *runner) late(d time.Duration) {
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	_ = r.lag.RecordValue(clampMicros(d))
}

// burst starts cfg.Requests bookings of one seat each at the same instant: every goroutine
// waits at a barrier until all are ready, then all are released together.
func (r *runner) burst(ctx context.Context) {
	gate := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range r.cfg.Requests {
		ready.Add(1)
		wg.Go(func() {
			w := r.workers[i%len(r.workers)]
			ready.Done()
			<-gate
			r.operate(ctx, w)
			r.ops.Add(1)
		})
	}
	ready.Wait()
	close(gate)
	wg.Wait()
}

// progress writes a line once a second until done: requests made, the rate over the last
// second and overall, and failures. On a terminal the line is rewritten in place.
func (r *runner) progress(w io.Writer, start time.Time, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-done:
			if r.cfg.Terminal {
				fmt.Fprintln(w)
			}
			return
		case <-tick.C:
		}
		reqs, fails := r.rec.Counts()
		line := fmt.Sprintf("%5.0fs  %d ops  %d requests  %.0f req/s (avg %.0f)  %d errors",
			time.Since(start).Seconds(), r.ops.Load(), reqs, float64(reqs-last),
			float64(reqs)/time.Since(start).Seconds(), fails)
		last = reqs
		if r.cfg.Terminal {
			fmt.Fprint(w, "\r"+line+"\x1b[K")
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

type service struct{ name, url string }

func (r *runner) services() []service {
	return []service{{"flight", r.cfg.FlightURL}, {"booking", r.cfg.BookingURL}}
}

// queues reads a service's /readyz and returns its dead-letter counts and outbox backlogs;
// ok is false when the document has neither.
func (r *runner) queues(ctx context.Context, baseURL string) (figures map[string]float64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+pathReady, nil)
	if err != nil {
		return nil, false
	}
	resp, err := r.quiet.http.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	// A 503 still carries the document, and the figures are what we want from it.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false
	}
	dlq, outbox := queueFigures(statusFigures(body))
	if len(dlq) == 0 && len(outbox) == 0 {
		return nil, false
	}
	figures = map[string]float64{}
	for k, v := range dlq {
		figures[k] = v
	}
	for k, v := range outbox {
		figures[k] = v
	}
	return figures, true
}

// verify waits for the system to be quiet, then judges the invariants into rep. It returns an
// error only when it could not finish (ctx cancelled); broken invariants go into
// rep.Violations. loadStart is when the load began, for rep.SettledAfter.
func (r *runner) verify(ctx context.Context, rep *Report, dlqBefore map[string]map[string]float64, loadStart time.Time) error {
	quietBy := time.Now().Add(r.cfg.QuietTimeout)

	// Ask again, with the same Idempotency-Key, about every booking request that never got an
	// answer: now that the load (and any chaos) is over, the service can say whether it made
	// the booking, and if it did not, this makes it, so the ledger is complete either way.
	for _, a := range r.ledger.takeUnknown() {
		retryFor := min(time.Until(quietBy), 30*time.Second)
		if _, err := r.postBooking(ctx, r.quiet, a.token, a.key, a.flightID, a.seats, 0, retryFor); err != nil && unknownOutcome(err) {
			r.ledger.addUnknown(a)
		}
	}

	// Quiet, part one: no booking of ours is PENDING any more.
	for {
		pending := r.ledger.selectBookings(func(s string) bool { return s == StatusPending || s == "" })
		if len(pending) == 0 {
			settled := time.Since(loadStart)
			rep.SettledAfter = secondsOf(settled)
			rep.BookingsDecidedPerSec = float64(rep.BookingsAccepted) / settled.Seconds()
			break
		}
		if time.Now().After(quietBy) {
			break
		}
		r.refresh(ctx, pending)
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}

	// Quiet, part two: the flight service has applied every hold, release and confirmation the
	// bookings' states imply. These messages are asynchronous, so the seat counts are polled
	// until they agree with the bookings (or a settle time passes and the difference stands).
	settleBy := time.Now().Add(min(r.cfg.QuietTimeout, 30*time.Second))
	var v Verdict
	var readErrs []string
	for {
		r.refresh(ctx, r.ledger.selectBookings(func(s string) bool {
			return s != StatusConfirmed && s != StatusRejected && s != StatusExpired && s != StatusCancelled
		}))
		var flights []Flight
		flights, readErrs = r.readFlights(ctx)
		bookings, unknown := r.ledger.snapshot()
		v = evaluate(flights, bookings, unknown)
		if len(v.Violations) == 0 && len(readErrs) == 0 || time.Now().After(settleBy) {
			break
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.Flights, rep.Bookings, rep.Oversold = v.Flights, v.ByStatus, v.Oversold
	rep.Violations = append(readErrs, v.Violations...)
	rep.UnknownOutcomes = r.ledger.unknownCount()
	if rep.UnknownOutcomes > 0 {
		// Not a broken invariant as such, but a run that cannot account for every booking
		// request has not proved there is none, so it must not pass.
		rep.Violations = append(rep.Violations, fmt.Sprintf(
			"%d booking request(s) of unknown outcome: the booking service never answered them, even when asked again with their Idempotency-Key", rep.UnknownOutcomes))
	}

	// The outboxes drain and no message was dead-lettered, where the services say so.
	for _, s := range r.services() {
		st := ServiceStatus{Service: s.name}
		figs, ok := r.queues(ctx, s.url)
		for ok && time.Now().Before(settleBy) && backlog(figs) > 0 {
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return err
			}
			figs, ok = r.queues(ctx, s.url)
		}
		if !ok {
			st.Note = "GET " + s.url + pathReady + " has no outbox or DLQ figures"
			rep.Services = append(rep.Services, st)
			continue
		}
		st.Available = true
		before := dlqBefore[s.name]
		st.Outbox, st.DLQAfter = map[string]float64{}, map[string]float64{}
		st.DLQBefore = map[string]float64{}
		dlq, outbox := queueFigures(figs)
		for k, v := range outbox {
			st.Outbox[k] = v
			if v > 0 {
				rep.Violations = append(rep.Violations, fmt.Sprintf("%s outbox not drained: %s = %g", s.name, k, v))
			}
		}
		for k, v := range dlq {
			st.DLQAfter[k] = v
			st.DLQBefore[k] = before[k]
			if v > before[k] {
				rep.Violations = append(rep.Violations, fmt.Sprintf("%s dead letters grew: %s from %g to %g", s.name, k, before[k], v))
			}
		}
		rep.Services = append(rep.Services, st)
	}
	rep.Verified = true
	return nil
}

func backlog(figures map[string]float64) float64 {
	_, outbox := queueFigures(figures)
	var sum float64
	for _, v := range outbox {
		sum += v
	}
	return sum
}

// refresh reads the bookings again and stores what the service says. A booking the service
// no longer knows is marked MISSING, which the verification reports.
//
// Many bookings are read a page of 1,000 at a time, through the admin list of each flight of
// the run: after a hot run thousands are still PENDING, and reading each one every 250 ms
// would load the booking service while it settles. A few are read one by one, and so is
// every booking when the list cannot be read (a deployment without the admin list).
func (r *runner) refresh(ctx context.Context, bookings []booking) {
	if pages := r.ledger.size()/adminPageSize + len(r.cat.flights); len(bookings) > pages {
		if err := r.refreshByFlight(ctx, bookings); err == nil {
			return
		}
	}
	sem := make(chan struct{}, r.cfg.Clients)
	var wg sync.WaitGroup
	for _, b := range bookings {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var now Booking
			_, err := r.quiet.do(ctx, request{endpoint: epBooking, method: http.MethodGet, url: r.cfg.BookingURL + bookingPath(b.id), token: b.token, out: &now})
			switch {
			case statusOf(err) == http.StatusNotFound:
				r.ledger.update(Booking{ID: b.id, Status: "MISSING"})
			case err == nil && now.Status != "":
				now.ID = b.id // the ledger's key, however the service spells the id
				r.ledger.update(now)
			}
		})
	}
	wg.Wait()
}

// adminPageSize is the page the verification asks the admin list for, its maximum.
const adminPageSize = 1000

// refreshByFlight reads every booking of the run's flights from the admin list and stores
// the status of those in bookings; one the lists do not have is MISSING.
func (r *runner) refreshByFlight(ctx context.Context, bookings []booking) error {
	seen := map[ID]Booking{}
	for _, flight := range r.cat.flights {
		after := ""
		for {
			q := url.Values{"flight_id": {flight.String()}, "limit": {strconv.Itoa(adminPageSize)}}
			if after != "" {
				q.Set("after", after)
			}
			var page struct {
				Items     []Booking `json:"items"`
				NextAfter string    `json:"next_after"`
			}
			_, err := r.quiet.do(ctx, request{endpoint: epAdminBookings, method: http.MethodGet,
				url: r.cfg.BookingURL + pathAdminBookings + "?" + q.Encode(), token: r.admin, out: &page})
			if err != nil {
				return err
			}
			for _, b := range page.Items {
				seen[b.ID] = b
			}
			if page.NextAfter == "" {
				break
			}
			after = page.NextAfter
		}
	}
	for _, b := range bookings {
		now, ok := seen[b.id]
		if !ok {
			now = Booking{ID: b.id, Status: "MISSING"}
		}
		r.ledger.update(now)
	}
	return nil
}

// readFlights reads every flight the run created; a flight it cannot read is a violation.
func (r *runner) readFlights(ctx context.Context) ([]Flight, []string) {
	var flights []Flight
	var errs []string
	for _, id := range r.cat.flights {
		var f Flight
		if _, err := r.quiet.do(ctx, request{endpoint: epFlight, method: http.MethodGet, url: r.cfg.FlightURL + flightPath(id), out: &f}); err != nil {
			errs = append(errs, fmt.Sprintf("flight %s: cannot read it: %v", id, err))
			continue
		}
		f.ID = id
		flights = append(flights, f)
	}
	return flights, errs
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
