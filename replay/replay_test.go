package replay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/replay"
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// broker is a test namespace on the NATS server with its streams.
type broker struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	booking events.Topology // what the booking service publishes with
	flight  events.Topology
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "nats", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	b := &broker{
		nc: nc, js: js,
		booking: events.Topology{Namespace: ns, Source: "flightbook/booking"},
		flight:  events.Topology{Namespace: ns, Source: "flightbook/flight"},
	}
	testenv.Fatal(t, "streams", events.EnsureStreams(context.Background(), js, b.flight, events.StreamConfig{}))
	return b
}

func (b *broker) publish(t *testing.T, ev events.Event) events.Message {
	t.Helper()
	m, err := b.booking.Encode(ev)
	testenv.Fatal(t, "encode", err)
	_, err = b.js.PublishMsg(context.Background(), m.NATS())
	testenv.Fatal(t, "publish", err)
	return m
}

// count is how many messages of the BOOKING stream are on subject.
func (b *broker) count(t *testing.T, subject string) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), b.booking.StreamName(events.StreamBooking))
	testenv.Fatal(t, "stream", err)
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	testenv.Fatal(t, "stream info", err)
	return info.State.Subjects[subject]
}

// flightDB returns a fresh, migrated flight database with one flight of 5 seats, the same
// catalogue every time, so that two databases can be compared row by row.
func flightDB(t *testing.T) (*pgxpool.Pool, int64) {
	t.Helper()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 4, discard)
	testenv.Fatal(t, "postgres", err)
	t.Cleanup(pool.Close)
	var city, plane, id int64
	testenv.Fatal(t, "city", pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ('Delhi', 'IN') RETURNING id`).Scan(&city))
	_, err = pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1)`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', 5) RETURNING id`).Scan(&plane))
	dep := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	testenv.Fatal(t, "flight", pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', 5, 5) RETURNING id`, plane, dep, dep.Add(2*time.Hour)).Scan(&id))
	return pool, id
}

// checksums hashes every table of the database, rows in a fixed order.
func checksums(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	testenv.Fatal(t, "tables", err)
	var tables []string
	for rows.Next() {
		var name string
		testenv.Fatal(t, "scan", rows.Scan(&name))
		tables = append(tables, name)
	}
	testenv.Fatal(t, "tables", rows.Err())
	sums := map[string]string{}
	for _, table := range tables {
		var sum string
		testenv.Fatal(t, "checksum "+table, pool.QueryRow(ctx, fmt.Sprintf(
			`SELECT coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '') FROM %q t`, table)).Scan(&sum))
		sums[table] = sum
	}
	return sums
}

// state is what the saga decided in a flight database, without the ids and times that differ
// from one run to another: seats, holds, the inbox, and the replies queued.
func state(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var out strings.Builder
	for _, q := range []string{
		`SELECT id, total_seats, available_seats FROM flights ORDER BY id`,
		`SELECT booking_id, flight_id, seats, status FROM holds ORDER BY booking_id`,
		`SELECT consumer, msg_id FROM inbox ORDER BY consumer, msg_id`,
		`SELECT subject, payload::text FROM outbox ORDER BY subject, payload::text`,
	} {
		rows, err := pool.Query(context.Background(), q)
		testenv.Fatal(t, q, err)
		for rows.Next() {
			vals, err := rows.Values()
			testenv.Fatal(t, "values", err)
			fmt.Fprintln(&out, vals...)
		}
		testenv.Fatal(t, q, rows.Err())
		out.WriteString("--\n")
	}
	return out.String()
}

// TestReplayIntoHandler runs the flight service's hold route live, then replays the stream
// into the hold handler: into the same database it changes nothing and says so; into a fresh
// database it rebuilds the same state.
func TestReplayIntoHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t)
	pool, flightID := flightDB(t)

	// The live run: one delivery at a time, so its decisions follow stream order as the
	// replay's do (5 seats: 2 and 2 held, 2 rejected, 1 held, 1 rejected).
	relay := outbox.NewPostgresRelay(pool, b.js, outbox.RelayConfig{LockName: b.flight.Namespace}, discard)
	router, err := consumer.New(b.nc, b.js, events.ServiceFlight, b.flight.Namespace,
		consumer.Config{Concurrency: 1, MaxAckPending: 1, AckWait: 5 * time.Second}, discard)
	testenv.Fatal(t, "router", err)
	messaging.New(postgres.NewInventory(pool), b.flight, relay.Notify, discard).Register(router)
	route, ok := router.Route(messaging.RouteHold)
	if !ok {
		t.Fatal("no hold route")
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- relay.Run(rctx) }()
	go func() { done <- router.Run(rctx) }()

	bookings := make([]string, 0, 5)
	for _, seats := range []int{2, 2, 2, 1, 1} {
		id := uuid.NewString()
		bookings = append(bookings, id)
		b.publish(t, events.SeatHoldRequested{BookingID: id, FlightID: flightID, UserID: "u1", Seats: seats})
	}
	await(t, "five holds decided and their replies published", func() bool {
		var n int
		testenv.Fatal(t, "inbox", pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&n))
		st, err := relay.Stats(ctx)
		testenv.Fatal(t, "outbox stats", err)
		return n == 5 && st.Pending == 0
	})
	stop()
	for range 2 {
		testenv.Fatal(t, "stop", <-done)
	}
	var avail int
	testenv.Fatal(t, "seats", pool.QueryRow(ctx, `SELECT available_seats FROM flights WHERE id = $1`, flightID).Scan(&avail))
	if avail != 0 {
		t.Fatalf("%d seats available after the live run, want 0", avail)
	}
	// The replay needs no durable consumer, and must not bring one back.
	bookingStream := b.booking.StreamName(events.StreamBooking)
	testenv.Fatal(t, "delete durable", b.js.DeleteConsumer(ctx, bookingStream, route.Durable))

	before := checksums(t, pool)
	original := state(t, pool)
	opts := replay.Options{Stream: bookingStream, Subject: route.Subject}
	consumerName := replay.InboxConsumer(events.ServiceFlight, messaging.RouteHold)

	// Without asking the inbox first every message reaches the handler, whose own inbox
	// makes it a no-op.
	sum, err := replay.Run(ctx, b.js, opts, replay.ToHandler(route.Handler, nil))
	testenv.Fatal(t, "replay without inbox check", err)
	if sum.Read != 5 || sum.Matched != 5 || sum.Failed != 0 {
		t.Fatalf("replay without inbox check: %s", sum)
	}
	if after := checksums(t, pool); !maps.Equal(before, after) {
		t.Fatalf("replaying into the handler changed the database:\nbefore %v\nafter  %v", before, after)
	}
	// Asking it first, the summary says they were all processed already.
	sum, err = replay.Run(ctx, b.js, opts, replay.ToHandler(route.Handler, replay.PostgresInbox(pool, consumerName)))
	testenv.Fatal(t, "replay", err)
	if got := sum.String(); got != "read 5 (stream sequences 1..5), matched 5, applied 0, skipped 5 (already processed), failed 0" {
		t.Fatalf("replay: %s", got)
	}
	if after := checksums(t, pool); !maps.Equal(before, after) {
		t.Fatal("replaying with the inbox check changed the database")
	}
	if _, err := b.js.Consumer(ctx, bookingStream, route.Durable); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the deleted durable is back after the replay: %v", err)
	}

	// A fresh database, as after losing the flight database: a dry run changes nothing and
	// counts all five, the replay rebuilds what the live run decided.
	fresh, _ := flightDB(t)
	h := messaging.New(postgres.NewInventory(fresh), b.flight, nil, discard)
	hold, _ := h.Handler(messaging.RouteHold)
	target := replay.ToHandler(hold, replay.PostgresInbox(fresh, consumerName))
	empty := checksums(t, fresh)
	dry := opts
	dry.DryRun = true
	sum, err = replay.Run(ctx, b.js, dry, target)
	testenv.Fatal(t, "dry run", err)
	if sum.Matched != 5 || sum.Applied != 5 || sum.Skipped != 0 || !strings.Contains(sum.String(), "would apply 5") {
		t.Fatalf("dry run: %s", sum)
	}
	if !maps.Equal(empty, checksums(t, fresh)) {
		t.Fatal("a dry run changed the database")
	}
	sum, err = replay.Run(ctx, b.js, opts, target)
	testenv.Fatal(t, "replay into a fresh database", err)
	if sum.Applied != 5 || sum.Skipped != 0 || sum.Failed != 0 {
		t.Fatalf("replay into a fresh database: %s", sum)
	}
	if got := state(t, fresh); got != original {
		t.Fatalf("state rebuilt by the replay differs from the live run's:\nlive:\n%s\nreplayed:\n%s", original, got)
	}

	// The filters: one booking; the messages from the fourth on.
	one := opts
	one.BookingID = bookings[2]
	sum, err = replay.Run(ctx, b.js, one, target)
	testenv.Fatal(t, "replay one booking", err)
	if sum.Read != 5 || sum.Matched != 1 || sum.Skipped != 1 {
		t.Fatalf("replay of booking %s: %s", bookings[2], sum)
	}
	from := opts
	from.FromSeq = 4
	sum, err = replay.Run(ctx, b.js, from, target)
	testenv.Fatal(t, "replay from sequence 4", err)
	if sum.Read != 2 || sum.FirstSeq != 4 || sum.LastSeq != 5 {
		t.Fatalf("replay from sequence 4: %s", sum)
	}
}

// TestReplayRepublish copies messages to another subject: once, however often it runs within
// the duplicate window.
func TestReplayRepublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t)
	hold := b.booking.Subject(events.SeatHoldRequested{}.Subject())
	var ids []string
	for i := range 3 {
		ids = append(ids, b.publish(t, events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: 1, UserID: "u1", Seats: i + 1}).ID)
	}
	b.publish(t, events.SeatReleaseRequested{BookingID: uuid.NewString(), FlightID: 1, Seats: 1, Reason: events.ReleaseCancelled})
	to := b.booking.Subject("booking.replayed.hold")
	opts := replay.Options{Stream: b.booking.StreamName(events.StreamBooking), Subject: hold, DryRun: true}

	sum, err := replay.Run(ctx, b.js, opts, replay.Republish(b.js, to))
	testenv.Fatal(t, "dry run", err)
	if sum.Applied != 3 || b.count(t, to) != 0 {
		t.Fatalf("dry run: %s, %d copies stored", sum, b.count(t, to))
	}
	opts.DryRun = false
	for run := 1; run <= 2; run++ {
		sum, err := replay.Run(ctx, b.js, opts, replay.Republish(b.js, to))
		testenv.Fatal(t, "republish", err)
		want := replay.Summary{Read: 3, Matched: 3, Applied: 3, FirstSeq: 1, LastSeq: 3}
		if run == 2 {
			want.Applied, want.Skipped = 0, 3
		}
		if sum.String() != want.String() {
			t.Fatalf("run %d: %s, want %s", run, sum, want)
		}
		if n := b.count(t, to); n != 3 {
			t.Fatalf("run %d: %d copies stored, want 3", run, n)
		}
	}
	s, err := b.js.Stream(ctx, opts.Stream)
	testenv.Fatal(t, "stream", err)
	m, err := s.GetLastMsgForSubject(ctx, to)
	testenv.Fatal(t, "last copy", err)
	id := ids[len(ids)-1]
	if m.Header.Get(replay.HeaderReplayMsgID) != id || m.Header.Get(nats.MsgIdHdr) != replay.CopyID(to, id) ||
		m.Header.Get(events.HeaderID) != id || m.Header.Get(replay.HeaderReplayOf) != opts.Stream+":3" {
		t.Fatalf("copy of %s has headers %v", id, m.Header)
	}
}

// TestReplayFailuresAndStart: a failing message is tried again, then counted and listed, and
// the replay goes on; Since starts at the first message stored at or after a time.
func TestReplayFailuresAndStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t)
	var bookings []string
	for range 4 {
		id := uuid.NewString()
		bookings = append(bookings, id)
		b.publish(t, events.SeatHoldRequested{BookingID: id, FlightID: 1, UserID: "u1", Seats: 1})
	}
	stream := b.booking.StreamName(events.StreamBooking)
	tries := map[string]int{}
	h := func(_ context.Context, d consumer.Delivery) error {
		ev, err := events.DecodeAs[events.SeatHoldRequested](d.Subject, d.Header, d.Data)
		if err != nil {
			return err
		}
		tries[ev.BookingID]++
		switch ev.BookingID {
		case bookings[1]:
			return errors.New("database down")
		case bookings[2]:
			if tries[ev.BookingID] == 1 {
				return errors.New("deadlock") // the second attempt succeeds
			}
		case bookings[3]:
			return consumer.Permanent(errors.New("undecodable"))
		}
		return nil
	}
	var progress bytes.Buffer
	opts := replay.Options{Stream: stream, Progress: &progress, ProgressEvery: time.Nanosecond}
	sum, err := replay.Run(ctx, b.js, opts, replay.ToHandler(h, nil))
	testenv.Fatal(t, "replay", err)
	if sum.Applied != 2 || sum.Failed != 2 || len(sum.Failures) != 2 || sum.Failures[0].Seq != 2 || sum.Failures[1].Seq != 4 {
		t.Fatalf("replay: %s, failures %v", sum, sum.Failures)
	}
	if tries[bookings[1]] != replay.DefaultAttempts || tries[bookings[2]] != 2 || tries[bookings[3]] != 1 {
		t.Fatalf("attempts %v: want %d for a failing message, 2 for one failing once, 1 for a permanent error", tries, replay.DefaultAttempts)
	}
	if !strings.Contains(progress.String(), "replay: 4 of 4 read, at sequence 4 of 4") {
		t.Fatalf("progress:\n%s", progress.String())
	}

	s, err := b.js.Stream(ctx, stream)
	testenv.Fatal(t, "stream", err)
	third, err := s.GetMsg(ctx, 3)
	testenv.Fatal(t, "third message", err)
	opts = replay.Options{Stream: stream, Since: third.Time}
	sum, err = replay.Run(ctx, b.js, opts, replay.ToHandler(func(context.Context, consumer.Delivery) error { return nil }, nil))
	testenv.Fatal(t, "replay since", err)
	if sum.Read != 2 || sum.FirstSeq != 3 {
		t.Fatalf("replay since the third message: %s", sum)
	}
	if _, err := replay.Run(ctx, b.js, replay.Options{Stream: stream, FromSeq: 1, Since: third.Time}, nil); err == nil {
		t.Fatal("a start sequence and a start time were both accepted")
	}
	// Interrupted while handling the third message: it is not counted, so resuming after
	// LastSeq handles it.
	ictx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	sum, err = replay.Run(ictx, b.js, replay.Options{Stream: stream}, replay.ToHandler(func(ctx context.Context, d consumer.Delivery) error {
		if d.Sequence == 3 {
			interrupt()
			return ctx.Err()
		}
		return nil
	}, nil))
	if !errors.Is(err, context.Canceled) || sum.Read != 2 || sum.Applied != 2 || sum.LastSeq != 2 {
		t.Fatalf("interrupted replay: %s, %v", sum, err)
	}
	// Past the end of the stream: nothing to read, and no wait for it.
	sum, err = replay.Run(ctx, b.js, replay.Options{Stream: stream, FromSeq: 100}, nil)
	if err != nil || sum.Read != 0 {
		t.Fatalf("replay past the end: %s, %v", sum, err)
	}
}

// await polls cond until it holds or 30 seconds pass.
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
