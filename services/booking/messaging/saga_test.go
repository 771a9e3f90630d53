package messaging_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/booking/sqlite"
	flightmessaging "github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// system is both services' messaging sides on fresh databases and a fresh NATS namespace:
// the booking store with its outbox and reply consumers, the flight inventory with its own.
type system struct {
	bookings booking.Store
	// withClock returns the booking store reading the time from now.
	withClock func(now func() time.Time) booking.Store
	db        *sql.DB // the booking database
	pg        *pgxpool.Pool
	js        jetstream.JetStream
	nc        *nats.Conn
	topo      events.Topology
	routes    []consumer.Route // both services' routes, with their live handlers
	relays    []*outbox.Relay  // booking's, flight's
}

// dialects are the booking stores the saga tests run on.
var dialects = []string{"mysql", "sqlite"}

// start runs the saga on a MySQL booking store.
func start(t *testing.T, rules booking.Rules) *system { return startOn(t, "mysql", rules) }

// startOn runs the saga on the booking store of dialect, mysql or sqlite.
func startOn(t *testing.T, dialect string, rules booking.Rules) *system {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	url, ns := testenv.NATS(t)

	var (
		db  *sql.DB
		err error
	)
	if dialect == "sqlite" {
		db, err = sqlite.Open(ctx, testenv.SQLite(t), log)
	} else {
		db, err = mysql.Open(ctx, testenv.MySQL(t), 20, log)
	}
	testenv.Fatal(t, dialect, err)
	pg, err := postgres.Open(ctx, testenv.Postgres(t), 20, log)
	testenv.Fatal(t, "postgres", err)

	conn := func(name string) (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(url, nats.Name(name), nats.ReconnectBufSize(-1))
		testenv.Fatal(t, "nats", err)
		js, err := jetstream.New(nc)
		testenv.Fatal(t, "jetstream", err)
		return nc, js
	}
	bnc, bjs := conn("booking")
	fnc, fjs := conn("flight")
	btopo := events.Topology{Namespace: ns, Source: "flightbook/booking"}
	ftopo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, bjs, btopo, events.StreamConfig{}))

	cc := consumer.Config{AckWait: 10 * time.Second, MaxDeliver: 5, Backoff: []time.Duration{50 * time.Millisecond}, Concurrency: 8}
	var (
		store     booking.Store
		withClock func(now func() time.Time) booking.Store
		brelay    *outbox.Relay
	)
	relayConfig := outbox.RelayConfig{LockName: ns, PollInterval: 20 * time.Millisecond}
	if dialect == "sqlite" {
		s := sqlite.NewStore(db, rules, bookingmessaging.Emit(btopo, outbox.AddSQLite))
		store, withClock = s, func(now func() time.Time) booking.Store { return s.WithClock(now) }
		brelay = outbox.NewSQLiteRelay(db, bjs, relayConfig, log)
	} else {
		s := mysql.NewStore(db, rules, bookingmessaging.Emit(btopo, outbox.AddMySQL))
		store, withClock = s, func(now func() time.Time) booking.Store { return s.WithClock(now) }
		brelay = outbox.NewMySQLRelay(db, bjs, relayConfig, log)
	}
	brouter, err := consumer.New(bnc, bjs, events.ServiceBooking, ns, cc, log)
	testenv.Fatal(t, "booking router", err)
	bookingmessaging.New(store, btopo, log).Register(brouter)

	frelay := outbox.NewPostgresRelay(pg, fjs, outbox.RelayConfig{LockName: ns, PollInterval: 20 * time.Millisecond}, log)
	frouter, err := consumer.New(fnc, fjs, events.ServiceFlight, ns, cc, log)
	testenv.Fatal(t, "flight router", err)
	flightmessaging.New(postgres.NewInventory(pg), ftopo, frelay.Notify, log).Register(frouter)

	done := make(chan error, 4)
	for _, run := range []func(context.Context) error{brelay.Run, frelay.Run, brouter.Run, frouter.Run} {
		go func() { done <- run(ctx) }()
	}
	for _, r := range []*consumer.Router{brouter, frouter} {
		select {
		case <-r.Running():
		case <-time.After(15 * time.Second):
			t.Fatal("router did not start")
		}
	}
	t.Cleanup(func() {
		cancel()
		for range 4 {
			if err := <-done; err != nil {
				t.Errorf("stopped with: %v", err)
			}
		}
		bnc.Close()
		fnc.Close()
		pg.Close()
		db.Close()
	})
	return &system{
		bookings: store, withClock: withClock, db: db, pg: pg, js: bjs, nc: bnc, topo: btopo,
		routes: append(brouter.Routes(), frouter.Routes()...),
		relays: []*outbox.Relay{brelay, frelay},
	}
}

func (s *system) flight(t *testing.T, seats int) int64 {
	t.Helper()
	ctx := context.Background()
	var city, plane, id int64
	testenv.Fatal(t, "city", s.pg.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ('Delhi', 'IN') RETURNING id`).Scan(&city))
	_, err := s.pg.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1)`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", s.pg.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', $1) RETURNING id`, seats).Scan(&plane))
	dep := time.Now().Add(72 * time.Hour)
	testenv.Fatal(t, "flight", s.pg.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', $4, $4) RETURNING id`, plane, dep, dep.Add(2*time.Hour), seats).Scan(&id))
	return id
}

func (s *system) seats(t *testing.T, flightID int64) (avail, held, sold int) {
	t.Helper()
	testenv.Fatal(t, "seats", s.pg.QueryRow(context.Background(),
		`SELECT available_seats, held_seats, sold_seats FROM flights WHERE id = $1`, flightID).Scan(&avail, &held, &sold))
	return avail, held, sold
}

// await polls cond until it holds or 30 s pass.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statuses(t *testing.T, s *system, ids []string) map[booking.Status]int {
	t.Helper()
	n := map[booking.Status]int{}
	for _, id := range ids {
		b, err := s.bookings.Get(context.Background(), id)
		testenv.Fatal(t, "get booking", err)
		n[b.Status]++
	}
	return n
}

// TestSagaNoOversell books 150 single seats on a 100-seat flight through the whole saga:
// exactly 100 end HELD at the flight's fare and 50 REJECTED sold_out, none stays PENDING, and
// the flight's counters agree.
func TestSagaNoOversell(t *testing.T) {
	t.Parallel()
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			sagaNoOversell(t, startOn(t, dialect, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}))
		})
	}
}

func sagaNoOversell(t *testing.T, s *system) {
	f := s.flight(t, 100)
	ids := make([]string, 150)
	errs := make(chan error, len(ids))
	for i := range ids {
		go func() {
			b, err := s.bookings.Create(context.Background(), "u1", f, 1)
			ids[i] = b.ID
			errs <- err
		}()
	}
	for range ids {
		testenv.Fatal(t, "create", <-errs)
	}
	await(t, "every booking to leave PENDING", func() bool { return statuses(t, s, ids)[booking.Pending] == 0 })
	got := statuses(t, s, ids)
	if got[booking.Held] != 100 || got[booking.Rejected] != 50 {
		t.Fatalf("statuses %v, want 100 HELD and 50 REJECTED", got)
	}
	if avail, held, sold := s.seats(t, f); avail != 0 || held != 100 || sold != 0 {
		t.Fatalf("flight seats available %d held %d sold %d", avail, held, sold)
	}
	b, _ := s.bookings.Get(context.Background(), ids[0])
	if b.Status == booking.Held && (b.Total != 500000 || b.Currency != "INR" || b.HoldExpiresAt.IsZero()) {
		t.Fatalf("held booking without its price: %+v", b)
	}
}

// TestSagaCompensates cancels a held booking and lets another expire: both give their seats
// back to the flight.
func TestSagaCompensates(t *testing.T) {
	t.Parallel()
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			sagaCompensates(t, startOn(t, dialect, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}))
		})
	}
}

func sagaCompensates(t *testing.T, s *system) {
	f := s.flight(t, 10)
	ctx := context.Background()
	a, err := s.bookings.Create(ctx, "u1", f, 3)
	testenv.Fatal(t, "create", err)
	b, err := s.bookings.Create(ctx, "u2", f, 2)
	testenv.Fatal(t, "create", err)
	await(t, "both HELD", func() bool { return statuses(t, s, []string{a.ID, b.ID})[booking.Held] == 2 })
	if avail, held, _ := s.seats(t, f); avail != 5 || held != 5 {
		t.Fatalf("after two holds: available %d held %d", avail, held)
	}

	_, err = s.bookings.Apply(ctx, a.ID, booking.Cancel{})
	testenv.Fatal(t, "cancel", err)
	await(t, "cancelled seats back", func() bool { avail, held, _ := s.seats(t, f); return avail == 8 && held == 2 })

	expired := s.withClock(func() time.Time { return time.Now().Add(11 * time.Minute) })
	c, err := expired.Apply(ctx, b.ID, booking.Expire{})
	testenv.Fatal(t, "expire", err)
	if c.Booking.Status != booking.Expired {
		t.Fatalf("expire left %s", c.Booking.Status)
	}
	await(t, "expired seats back", func() bool { avail, held, _ := s.seats(t, f); return avail == 10 && held == 0 })
	await(t, "the release in the booking's history", func() bool {
		hist, err := s.bookings.History(ctx, b.ID)
		testenv.Fatal(t, "history", err)
		return hist[len(hist)-1].Cause == "seats_released"
	})
}
