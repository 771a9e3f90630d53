package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/booking/api"
	"github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/testenv"
	"github.com/flightbook/flightbook/web"
)

var rules = booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}

type env struct {
	t       *testing.T
	db      *sql.DB
	store   booking.Store
	gateway *gateway
	h       http.Handler
	authn   *auth.Authenticator
	offset  atomic.Int64 // added to the wall clock, to move time forward
}

// stores are the kinds of store the API is served on: MySQL in production and SQLite in the
// dev mode. The API promises the same behaviour on both, so every test runs on each.
var stores = []string{"mysql", "sqlite"}

// eachStore runs test, in parallel, once for each kind of store, as a subtest named for it.
// test opens its env on the kind (newEnv(t, kind)), so each subtest has a fresh database.
func eachStore(t *testing.T, test func(t *testing.T, kind string)) {
	t.Helper()
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

// openStore opens a fresh database of kind and a store on it that reads the time from now and
// lets a retry take over an idempotency key in progress for a minute. With outboxed, every
// change's effects are written to the outbox as the events the relay publishes, as the
// service wires it; otherwise they are discarded.
func openStore(t *testing.T, kind string, now func() time.Time, outboxed bool) (*sql.DB, booking.Store) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	topo := events.Topology{Source: "test/booking"}
	switch kind {
	case "mysql":
		db, err := mysql.Open(ctx, testenv.MySQL(t), 50, log)
		testenv.Fatal(t, "open", err)
		t.Cleanup(func() { db.Close() })
		var emit mysql.Emit
		if outboxed {
			emit = messaging.Emit(topo, outbox.AddMySQL)
		}
		return db, mysql.NewStore(db, rules, emit).WithClock(now).WithKeyStaleAfter(time.Minute)
	case "sqlite":
		db, err := sqlite.Open(ctx, testenv.SQLite(t), log)
		testenv.Fatal(t, "open", err)
		t.Cleanup(func() { db.Close() })
		var emit sqlite.Emit
		if outboxed {
			emit = messaging.Emit(topo, outbox.AddSQLite)
		}
		return db, sqlite.NewStore(db, rules, emit).WithClock(now).WithKeyStaleAfter(time.Minute)
	}
	t.Fatalf("unknown store %q", kind)
	return nil, nil
}

// gateway wraps the fake gateway so a test can act while a charge is in flight.
type gateway struct {
	*booking.FakeGateway
	during func()
}

func (g *gateway) Charge(ctx context.Context, req booking.ChargeRequest) (booking.PaymentResult, error) {
	if g.during != nil {
		g.during()
	}
	return g.FakeGateway.Charge(ctx, req)
}

// newEnv returns the API on a fresh store of kind ("mysql" or "sqlite").
func newEnv(t *testing.T, kind string) *env {
	t.Helper()
	return newEnvWith(t, kind, func(*api.Deps) {})
}

// newEnvWith is newEnv with the API's Deps changed by with.
func newEnvWith(t *testing.T, kind string, with func(*api.Deps)) *env {
	t.Helper()
	return newEnvOn(t, kind, false, with)
}

// newEnvOn is newEnvWith on a store that writes its changes' effects to the outbox when
// outboxed.
func newEnvOn(t *testing.T, kind string, outboxed bool, with func(*api.Deps)) *env {
	t.Helper()
	authn, err := auth.New(auth.Config{Secret: "test-secret-at-least-16", Issuer: "flightbook"}, nil)
	testenv.Fatal(t, "auth", err)
	e := &env{t: t, gateway: &gateway{FakeGateway: booking.NewFakeGateway()}, authn: authn}
	e.db, e.store = openStore(t, kind, func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }, outboxed)
	engine := web.NewEngine(slog.New(slog.DiscardHandler))
	deps := api.Deps{Store: e.store, Gateway: e.gateway, Auth: authn, PollEvery: 10 * time.Millisecond}
	with(&deps)
	api.Routes(engine, deps)
	e.h = engine
	e.recordFlights()
	return e
}

// recordFlights fills the local catalogue: flight 7 is open, 9 is cancelled and 10 has
// departed (99 is unknown).
func (e *env) recordFlights() {
	now := time.Now().UTC()
	for _, f := range []booking.Flight{
		{ID: 7, Number: "FB7", DepartureTime: now.Add(30 * 24 * time.Hour), AnnouncedAt: now},
		{ID: 9, Number: "FB9", DepartureTime: now.Add(30 * 24 * time.Hour), AnnouncedAt: now},
		{ID: 9, Number: "FB9", Cancelled: true, AnnouncedAt: now.Add(time.Second)},
		{ID: 10, Number: "FB10", DepartureTime: now.Add(-time.Hour), AnnouncedAt: now},
	} {
		testenv.Fatal(e.t, "record flight", e.store.RecordFlight(context.Background(), f))
	}
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// problem checks r is a problem+json with status and code, and returns its field names.
func (r resp) problem(t *testing.T, status int, code string) []string {
	t.Helper()
	if r.code != status || r.header.Get("Content-Type") != web.ProblemContentType {
		t.Fatalf("got %d %s %s, want %d problem", r.code, r.header.Get("Content-Type"), r.body, status)
	}
	var p web.Problem
	if err := json.Unmarshal(r.body, &p); err != nil || p.Code != code {
		t.Fatalf("problem %s: code %q, want %q (%v)", r.body, p.Code, code, err)
	}
	var fields []string
	for _, f := range p.Errors {
		fields = append(fields, f.Field)
	}
	return fields
}

func (e *env) token(user, role string) string {
	tok, err := e.authn.Token(user, role, time.Hour)
	testenv.Fatal(e.t, "token", err)
	return tok
}

// do sends a request as user ("" for none) with body (string, or marshalled) and headers
// given as name, value pairs.
func (e *env) do(method, path, user string, body any, headers ...string) resp {
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		role := ""
		if user == "admin" {
			role = auth.RoleAdmin
		}
		req.Header.Set("Authorization", "Bearer "+e.token(user, role))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return resp{code: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (e *env) count(table string) int {
	var n int
	testenv.Fatal(e.t, "count", e.db.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

// create books 2 seats on flight 7 as user and returns the booking id.
func (e *env) create(user string) string {
	r := e.do("POST", "/api/v1/bookings", user, map[string]any{"flight_id": 7, "seats": 2})
	if r.code != http.StatusAccepted {
		e.t.Fatalf("create: %d %s", r.code, r.body)
	}
	return r.json(e.t)["id"].(string)
}

// hold applies SeatsHeld the way the saga consumer will: Apply in its transaction.
func (e *env) hold(id string) {
	err := e.store.InTx(context.Background(), func(tx booking.Tx) error {
		_, err := tx.Apply(context.Background(), id, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
		return err
	})
	testenv.Fatal(e.t, "seats held", err)
}

func (e *env) status(id string) booking.Status {
	b, err := e.store.Get(context.Background(), id)
	testenv.Fatal(e.t, "get", err)
	return b.Status
}

var payBody = map[string]any{"amount": 10000, "currency": "EUR", "card_token": booking.CardSuccess}

func TestCreateAndRead(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		r := e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 2}`)
		if r.code != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.code, r.body)
		}
		b := r.json(t)
		id := b["id"].(string)
		if b["status"] != "PENDING" || b["user_id"] != "alice" || b["seats"] != 2.0 || r.header.Get("Location") != "/api/v1/bookings/"+id {
			t.Fatalf("created %v, Location %q", b, r.header.Get("Location"))
		}
		if got := e.do("GET", "/api/v1/bookings/"+id, "alice", nil); got.code != 200 || got.json(t)["id"] != id {
			t.Fatalf("owner get: %d %s", got.code, got.body)
		}
		if got := e.do("GET", "/api/v1/bookings/"+id, "admin", nil); got.code != 200 {
			t.Fatalf("admin get: %d", got.code)
		}
		e.do("GET", "/api/v1/bookings/"+id, "mallory", nil).problem(t, 404, "not_found")
		e.do("GET", "/api/v1/bookings/"+id+"/history", "mallory", nil).problem(t, 404, "not_found")
		e.do("POST", "/api/v1/bookings/"+id+"/cancel", "mallory", nil).problem(t, 404, "not_found")
		e.do("POST", "/api/v1/bookings/"+id+"/payments", "mallory", payBody, "Idempotency-Key", "m1").problem(t, 404, "not_found")
		e.do("GET", "/api/v1/bookings/nope", "alice", nil).problem(t, 404, "not_found")
		e.do("GET", "/api/v1/bookings/"+id, "", nil).problem(t, 401, "unauthenticated")
		e.do("POST", "/api/v1/bookings", "", `{"flight_id": 7, "seats": 2}`).problem(t, 401, "unauthenticated")
		if n := e.count("bookings"); n != 1 {
			t.Fatalf("%d bookings", n)
		}
		if n := e.count("idempotency_keys"); n != 0 {
			t.Fatalf("mallory's payment key was stored: %d", n)
		}
	})
}

func TestCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		huge := `{"flight_id": 7, "seats": 2, "x": "` + strings.Repeat("a", web.MaxBodyBytes) + `"}`
		tests := []struct {
			name   string
			body   string
			status int
			code   string
			fields []string
		}{
			{"zero seats", `{"flight_id": 7, "seats": 0}`, 422, "validation_failed", []string{"seats"}},
			{"100 seats", `{"flight_id": 7, "seats": 100}`, 422, "validation_failed", []string{"seats"}},
			{"no flight", `{"seats": 1}`, 422, "validation_failed", []string{"flight_id"}},
			{"unknown flight", `{"flight_id": 99, "seats": 1}`, 422, "validation_failed", []string{"flight_id"}},
			{"cancelled flight", `{"flight_id": 9, "seats": 1}`, 422, "validation_failed", []string{"flight_id"}},
			{"departed flight", `{"flight_id": 10, "seats": 1}`, 422, "validation_failed", []string{"flight_id"}},
			{"negative flight and no seats", `{"flight_id": -1}`, 422, "validation_failed", []string{"flight_id", "seats"}},
			{"unknown field", `{"flight_id": 7, "seats": 1, "user_id": "bob"}`, 422, "validation_failed", []string{"user_id"}},
			{"seats as string", `{"flight_id": 7, "seats": "two"}`, 422, "validation_failed", []string{"seats"}},
			{"flight as float", `{"flight_id": 7.5, "seats": 1}`, 422, "validation_failed", []string{"flight_id"}},
			{"malformed", `{"flight_id": 7, "seats": `, 400, "malformed_json", nil},
			{"trailing data", `{"flight_id": 7, "seats": 1} {}`, 400, "malformed_json", nil},
			{"empty", ``, 400, "malformed_json", nil},
			{"array", `[1, 2]`, 422, "validation_failed", []string{"(body)"}},
			{"huge", huge, 413, "body_too_large", nil},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do("POST", "/api/v1/bookings", "alice", tc.body, "Idempotency-Key", fmt.Sprint("bad-", i))
				if got := r.problem(t, tc.status, tc.code); !slices.Equal(got, tc.fields) {
					t.Fatalf("fields %v, want %v", got, tc.fields)
				}
			})
		}
		e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 1}`, "Prefer", "wait=soon").problem(t, 400, "invalid_prefer")
		e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 1}`, "Idempotency-Key", "has space").problem(t, 400, "invalid_idempotency_key")
		if b, k, h := e.count("bookings"), e.count("idempotency_keys"), e.count("booking_history"); b+k+h != 0 {
			t.Fatalf("written: %d bookings, %d keys, %d history", b, k, h)
		}
	})
}

func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		body := `{"flight_id": 7, "seats": 2}`
		first := e.do("POST", "/api/v1/bookings", "alice", body, "Idempotency-Key", "k1")
		again := e.do("POST", "/api/v1/bookings", "alice", body, "Idempotency-Key", "k1")
		if first.code != 202 || again.code != 202 || !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" || again.header.Get("Location") != first.header.Get("Location") {
			t.Fatalf("replay: %d %s / %d %s %v", first.code, first.body, again.code, again.body, again.header)
		}
		if first.header.Get("Idempotent-Replayed") != "" {
			t.Fatal("first response marked as replayed")
		}
		e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 3}`, "Idempotency-Key", "k1").problem(t, 422, "idempotency_key_reused")
		// Another user's key space is their own.
		if r := e.do("POST", "/api/v1/bookings", "bob", body, "Idempotency-Key", "k1"); r.code != 202 || r.json(t)["id"] == first.json(t)["id"] {
			t.Fatalf("bob's k1: %d %s", r.code, r.body)
		}
		if n := e.count("bookings"); n != 2 {
			t.Fatalf("%d bookings, want 2", n)
		}

		// 20 concurrent requests with one key: one booking; each answer is the booking or 409.
		const n = 20
		var wg sync.WaitGroup
		rs := make([]resp, n)
		for i := range rs {
			wg.Go(func() { rs[i] = e.do("POST", "/api/v1/bookings", "carol", body, "Idempotency-Key", "race") })
		}
		wg.Wait()
		var ids []string
		for _, r := range rs {
			switch r.code {
			case 202:
				ids = append(ids, r.json(t)["id"].(string))
			case 409:
				r.problem(t, 409, "idempotency_key_in_progress")
			default:
				t.Fatalf("concurrent: %d %s", r.code, r.body)
			}
		}
		if len(slices.Compact(ids)) != 1 {
			t.Fatalf("concurrent requests made bookings %v", slices.Compact(ids))
		}
		if n := e.count("bookings"); n != 3 {
			t.Fatalf("%d bookings, want 3", n)
		}
	})
}

func TestPreferWait(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		// The booking is changed without a publish, as by a reply handled on another replica:
		// only the fallback poll can see it.
		e := newEnvWith(t, kind, func(d *api.Deps) { d.Changes = &booking.Changes{} })
		// Hold the booking as soon as it exists, as the saga would.
		go func() {
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				var id string
				if e.db.QueryRow(`SELECT id FROM bookings WHERE user_id = 'alice'`).Scan(&id) == nil {
					time.Sleep(50 * time.Millisecond)
					e.hold(id)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		start := time.Now()
		r := e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 2}`, "Prefer", "respond-async, wait=5")
		if r.code != 200 || r.json(t)["status"] != "HELD" || r.header.Get("Preference-Applied") != "wait=5" || time.Since(start) > 4*time.Second {
			t.Fatalf("wait for HELD: %d %s %v after %s", r.code, r.body, r.header, time.Since(start))
		}
		// Nothing happens: 202 PENDING once the wait (capped at 10 s; 1 s here) has passed.
		start = time.Now()
		r = e.do("POST", "/api/v1/bookings", "bob", `{"flight_id": 7, "seats": 2}`, "Prefer", "wait=1")
		if d := time.Since(start); r.code != 202 || r.json(t)["status"] != "PENDING" || d < time.Second || d > 3*time.Second {
			t.Fatalf("wait in vain: %d %s after %s", r.code, r.body, d)
		}
	})
}

// TestPreferWaitWakes holds the booking and wakes the request as another replica's event
// does: with a fallback poll of an hour, only the wake-up can make the request read the
// booking and answer HELD within its 5 s wait.
func TestPreferWaitWakes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		changes := &booking.Changes{}
		e := newEnvWith(t, kind, func(d *api.Deps) { d.Changes, d.PollEvery = changes, time.Hour })
		r := e.postWaking(func(id string) { e.hold(id) }, changes.Wake)
		if r.code != 200 || r.json(t)["status"] != "HELD" {
			t.Fatalf("wait for HELD with a one-hour poll: %d %s", r.code, r.body)
		}
	})
}

// TestPreferWaitTakesThePublishedBooking: a change this process committed comes with the
// booking, and the waiting request answers with it instead of reading it back. The booking
// published here was never written, so only an answer taken from the publish says HELD.
func TestPreferWaitTakesThePublishedBooking(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		changes := &booking.Changes{}
		e := newEnvWith(t, kind, func(d *api.Deps) { d.Changes, d.PollEvery = changes, time.Hour })
		r := e.postWaking(func(string) {}, func(id string) {
			changes.Publish(booking.Booking{ID: id, UserID: "alice", FlightID: 7, Seats: 2, Status: booking.Held, Version: 2})
		})
		if r.code != 200 || r.json(t)["status"] != "HELD" || r.json(t)["version"] != 2.0 {
			t.Fatalf("wait with the booking published: %d %s", r.code, r.body)
		}
		if got := e.do("GET", "/api/v1/bookings/"+r.json(t)["id"].(string), "alice", nil).json(t)["status"]; got != "PENDING" {
			t.Fatalf("the stored booking is %v; the test means to publish a change that was not written", got)
		}
	})
}

// postWaking POSTs alice's booking with Prefer: wait=5 and, once the booking is written,
// calls change once and then wake every 5 ms until the request has answered: the request
// watches just after its commit, which cannot be seen from here, and a wake-up before the
// watch wakes nobody.
func (e *env) postWaking(change, wake func(id string)) resp {
	answered := make(chan struct{})
	go func() {
		var id string
		for e.db.QueryRow(`SELECT id FROM bookings WHERE user_id = 'alice'`).Scan(&id) != nil {
			select {
			case <-answered:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		change(id)
		for {
			wake(id)
			select {
			case <-answered:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer close(answered)
	return e.do("POST", "/api/v1/bookings", "alice", `{"flight_id": 7, "seats": 2}`, "Prefer", "wait=5")
}

// TestSagaThenPay drives the saga as the consumers will (SeatsHeld and SeatHoldRejected
// applied in a store transaction) and pays through the API.
func TestSagaThenPay(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		id := e.create("alice")
		e.hold(id)
		b := e.do("GET", "/api/v1/bookings/"+id, "alice", nil).json(t)
		if b["status"] != "HELD" || b["total"] != 10000.0 || b["currency"] != "EUR" || b["hold_expires_at"] == nil {
			t.Fatalf("held: %v", b)
		}
		path := "/api/v1/bookings/" + id + "/payments"
		e.do("POST", path, "alice", payBody).problem(t, 400, "idempotency_key_required")
		if f := e.do("POST", path, "alice", map[string]any{"amount": 9999, "currency": "EUR"}, "Idempotency-Key", "p0").problem(t, 422, "validation_failed"); !slices.Equal(f, []string{"amount"}) {
			t.Fatalf("wrong amount fields %v", f)
		}
		if f := e.do("POST", path, "alice", map[string]any{"amount": "lots", "currency": "EUR"}, "Idempotency-Key", "p0").problem(t, 422, "validation_failed"); !slices.Equal(f, []string{"amount"}) {
			t.Fatalf("wrong type fields %v", f)
		}
		if f := e.do("POST", path, "alice", map[string]any{"amount": -1, "currency": "eur"}, "Idempotency-Key", "p0").problem(t, 422, "validation_failed"); !slices.Equal(f, []string{"amount", "currency"}) {
			t.Fatalf("bad payment fields %v", f)
		}
		if e.gateway.Charges() != 0 || e.count("idempotency_keys") != 0 {
			t.Fatalf("refused payments charged %d, stored %d keys", e.gateway.Charges(), e.count("idempotency_keys"))
		}

		paid := e.do("POST", path, "alice", payBody, "Idempotency-Key", "p1")
		if paid.code != 200 || paid.json(t)["status"] != "CONFIRMED" || paid.json(t)["payment_id"] == nil {
			t.Fatalf("pay: %d %s", paid.code, paid.body)
		}
		again := e.do("POST", path, "alice", payBody, "Idempotency-Key", "p1")
		if again.code != 200 || !bytes.Equal(again.body, paid.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replayed payment: %d %s", again.code, again.body)
		}
		e.do("POST", path, "alice", payBody, "Idempotency-Key", "p2").problem(t, 409, "already_paid")
		e.do("POST", path, "alice", map[string]any{"amount": 1, "currency": "EUR"}, "Idempotency-Key", "p1").problem(t, 422, "idempotency_key_reused")
		if e.gateway.Charges() != 1 {
			t.Fatalf("charges %d", e.gateway.Charges())
		}

		h := e.do("GET", "/api/v1/bookings/"+id+"/history", "alice", nil)
		var hv struct {
			Items []struct{ Cause, ToStatus string }
		}
		_ = json.Unmarshal(h.body, &hv)
		var causes []string
		for _, l := range hv.Items {
			causes = append(causes, l.Cause)
		}
		if h.code != 200 || !slices.Equal(causes, []string{"requested", "seats_held", "paid"}) {
			t.Fatalf("history %d %s", h.code, h.body)
		}

		// An unknown flight: the flight service rejects the hold through the saga.
		rid := e.create("alice")
		err := e.store.InTx(context.Background(), func(tx booking.Tx) error {
			_, err := tx.Apply(context.Background(), rid, booking.SeatHoldRejected{Reason: "flight_not_found"})
			return err
		})
		testenv.Fatal(t, "reject", err)
		rb := e.do("GET", "/api/v1/bookings/"+rid, "alice", nil).json(t)
		if rb["status"] != "REJECTED" || rb["reject_reason"] != "flight_not_found" {
			t.Fatalf("rejected: %v", rb)
		}
		e.do("POST", "/api/v1/bookings/"+rid+"/payments", "alice", payBody, "Idempotency-Key", "p3").problem(t, 409, "invalid_status")
	})
}

func TestPaymentGatewayCards(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		id := e.create("alice")
		e.hold(id)
		path := "/api/v1/bookings/" + id + "/payments"
		e.do("POST", path, "alice", map[string]any{"amount": 10000, "currency": "EUR", "card_token": booking.CardDecline}, "Idempotency-Key", "d1").problem(t, 402, "payment_declined")
		if s := e.status(id); s != booking.Held {
			t.Fatalf("declined booking is %s", s)
		}
		timeout := map[string]any{"amount": 10000, "currency": "EUR", "card_token": booking.CardTimeout}
		e.do("POST", path, "alice", timeout, "Idempotency-Key", "t1").problem(t, 504, "payment_gateway_timeout")
		if s := e.status(id); s != booking.Held {
			t.Fatalf("timed-out booking is %s", s)
		}
		// The retry with the same key is safe: the gateway returns the charge it made.
		r := e.do("POST", path, "alice", timeout, "Idempotency-Key", "t1")
		if r.code != 200 || r.json(t)["status"] != "CONFIRMED" || e.gateway.Charges() != 1 {
			t.Fatalf("retry after timeout: %d %s, charges %d", r.code, r.body, e.gateway.Charges())
		}
	})
}

func TestPayExpired(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		id := e.create("alice")
		e.hold(id)
		e.offset.Store(int64(rules.HoldTTL))
		path := "/api/v1/bookings/" + id + "/payments"
		// Past the expiry but not yet expired by the scheduler: refused before any charge.
		e.do("POST", path, "alice", payBody, "Idempotency-Key", "x1").problem(t, 409, "hold_expired")
		_, err := e.store.Apply(context.Background(), id, booking.Expire{})
		testenv.Fatal(t, "expire", err)
		e.do("POST", path, "alice", payBody, "Idempotency-Key", "x2").problem(t, 409, "hold_expired")
		e.do("POST", "/api/v1/bookings/"+id+"/cancel", "alice", nil).problem(t, 409, "invalid_status")
		if e.gateway.Charges() != 0 || e.count("payments") != 0 {
			t.Fatalf("charged %d", e.gateway.Charges())
		}
	})
}

// The hold expires while the gateway is charging: the charge is recorded, refunded, and the
// client gets 409.
func TestPaymentLosesToExpiry(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		id := e.create("alice")
		e.hold(id)
		e.gateway.during = func() {
			e.offset.Store(int64(rules.HoldTTL))
			if _, err := e.store.Apply(context.Background(), id, booking.Expire{}); err != nil {
				t.Error(err)
			}
		}
		e.do("POST", "/api/v1/bookings/"+id+"/payments", "alice", payBody, "Idempotency-Key", "late").problem(t, 409, "hold_expired")
		ps, err := e.store.Payments(context.Background(), id)
		if err != nil || len(ps) != 1 || ps[0].Status != booking.PaymentRefunded || e.gateway.Refunds() != 1 {
			t.Fatalf("payments %+v %v, refunds %d", ps, err, e.gateway.Refunds())
		}
		if s := e.status(id); s != booking.Expired {
			t.Fatalf("booking %s", s)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		pending := e.create("alice")
		e.do("POST", "/api/v1/bookings/"+pending+"/cancel", "alice", nil).problem(t, 409, "invalid_status")

		held := e.create("alice")
		e.hold(held)
		e.do("POST", "/api/v1/bookings/"+held+"/cancel", "alice", `{"why": "x"}`).problem(t, 422, "validation_failed")
		r := e.do("POST", "/api/v1/bookings/"+held+"/cancel", "alice", `{}`, "Idempotency-Key", "c1")
		if r.code != 200 || r.json(t)["status"] != "CANCELLED" {
			t.Fatalf("cancel held: %d %s", r.code, r.body)
		}
		if again := e.do("POST", "/api/v1/bookings/"+held+"/cancel", "alice", `{}`, "Idempotency-Key", "c1"); again.code != 200 || !bytes.Equal(again.body, r.body) {
			t.Fatalf("replayed cancel: %d %s", again.code, again.body)
		}
		e.do("POST", "/api/v1/bookings/"+held+"/cancel", "alice", nil).problem(t, 409, "invalid_status")

		paid := e.create("alice")
		e.hold(paid)
		if p := e.do("POST", "/api/v1/bookings/"+paid+"/payments", "alice", payBody, "Idempotency-Key", "pay"); p.code != 200 {
			t.Fatalf("pay: %d %s", p.code, p.body)
		}
		if r := e.do("POST", "/api/v1/bookings/"+paid+"/cancel", "admin", nil); r.code != 200 || r.json(t)["status"] != "CANCELLED" {
			t.Fatalf("admin cancels confirmed: %d %s", r.code, r.body)
		}
		if e.gateway.Refunds() != 1 {
			t.Fatalf("refunds %d", e.gateway.Refunds())
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		var ids []string
		for range 5 {
			ids = append(ids, e.create("alice"))
			time.Sleep(2 * time.Millisecond) // distinct UUIDv7 milliseconds, so the order is known
		}
		e.create("bob")
		e.hold(ids[1])
		var got []string
		cursor := ""
		for range 10 {
			r := e.do("GET", "/api/v1/bookings?limit=2&cursor="+cursor, "alice", nil)
			var page struct {
				Items      []struct{ ID string }
				NextCursor string `json:"next_cursor"`
			}
			if r.code != 200 || json.Unmarshal(r.body, &page) != nil {
				t.Fatalf("list: %d %s", r.code, r.body)
			}
			for _, b := range page.Items {
				got = append(got, b.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		want := slices.Clone(ids)
		slices.Reverse(want)
		if !slices.Equal(got, want) {
			t.Fatalf("pages %v\nwant  %v", got, want)
		}
		r := e.do("GET", "/api/v1/bookings?status=held", "alice", nil).json(t)
		if items := r["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != ids[1] {
			t.Fatalf("held: %v", r)
		}
		if f := e.do("GET", "/api/v1/bookings?status=LOST&limit=0&cursor=!!", "alice", nil).problem(t, 422, "validation_failed"); !slices.Equal(f, []string{"status", "limit", "cursor"}) {
			t.Fatalf("fields %v", f)
		}
	})
}
