package main

// End-to-end tests: both services run as their own processes (this test binary, re-executed
// as `flightbook flight` and `flightbook booking`), on fresh databases and a fresh NATS
// namespace, and are driven through their HTTP APIs only, as a client would. Being processes,
// they can be killed with SIGKILL in the middle of a burst.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/testenv"
)

// childEnv marks a re-executed test binary that is to run a flightbook command.
const childEnv = "FLIGHTBOOK_E2E_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// e2eOptions change the system a test starts.
type e2eOptions struct {
	env       []string // extra FLIGHTBOOK_* settings for both services
	embedNATS bool     // run NATS in the test process, so the test can stop and restart it
	sqlite    bool     // keep both services' data in SQLite files instead of PostgreSQL and MariaDB
}

// storages runs test once with the services on PostgreSQL and MariaDB and once on SQLite
// files, as parallel subtests: the dev mode's storage must keep the same invariants.
func storages(t *testing.T, test func(t *testing.T, sqlite bool)) {
	t.Run("servers", func(t *testing.T) { t.Parallel(); test(t, false) })
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); test(t, true) })
}

// e2eSystem is the two services as processes, their settings, and tokens to call them with.
type e2eSystem struct {
	t          *testing.T
	dir        string
	env        []string
	procs      map[string]*proc
	addrs      map[string]string // service -> host:port
	admin      string
	natsServer *server.Server
	natsDir    string
	natsPort   int
	natsURL    string
	namespace  string
	client     *http.Client
}

func startE2E(t *testing.T, opts e2eOptions) *e2eSystem {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests start both services")
	}
	s := &e2eSystem{
		t: t, dir: t.TempDir(), procs: map[string]*proc{},
		addrs:  map[string]string{"flight": freeAddr(t), "booking": freeAddr(t)},
		client: testClient(),
	}
	if opts.embedNATS {
		s.natsDir = filepath.Join(s.dir, "nats")
		s.natsPort = freePort(t)
		s.startNATS()
		s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", s.natsPort)
		s.namespace = "e2e"
		t.Cleanup(func() { s.natsServer.Shutdown(); s.natsServer.WaitForShutdown() })
	} else {
		s.natsURL, s.namespace = testenv.NATS(t)
	}
	s.env = append([]string{
		"FLIGHTBOOK_POSTGRES_URL=" + testenv.Postgres(t),
		"FLIGHTBOOK_POSTGRES_MAX_CONNS=10",
		"FLIGHTBOOK_MYSQL_DSN=" + testenv.MySQL(t),
		"FLIGHTBOOK_MYSQL_MAX_CONNS=10",
		"FLIGHTBOOK_NATS_URL=" + s.natsURL,
		"FLIGHTBOOK_NATS_NAMESPACE=" + s.namespace,
		"FLIGHTBOOK_FLIGHT_HTTP_ADDR=" + s.addrs["flight"],
		"FLIGHTBOOK_BOOKING_HTTP_ADDR=" + s.addrs["booking"],
		"FLIGHTBOOK_FLIGHT_SERVICE_URL=http://" + s.addrs["flight"],
		"FLIGHTBOOK_OUTBOX_LOCK_NAME=" + "e2e-" + filepath.Base(s.dir),
	}, opts.env...)
	if opts.sqlite {
		s.env = append(s.env,
			"FLIGHTBOOK_FLIGHT_SQLITE="+filepath.Join(s.dir, "flight.db"),
			"FLIGHTBOOK_BOOKING_SQLITE="+filepath.Join(s.dir, "booking.db"))
	}
	authn, err := auth.New(auth.Config{Secret: auth.DevSecret, Issuer: "flightbook"}, nil)
	testenv.Fatal(t, "auth", err)
	s.admin, err = authn.Token("ops", auth.RoleAdmin, time.Hour)
	testenv.Fatal(t, "token", err)
	// Registered after the databases and namespace, so it runs before they are dropped.
	t.Cleanup(s.stopAll)
	s.start("flight")
	s.start("booking")
	return s
}

// proc is a running service process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited; err is then its Wait result
	err  error
}

func testClient() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

// newProc watches a started process's exit.
func newProc(cmd *exec.Cmd) *proc {
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// start runs a service and waits until it answers /readyz.
func (s *e2eSystem) start(service string) {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, service+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	testenv.Fatal(s.t, "log file", err)
	cmd := exec.Command(os.Args[0], service)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), s.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	_ = logf.Close() // the child has its own descriptor
	testenv.Fatal(s.t, "start "+service, err)
	p := newProc(cmd)
	s.procs[service] = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			delete(s.procs, service)
			s.dumpLog(service)
			s.t.Fatalf("%s exited while starting: %v", service, p.err)
		default:
		}
		if r, err := s.client.Get("http://" + s.addrs[service] + "/readyz"); err == nil {
			_ = r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.dumpLog(service)
			s.t.Fatalf("%s not ready after 60s", service)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends a service with SIGKILL: no drain, no rollback, connections cut.
func (s *e2eSystem) kill(service string) {
	s.t.Helper()
	p := s.procs[service]
	testenv.Fatal(s.t, "kill "+service, p.cmd.Process.Kill())
	<-p.done
	delete(s.procs, service)
}

// stopAll stops every service with SIGTERM (a clean drain) and reports a service that did
// not stop cleanly.
func (s *e2eSystem) stopAll() {
	for name, p := range s.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil {
				s.t.Errorf("%s stopped with %v after SIGTERM", name, p.err)
			}
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			s.t.Errorf("%s did not stop within 30s of SIGTERM", name)
		}
		delete(s.procs, name)
	}
	if s.t.Failed() {
		s.dumpLog("flight")
		s.dumpLog("booking")
	}
}

func (s *e2eSystem) startNATS() {
	s.t.Helper()
	ns, err := startEmbeddedNATS(s.natsDir, s.natsPort)
	testenv.Fatal(s.t, "embedded nats", err)
	s.natsServer = ns
}

// restartNATS shuts the broker down and starts it again on the same port and store.
func (s *e2eSystem) restartNATS() {
	s.t.Helper()
	s.natsServer.Shutdown()
	s.natsServer.WaitForShutdown()
	s.startNATS()
}

func (s *e2eSystem) dumpLog(service string) {
	b, err := os.ReadFile(filepath.Join(s.dir, service+".log"))
	if err != nil {
		return
	}
	// A race report is long and what matters most: show it whole.
	if i := strings.Index(string(b), "WARNING: DATA RACE"); i >= 0 {
		s.t.Logf("data race in the %s log:\n%s", service, b[i:min(len(b), i+8000)])
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	s.t.Logf("last lines of the %s log:\n%s", service, strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

// response is an HTTP answer with its decoded JSON body.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r response) str(key string) string { s, _ := r.body[key].(string); return s }
func (r response) num(key string) int64  { f, _ := r.body[key].(float64); return int64(f) }

// call sends a request to a service as the user (an admin token for "ops") and decodes the
// answer. headers are name, value pairs.
func (s *e2eSystem) call(service, method, path, user, body string, headers ...string) (response, error) {
	req, err := http.NewRequest(method, "http://"+s.addrs[service]+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+s.token(user))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	r := response{status: res.StatusCode, header: res.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			return response{}, fmt.Errorf("%s %s: decode %q: %w", method, path, raw, err)
		}
	}
	return r, nil
}

// must is call for requests that must get the given status.
func (s *e2eSystem) must(status int, service, method, path, user, body string, headers ...string) response {
	s.t.Helper()
	r, err := s.call(service, method, path, user, body, headers...)
	testenv.Fatal(s.t, method+" "+path, err)
	if r.status != status {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.raw, status)
	}
	return r
}

var (
	tokensMu sync.Mutex
	tokens   = map[string]string{}
)

func (s *e2eSystem) token(user string) string {
	tokensMu.Lock()
	defer tokensMu.Unlock()
	if tok, ok := tokens[user]; ok {
		return tok
	}
	authn, err := auth.New(auth.Config{Secret: auth.DevSecret, Issuer: "flightbook"}, nil)
	if err != nil {
		panic(err)
	}
	role := ""
	if user == "ops" {
		role = auth.RoleAdmin
	}
	tok, err := authn.Token(user, role, time.Hour)
	if err != nil {
		panic(err)
	}
	tokens[user] = tok
	return tok
}

// catalogue creates two cities and airports, an airplane and returns a function that creates
// a flight with the given number of seats, departing in a week.
func (s *e2eSystem) catalogue() func(seats int) int64 {
	s.t.Helper()
	a := s.must(201, "flight", "POST", "/api/v1/cities", "ops", `{"name":"Pune","country":"IN"}`).num("id")
	b := s.must(201, "flight", "POST", "/api/v1/cities", "ops", `{"name":"Goa","country":"IN"}`).num("id")
	s.must(201, "flight", "POST", "/api/v1/airports", "ops", fmt.Sprintf(`{"code":"PNQ","name":"Pune","city_id":%d}`, a))
	s.must(201, "flight", "POST", "/api/v1/airports", "ops", fmt.Sprintf(`{"code":"GOX","name":"Goa","city_id":%d}`, b))
	plane := s.must(201, "flight", "POST", "/api/v1/airplanes", "ops",
		`{"model":"A320neo","capacity":500,"cabins":[{"class":"economy","rows":100,"seats_per_row":5}]}`).num("id")
	n := 0
	return func(seats int) int64 {
		n++
		dep := time.Now().Add(7 * 24 * time.Hour).Add(time.Duration(n) * time.Hour).UTC().Truncate(time.Minute)
		id := s.must(201, "flight", "POST", "/api/v1/flights", "ops", fmt.Sprintf(`{"flight_number":"FB%d","airplane_id":%d,
			"departure_airport":"PNQ","arrival_airport":"GOX","departure_time":%q,"arrival_time":%q,
			"fare_amount":420000,"currency":"INR","seats":%d}`,
			100+n, plane, dep.Format(time.RFC3339), dep.Add(65*time.Minute).Format(time.RFC3339), seats)).num("id")
		s.awaitFlight(id)
		return id
	}
}

// awaitFlight waits until the booking service's copy of the catalogue has the flight, which
// its FlightScheduled event brings a few milliseconds after the flight service created it.
func (s *e2eSystem) awaitFlight(id int64) {
	s.t.Helper()
	s.await(fmt.Sprintf("the booking service to know flight %d", id), func() bool {
		r, err := s.call("booking", "GET", fmt.Sprintf("/api/v1/admin/flights/%d", id), "ops", "")
		return err == nil && r.status == 200
	})
}

// seats returns a flight's seat counts as the flight service reports them.
func (s *e2eSystem) seats(flightID int64) (total, available, held, sold int64) {
	s.t.Helper()
	r := s.must(200, "flight", "GET", fmt.Sprintf("/api/v1/flights/%d", flightID), "", "")
	return r.num("total_seats"), r.num("available_seats"), r.num("held_seats"), r.num("sold_seats")
}

// booking fetches a booking as its owner.
func (s *e2eSystem) booking(user, id string) response {
	s.t.Helper()
	return s.must(200, "booking", "GET", "/api/v1/bookings/"+id, user, "")
}

// await polls cond until it holds, failing the test after a minute with the last lines of
// every running process's log.
func (s *e2eSystem) await(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			for name := range s.procs {
				s.dumpLog(name)
			}
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// publicEvents subscribes to booking.> with a plain NATS client, as another team's service
// would, and returns a function listing the public events' CloudEvents types seen for a
// booking, in order.
func (s *e2eSystem) publicEvents() func(bookingID string) []string {
	s.t.Helper()
	nc, err := nats.Connect(s.natsURL)
	testenv.Fatal(s.t, "nats", err)
	s.t.Cleanup(nc.Close)
	var mu sync.Mutex
	seen := map[string][]string{}
	subject := "booking.>"
	if s.namespace != "" {
		subject = s.namespace + "." + subject
	}
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		// booking.> also carries the saga's requests to the flight service; keep the
		// public events only.
		if typ := m.Header.Get("ce-type"); !strings.Contains(typ, ".booking.seat") {
			id := m.Header.Get("ce-subject")
			seen[id] = append(seen[id], typ)
		}
	})
	testenv.Fatal(s.t, "subscribe", err)
	testenv.Fatal(s.t, "flush", nc.Flush())
	return func(id string) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen[id]...)
	}
}
