package messaging_test

import (
	"context"
	"io"
	"log/slog"
	"os"
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
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

type rig struct {
	pool     *pgxpool.Pool
	js       jetstream.JetStream
	booking  events.Topology // what the booking service would publish with
	flight   events.Topology
	handlers *messaging.Handlers
}

// database returns a pool of at most maxConns connections (0: pgxpool's default) on a fresh,
// migrated flight database.
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
func start(t testing.TB) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := discard
	pool := database(t, 0)

	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "nats", err)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	r := &rig{
		pool:    pool,
		js:      js,
		booking: events.Topology{Namespace: ns, Source: "flightbook/booking"},
		flight:  events.Topology{Namespace: ns, Source: "flightbook/flight"},
	}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, r.flight, events.StreamConfig{}))

	relay := outbox.NewPostgresRelay(pool, js, outbox.RelayConfig{LockName: ns}, log)
	router, err := consumer.New(nc, js, events.ServiceFlight, ns, consumer.Config{AckWait: 5 * time.Second, MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond}}, log)
	testenv.Fatal(t, "router", err)
	r.handlers = messaging.New(postgres.NewInventory(pool), r.flight, relay.Notify, log)
	r.handlers.Register(router)

	done := make(chan struct{}, 2)
	go func() { _ = relay.Run(ctx); done <- struct{}{} }()
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
		pool.Close()
	})
	return r
}

// seedFlight creates a flight with seats seats (and the catalogue it needs) and returns its id.
// It can be called more than once on one database.
func (r *rig) seedFlight(t testing.TB, seats int) int64 {
	t.Helper()
	return seedFlight(t, r.pool, seats)
}

func seedFlight(t testing.TB, pool *pgxpool.Pool, seats int) int64 {
	t.Helper()
	ctx := context.Background()
	var city, plane, id int64
	testenv.Fatal(t, "city", pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ($1, 'IN') RETURNING id`, "Delhi "+uuid.NewString()[:8]).Scan(&city))
	_, err := pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1) ON CONFLICT DO NOTHING`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', $1) RETURNING id`, seats).Scan(&plane))
	dep := time.Now().Add(72 * time.Hour)
	testenv.Fatal(t, "flight", pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', $4, $4) RETURNING id`, plane, dep, dep.Add(2*time.Hour), seats).Scan(&id))
	return id
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
	t.Parallel()
	r := start(t)
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
	var avail, heldSeats int
	testenv.Fatal(t, "counts", r.pool.QueryRow(context.Background(), `SELECT available_seats, held_seats FROM flights WHERE id = $1`, f).Scan(&avail, &heldSeats))
	if avail != 0 || heldSeats != 100 {
		t.Fatalf("available %d held %d", avail, heldSeats)
	}
}

// TestRedeliveryChangesNothing hands the same delivery to each handler twice, as JetStream
// does when an ack is lost: the second time neither the seats nor the outbox change.
func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	r := start(t)
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
		testenv.Fatal(t, "state", r.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), concat_ws(',', available_seats, held_seats, sold_seats) FROM flights WHERE id = $1`, f).Scan(&rows, &state))
		d.Attempt = 2
		testenv.Fatal(t, "redelivery", consumer.Invoke(ctx, s.handler, d))
		var rows2 int
		var state2 string
		testenv.Fatal(t, "state", r.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), concat_ws(',', available_seats, held_seats, sold_seats) FROM flights WHERE id = $1`, f).Scan(&rows2, &state2))
		if rows != rows2 || state != state2 {
			t.Fatalf("%T redelivered: outbox %d -> %d, seats %s -> %s", s.ev, rows, rows2, state, state2)
		}
	}
	got := r.replies(t, 3)
	for _, typ := range []string{events.SeatsHeld{}.EventType(), events.SeatsConfirmed{}.EventType(), events.SeatsReleased{}.EventType()} {
		if len(got[typ]) != 1 {
			t.Errorf("%s: %d replies, want 1", typ, len(got[typ]))
		}
	}
}
