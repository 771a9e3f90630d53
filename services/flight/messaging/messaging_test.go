package messaging_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pressly/goose/v3"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/migrate"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/services/flight/sqlite"
	"github.com/flightbook/flightbook/testenv"
)

type rig struct {
	db       *sql.DB // the flight database, for the tests' own reads and faults
	backend  backend
	catalog  flight.Catalog
	inv      flight.Inventory
	js       jetstream.JetStream
	booking  events.Topology // what the booking service would publish with
	flight   events.Topology
	handlers *messaging.Handlers
	relayed  bool // an outbox relay publishes the replies to the broker
	logs     *logCount
}

// logCount is a slog handler that counts the records the handlers log, by message, so a test
// can check that what they log matches what committed.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCount) WithGroup(string) slog.Handler            { return l }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	return nil
}

// count returns how many records with msg were logged.
func (l *logCount) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// backend is one storage adapter of the flight service, as the handlers' tests use it.
type backend struct {
	name string
	// open returns a fresh, migrated database: a handle for the tests' SQL, the stores over
	// it, handlers, and a relay of its outbox (nil while the adapter has none).
	open func(t testing.TB, js jetstream.JetStream, ns string, flight events.Topology) opened
	// lock makes tx hold flightID the way a hold does, so that holds queue behind it.
	lock func(ctx context.Context, tx *sql.Tx, flightID int64) error
	// breakOutbox makes the outbox refuse every row with an error naming refuse_all;
	// mendOutbox undoes it.
	breakOutbox, mendOutbox string
}

type opened struct {
	db       *sql.DB
	catalog  flight.Catalog
	inv      flight.Inventory
	handlers func(notify func(), log *slog.Logger) *messaging.Handlers
	relay    *outbox.Relay
}

var backends = []backend{
	{
		name: "postgres",
		open: func(t testing.TB, js jetstream.JetStream, ns string, topo events.Topology) opened {
			pool := database(t, 0)
			t.Cleanup(pool.Close)
			db := stdlib.OpenDBFromPool(pool)
			t.Cleanup(func() { db.Close() })
			o := opened{db: db, catalog: postgres.NewCatalog(pool), inv: postgres.NewInventory(pool)}
			o.handlers = func(notify func(), log *slog.Logger) *messaging.Handlers {
				return messaging.New(postgres.NewInventory(pool), topo, notify, log)
			}
			if js != nil {
				o.relay = outbox.NewPostgresRelay(pool, js, outbox.RelayConfig{LockName: ns}, discard)
			}
			return o
		},
		lock: func(ctx context.Context, tx *sql.Tx, flightID int64) error {
			_, err := tx.ExecContext(ctx, `SELECT 1 FROM flights WHERE id = $1 FOR UPDATE`, flightID)
			return err
		},
		breakOutbox: `ALTER TABLE outbox ADD CONSTRAINT refuse_all CHECK (false) NOT VALID`,
		mendOutbox:  `ALTER TABLE outbox DROP CONSTRAINT refuse_all`,
	},
	{
		name: "sqlite",
		open: func(t testing.TB, js jetstream.JetStream, ns string, topo events.Topology) opened {
			db, err := sqlite.Open(context.Background(), testenv.SQLite(t), discard)
			testenv.Fatal(t, "open", err)
			t.Cleanup(func() { db.Close() })
			o := opened{db: db, catalog: sqlite.NewCatalog(db), inv: sqlite.NewInventory(db)}
			o.handlers = func(notify func(), log *slog.Logger) *messaging.Handlers {
				return messaging.New(sqlite.NewInventory(db), topo, notify, log)
			}
			if js != nil {
				o.relay = outbox.NewSQLiteRelay(db, js, outbox.RelayConfig{LockName: ns}, discard)
			}
			return o
		},
		// Every SQLite transaction holds the write lock from BEGIN IMMEDIATE on.
		lock:        func(context.Context, *sql.Tx, int64) error { return nil },
		breakOutbox: `CREATE TRIGGER refuse_all BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refuse_all'); END`,
		mendOutbox:  `DROP TRIGGER refuse_all`,
	},
}

// forEachBackend runs test against a fresh rig of every backend, in parallel.
func forEachBackend(t *testing.T, test func(t *testing.T, r *rig)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, start(t, b))
		})
	}
}

// needRelay fails a test that reads the replies from the broker when r has no outbox relay.
func (r *rig) needRelay(t *testing.T) {
	t.Helper()
	if !r.relayed {
		t.Fatalf("no outbox relay for %s: the test needs one", r.backend.name)
	}
}

// database returns a pool of at most maxConns connections (0: pgxpool's default) on a fresh,
// migrated PostgreSQL flight database.
func database(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	testenv.Fatal(t, "parse url", err)
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Fatal(t, "pool", err)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	testenv.Fatal(t, "migrate", migrate.Up(context.Background(), goose.DialectPostgres, db, os.DirFS("../postgres/migrations"), discard))
	return pool
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs the flight service's messaging side (relay + router) against fresh servers.
func start(t testing.TB, b backend) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "nats", err)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	r := &rig{
		backend: b,
		js:      js,
		booking: events.Topology{Namespace: ns, Source: "flightbook/booking"},
		flight:  events.Topology{Namespace: ns, Source: "flightbook/flight"},
	}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, r.flight, events.StreamConfig{}))
	o := b.open(t, js, ns, r.flight)
	r.db, r.catalog, r.inv = o.db, o.catalog, o.inv

	router, err := consumer.New(nc, js, events.ServiceFlight, ns, consumer.Config{AckWait: 5 * time.Second, MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond}}, discard)
	testenv.Fatal(t, "router", err)
	notify := func() {}
	done := make(chan struct{}, 2)
	if o.relay != nil {
		r.relayed, notify = true, o.relay.Notify
		go func() { _ = o.relay.Run(ctx); done <- struct{}{} }()
	} else {
		done <- struct{}{}
	}
	r.logs = &logCount{n: map[string]int{}}
	r.handlers = o.handlers(notify, slog.New(r.logs))
	r.handlers.Register(router)
	go func() {
		if err := router.Run(ctx); err != nil {
			t.Errorf("router: %v", err)
		}
		done <- struct{}{}
	}()
	select {
	case <-router.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		nc.Close()
	})
	return r
}

// seedFlight creates a flight with seats seats (and the catalogue it needs) through the
// catalogue and returns its id. It can be called more than once on one database.
func (r *rig) seedFlight(t testing.TB, seats int) int64 {
	t.Helper()
	return seedFlight(t, r.catalog, seats)
}

func seedFlight(t testing.TB, cat flight.Catalog, seats int) int64 {
	t.Helper()
	ctx := context.Background()
	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi " + uuid.NewString()[:8], Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		if _, err := cat.Airport(ctx, code); err != nil {
			_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
			testenv.Fatal(t, "airport", err)
		}
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: seats})
	testenv.Fatal(t, "airplane", err)
	dep := time.Now().Add(72 * time.Hour)
	f, err := cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: "DEL", ArrivalAirport: "BOM",
		DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 500000, Currency: "INR"})
	testenv.Fatal(t, "flight", err)
	return f.ID
}

func (r *rig) publish(t testing.TB, ev events.Event) events.Message {
	t.Helper()
	m, err := r.booking.Encode(ev)
	testenv.Fatal(t, "encode", err)
	_, err = r.js.PublishMsg(context.Background(), m.NATS())
	testenv.Fatal(t, "publish", err)
	return m
}

// replies collects the flight service's saga replies by type until want have arrived.
func (r *rig) replies(t *testing.T, want int) map[string][]events.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := r.js.OrderedConsumer(ctx, r.flight.StreamName(events.StreamFlight), jetstream.OrderedConsumerConfig{})
	testenv.Fatal(t, "ordered consumer", err)
	got := map[string][]events.Envelope{}
	for n := 0; n < want; n++ {
		m, err := c.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", n, want, err)
		}
		env, err := events.Decode(m.Subject(), m.Headers(), m.Data())
		testenv.Fatal(t, "decode reply", err)
		got[env.Type] = append(got[env.Type], env)
	}
	return got
}

func TestHoldsThroughTheBroker(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		r.needRelay(t)
		f := r.seedFlight(t, 100)
		for range 150 {
			r.publish(t, events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: f, UserID: "u1", Seats: 1})
		}
		got := r.replies(t, 150)
		held, rejected := got[events.SeatsHeld{}.EventType()], got[events.SeatHoldRejected{}.EventType()]
		if len(held) != 100 || len(rejected) != 50 {
			t.Fatalf("held %d, rejected %d; want 100 and 50", len(held), len(rejected))
		}
		for _, e := range rejected {
			if e.Event.(events.SeatHoldRejected).Reason != events.RejectSoldOut {
				t.Fatalf("rejected for %s, want sold_out", e.Event.(events.SeatHoldRejected).Reason)
			}
		}
		c, err := r.inv.SeatCounts(context.Background(), f)
		testenv.Fatal(t, "counts", err)
		if c.Available != 0 || c.Held != 100 {
			t.Fatalf("available %d held %d", c.Available, c.Held)
		}
	})
}

// TestRedeliveryChangesNothing hands the same delivery to each handler twice, as JetStream
// does when an ack is lost: the second time neither the seats nor the outbox change.
func TestRedeliveryChangesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 10)
		id := uuid.NewString()
		ctx := context.Background()
		steps := []struct {
			ev      events.Event
			handler consumer.Handler
		}{
			{events.SeatHoldRequested{BookingID: id, FlightID: f, UserID: "u1", Seats: 3}, r.handlers.Hold},
			{events.SeatsConfirmRequested{BookingID: id, FlightID: f, Seats: 3}, r.handlers.Confirm},
			{events.SeatReleaseRequested{BookingID: id, FlightID: f, Seats: 3, Reason: events.ReleaseCancelled}, r.handlers.Release},
		}
		for _, s := range steps {
			m, err := r.booking.Encode(s.ev)
			testenv.Fatal(t, "encode", err)
			d := consumer.Delivery{ID: m.ID, Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1}
			testenv.Fatal(t, "first delivery", s.handler(ctx, d))
			var rows int
			var state string
			testenv.Fatal(t, "state", r.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outbox), available_seats || ',' || held_seats || ',' || sold_seats FROM flights WHERE id = $1`, f).Scan(&rows, &state))
			d.Attempt = 2
			testenv.Fatal(t, "redelivery", consumer.Invoke(ctx, s.handler, d))
			var rows2 int
			var state2 string
			testenv.Fatal(t, "state", r.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outbox), available_seats || ',' || held_seats || ',' || sold_seats FROM flights WHERE id = $1`, f).Scan(&rows2, &state2))
			if rows != rows2 || state != state2 {
				t.Fatalf("%T redelivered: outbox %d -> %d, seats %s -> %s", s.ev, rows, rows2, state, state2)
			}
		}
		r.needRelay(t)
		got := r.replies(t, 3)
		for _, typ := range []string{events.SeatsHeld{}.EventType(), events.SeatsConfirmed{}.EventType(), events.SeatsReleased{}.EventType()} {
			if len(got[typ]) != 1 {
				t.Errorf("%s: %d replies, want 1", typ, len(got[typ]))
			}
		}
	})
}
