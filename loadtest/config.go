package loadtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Scenarios the tool runs.
const (
	ScenarioHot    = "hot"    // many clients booking 1 seat each on one flight
	ScenarioSpread = "spread" // many clients booking 1 seat each across many flights
	ScenarioBurst  = "burst"  // N bookings released at once on a small flight
	ScenarioSaga   = "saga"   // book, wait until HELD, pay, until CONFIRMED
	ScenarioMixed  = "mixed"  // search, book, pay, cancel and let expire, in realistic shares
)

// Scenarios lists every scenario name.
var Scenarios = []string{ScenarioHot, ScenarioSpread, ScenarioBurst, ScenarioSaga, ScenarioMixed}

// Config is one load test run. Zero values take the scenario's defaults (see withDefaults).
type Config struct {
	FlightURL  string // base URL of the flight service
	BookingURL string // base URL of the booking service
	Secret     string // HS256 secret the services verify tokens with
	Issuer     string // iss claim of the tokens; "flightbook" when empty

	Scenario string
	// Clients is the concurrency: how many operations are in flight at once. The burst scenario
	// releases all its Requests at once instead.
	Clients int
	// Requests bounds the run in operations: a booking in hot, spread and burst, a whole saga in
	// saga, one search, booking, payment or cancellation in mixed. Zero means no bound but
	// Duration.
	Requests int
	// Duration bounds the run in time; the run stops at whichever of Requests and Duration comes
	// first. Operations under way when it passes finish.
	Duration time.Duration
	// Rate, when positive, starts operations at this many a second (open loop) instead of as fast
	// as the clients can go; Clients still caps how many are in flight.
	Rate float64
	// SeatsPerFlight is the size of each flight the tool creates.
	SeatsPerFlight int
	// Flights is how many flights the spread, saga and mixed scenarios spread bookings over.
	Flights int
	// Wait is the Prefer: wait=N seconds sent with bookings; negative means the scenario's
	// default (5 for saga and mixed, 0 otherwise).
	Wait int

	// AllowRemote lets the tool drive services on other hosts; by default it refuses any URL
	// that is not a loopback address, so a typo cannot load-test someone's production.
	AllowRemote bool
	// Progress prints a progress line on stderr once a second; Terminal rewrites it in place.
	Progress bool
	Terminal bool
	// JSON writes the final report as JSON instead of a table.
	JSON bool

	// QuietTimeout bounds the wait, after the load, for every booking to leave PENDING and the
	// seat counts to settle before the invariants are judged.
	QuietTimeout time.Duration
	// RequestTimeout bounds one HTTP request (on top of any Prefer: wait).
	RequestTimeout time.Duration
	// RetryFor is how long a booking or payment request is retried, with its Idempotency-Key,
	// after a transport error or a 502/503/504, before its outcome is called unknown.
	RetryFor time.Duration

	Chaos Chaos

	// CPU names local processes (as ps shows them: flightbook, mariadbd, postgres) whose CPU
	// time the report gives, in all and per booking accepted; empty: none. It reads /proc, so
	// it needs Linux and the system on this machine.
	CPU []string
}

// Chaos kills a service with KillCmd At into the run and, Down later, starts it again with
// StartCmd. Both are run with sh -c; StartCmd must return once the service is started (run the
// service in the background), and the tool then waits for both services' /healthz.
type Chaos struct {
	Enabled  bool
	KillCmd  string
	StartCmd string
	At       time.Duration
	Down     time.Duration
}

// withDefaults fills the zero fields of c with the scenario's defaults.
func (c Config) withDefaults() Config {
	if c.FlightURL == "" {
		c.FlightURL = "http://127.0.0.1:8081"
	}
	if c.BookingURL == "" {
		c.BookingURL = "http://127.0.0.1:8082"
	}
	if c.Issuer == "" {
		c.Issuer = "flightbook"
	}
	if c.Scenario == "" {
		c.Scenario = ScenarioHot
	}
	if c.Clients == 0 {
		c.Clients = 32
	}
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.Requests == 0 && c.Scenario == ScenarioBurst {
		c.Requests = 500
	}
	if c.SeatsPerFlight == 0 {
		switch c.Scenario {
		case ScenarioBurst:
			c.SeatsPerFlight = 100
		case ScenarioSpread:
			c.SeatsPerFlight = 200
		default:
			c.SeatsPerFlight = 1000
		}
	}
	switch c.Scenario {
	case ScenarioHot, ScenarioBurst:
		c.Flights = 1
	case ScenarioSpread:
		if c.Flights == 0 {
			c.Flights = 20
		}
	default:
		if c.Flights == 0 {
			c.Flights = 10
		}
	}
	if c.Wait < 0 {
		c.Wait = 0
		if c.Scenario == ScenarioSaga || c.Scenario == ScenarioMixed {
			c.Wait = 5
		}
	}
	if c.QuietTimeout == 0 {
		// The booking service expires a PENDING booking after its pending timeout (2 minutes by
		// default), so a quiet system is at most that far away.
		c.QuietTimeout = 3 * time.Minute
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.RetryFor == 0 {
		c.RetryFor = 5 * time.Second
		if c.Chaos.Enabled {
			c.RetryFor = time.Minute
		}
	}
	if c.Chaos.Enabled {
		if c.Chaos.At == 0 {
			c.Chaos.At = c.Duration / 3
		}
		if c.Chaos.Down == 0 {
			c.Chaos.Down = 2 * time.Second
		}
	}
	return c
}

// validate reports every problem with c at once.
func (c Config) validate() error {
	var errs []error
	if !slices.Contains(Scenarios, c.Scenario) {
		errs = append(errs, fmt.Errorf("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", ")))
	}
	for _, u := range []struct{ name, url string }{{"flight URL", c.FlightURL}, {"booking URL", c.BookingURL}} {
		if err := checkURL(u.url, c.AllowRemote); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
		}
	}
	if c.Clients < 1 {
		errs = append(errs, errors.New("clients must be at least 1"))
	}
	if c.Requests < 0 {
		errs = append(errs, errors.New("requests must not be negative"))
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("rate must not be negative"))
	}
	if c.SeatsPerFlight < 1 {
		errs = append(errs, errors.New("seats per flight must be at least 1"))
	}
	if c.Flights < 1 || c.Flights > 9999 {
		errs = append(errs, errors.New("flights must be between 1 and 9999"))
	}
	if c.Wait > 10 {
		errs = append(errs, errors.New("wait is at most 10 seconds (the booking service's limit)"))
	}
	if c.Chaos.Enabled && c.Chaos.KillCmd == "" {
		errs = append(errs, errors.New("chaos needs a kill command"))
	}
	return errors.Join(errs...)
}

// errRemote is returned by checkURL for a host that is not loopback.
var errRemote = errors.New("not a loopback address (pass --allow-remote to load-test another host)")

// checkURL accepts an http(s) base URL whose host is loopback (localhost, 127.0.0.0/8, ::1),
// or any host when allowRemote. Host names other than localhost are not resolved: a name that
// resolves to loopback today may not tomorrow, so only literal addresses count.
func checkURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	if allowRemote {
		return nil
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("URL %q: %w", raw, errRemote)
}
