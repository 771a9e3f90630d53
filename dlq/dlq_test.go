package dlq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/dlq"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// rig runs the flight service's seat-hold route against fresh servers, with a handler that
// panics on every delivery while broken is set: the bug an operator fixes before redriving.
type rig struct {
	ns       string
	pool     *pgxpool.Pool
	js       jetstream.JetStream
	booking  events.Topology
	handlers *messaging.Handlers
	queue    *dlq.Queue
	broken   atomic.Bool
	flight   int64
}

func start(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	pool, err := postgres.Open(ctx, testenv.Postgres(t), 5, log)
	testenv.Fatal(t, "postgres", err)
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url)
	testenv.Fatal(t, "nats", err)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	flightTopo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, flightTopo, events.StreamConfig{}))

	r := &rig{
		ns: ns, pool: pool, js: js,
		booking:  events.Topology{Namespace: ns, Source: "flightbook/booking"},
		handlers: messaging.New(postgres.NewInventory(pool), flightTopo, nil, log),
		queue:    dlq.New(js, ns, log),
	}
	r.broken.Store(true)
	router, err := consumer.New(nc, js, events.ServiceFlight, ns,
		consumer.Config{AckWait: 5 * time.Second, MaxDeliver: 2, Backoff: []time.Duration{20 * time.Millisecond}}, log)
	testenv.Fatal(t, "router", err)
	router.Handle(messaging.RouteHold, flightTopo.StreamName(events.StreamBooking), flightTopo.Subject(events.SeatHoldRequested{}.Subject()),
		func(ctx context.Context, d consumer.Delivery) error {
			if r.broken.Load() {
				panic("inventory bug")
			}
			return r.handlers.Hold(ctx, d)
		})
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("router: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
		nc.Close()
		pool.Close()
	})
	r.flight = r.seedFlight(t, 10)
	return r
}

func (r *rig) seedFlight(t *testing.T, seats int) int64 {
	t.Helper()
	ctx := context.Background()
	var city, plane, id int64
	testenv.Fatal(t, "city", r.pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ('Delhi', 'IN') RETURNING id`).Scan(&city))
	_, err := r.pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1)`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", r.pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', $1) RETURNING id`, seats).Scan(&plane))
	dep := time.Now().Add(72 * time.Hour)
	testenv.Fatal(t, "flight", r.pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', $4, $4) RETURNING id`, plane, dep, dep.Add(2*time.Hour), seats).Scan(&id))
	return id
}

// hold publishes a SeatHoldRequested for a new booking, as the booking service would.
func (r *rig) hold(t *testing.T, seats int) events.Message {
	t.Helper()
	m, err := r.booking.Encode(events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: r.flight, UserID: "u1", Seats: seats})
	testenv.Fatal(t, "encode", err)
	_, err = r.js.PublishMsg(context.Background(), m.NATS())
	testenv.Fatal(t, "publish", err)
	return m
}

// state is the flight's seats and the number of replies queued in the outbox: what a handler
// run changes.
func (r *rig) state(t *testing.T) string {
	t.Helper()
	var s string
	testenv.Fatal(t, "state", r.pool.QueryRow(context.Background(),
		`SELECT concat_ws(',', available_seats, held_seats, sold_seats, (SELECT count(*) FROM outbox)) FROM flights WHERE id = $1`, r.flight).Scan(&s))
	return s
}

// awaitDLQ waits until the DLQ lists n entries and returns them.
func (r *rig) awaitDLQ(t *testing.T, n int) []dlq.Entry {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := r.queue.List(context.Background(), dlq.Filter{})
		testenv.Fatal(t, "list", err)
		if len(got) == n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("DLQ holds %d entries after 30s, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, not waiting for a guess
	}
}

func bookingOf(t *testing.T, m events.Message) string {
	t.Helper()
	var p struct {
		BookingID string `json:"booking_id"`
	}
	testenv.Fatal(t, "payload", json.Unmarshal(m.Data, &p))
	return p.BookingID
}

func TestListShowsTheCrashedMessageWithItsError(t *testing.T) {
	t.Parallel()
	r := start(t)
	m := r.hold(t, 3)
	got := r.awaitDLQ(t, 1)
	e := got[0]
	if e.Service != events.ServiceFlight || e.Route != messaging.RouteHold {
		t.Errorf("service/route %s/%s, want flight/%s", e.Service, e.Route, messaging.RouteHold)
	}
	if e.MsgID != m.ID || e.OriginalSubject != m.Subject || e.Type != (events.SeatHoldRequested{}).EventType() {
		t.Errorf("msg id %q subject %q type %q; want %q %q SeatHoldRequested", e.MsgID, e.OriginalSubject, e.Type, m.ID, m.Subject)
	}
	if e.BookingID != bookingOf(t, m) {
		t.Errorf("booking id %q, want %q", e.BookingID, bookingOf(t, m))
	}
	if !strings.Contains(e.Error, "handler panicked: inventory bug") || e.Deliveries != 2 || e.Permanent {
		t.Errorf("error %q after %d deliveries (permanent %v); want the panic after 2", e.Error, e.Deliveries, e.Permanent)
	}
	if e.Seq == 0 || e.Time.IsZero() || e.OriginalSeq == 0 || e.OriginalStream != r.booking.StreamName(events.StreamBooking) {
		t.Errorf("seq %d time %s original %s:%d", e.Seq, e.Time, e.OriginalStream, e.OriginalSeq)
	}

	shown, err := r.queue.Show(context.Background(), e.Seq)
	testenv.Fatal(t, "show", err)
	if !bytes.Equal(shown.Data, m.Data) || shown.Header.Get(events.HeaderID) != m.ID || shown.Header.Get(consumer.HeaderDLQError) == "" {
		t.Errorf("show: payload %s, ce-id %q, dlq error %q", shown.Data, shown.Header.Get(events.HeaderID), shown.Header.Get(consumer.HeaderDLQError))
	}
	if _, err := r.queue.Show(context.Background(), e.Seq+100); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("show of a missing sequence: %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		f    dlq.Filter
		want int
	}{
		{dlq.Filter{Service: events.ServiceFlight}, 1},
		{dlq.Filter{Service: events.ServiceBooking}, 0},
		{dlq.Filter{Route: messaging.RouteHold}, 1},
		{dlq.Filter{Route: messaging.RouteConfirm}, 0},
		{dlq.Filter{BookingID: bookingOf(t, m)}, 1},
		{dlq.Filter{BookingID: uuid.NewString()}, 0},
	} {
		got, err := r.queue.List(context.Background(), tc.f)
		testenv.Fatal(t, "list", err)
		if len(got) != tc.want {
			t.Errorf("List(%+v): %d entries, want %d", tc.f, len(got), tc.want)
		}
	}
	if _, err := r.queue.List(context.Background(), dlq.Filter{Service: ">"}); err == nil {
		t.Error("a wildcard service was accepted as a filter")
	}
}

func TestRedriveAfterTheFix(t *testing.T) {
	t.Parallel()
	r := start(t)
	ctx := context.Background()
	m := r.hold(t, 3)
	entries := r.awaitDLQ(t, 1)
	before := r.state(t)
	if before != "10,0,0,0" {
		t.Fatalf("state before redrive %s, want the untouched flight", before)
	}

	var mu sync.Mutex
	var seen []consumer.Delivery
	handlerFor := func(service, route string) (consumer.Handler, bool) {
		if service != events.ServiceFlight || route != messaging.RouteHold {
			return nil, false
		}
		return func(ctx context.Context, d consumer.Delivery) error {
			mu.Lock()
			seen = append(seen, d)
			mu.Unlock()
			if r.broken.Load() {
				panic("inventory bug")
			}
			return r.handlers.Hold(ctx, d)
		}, true
	}

	// Dry run: nothing runs, nothing moves.
	sum, err := r.queue.Redrive(ctx, entries, handlerFor, dlq.RedriveOptions{DryRun: true})
	testenv.Fatal(t, "dry run", err)
	if sum.Read != 1 || sum.Skipped != 1 || sum.Applied != 0 || len(seen) != 0 {
		t.Fatalf("dry run: %s, handler ran %d times", sum, len(seen))
	}
	r.awaitDLQ(t, 1)

	// Before the fix the handler still crashes: the entry stays.
	sum, err = r.queue.Redrive(ctx, entries, handlerFor, dlq.RedriveOptions{})
	testenv.Fatal(t, "redrive before the fix", err)
	var pe *consumer.PanicError
	if sum.Failed != 1 || !errors.As(sum.Results[0].Err, &pe) {
		t.Fatalf("redrive before the fix: %s, %v", sum, sum.Results[0].Err)
	}
	r.awaitDLQ(t, 1)
	if got := r.state(t); got != before {
		t.Fatalf("failed redrive changed the state: %s -> %s", before, got)
	}

	r.broken.Store(false)
	sum, err = r.queue.Redrive(ctx, entries, handlerFor, dlq.RedriveOptions{})
	testenv.Fatal(t, "redrive", err)
	if sum.Read != 1 || sum.Applied != 1 || sum.Failed != 0 || sum.Results[0].Outcome != dlq.Redriven {
		t.Fatalf("redrive: %s %+v", sum, sum.Results)
	}
	if left, err := r.queue.List(ctx, dlq.Filter{}); err != nil || len(left) != 0 {
		t.Fatalf("DLQ after redrive: %d entries, %v", len(left), err)
	}
	after := r.state(t)
	if after != "7,3,0,1" {
		t.Fatalf("state after redrive %s, want 3 seats held and one reply queued", after)
	}
	// The handler got the original message: its id, subject, headers and payload.
	d := seen[len(seen)-1]
	if d.ID != m.ID || d.Subject != m.Subject || !bytes.Equal(d.Data, m.Data) ||
		d.Header.Get(nats.MsgIdHdr) != m.ID || d.Header.Get(events.HeaderType) != m.Header.Get(events.HeaderType) ||
		d.Header.Get(consumer.HeaderDLQError) != "" || d.Attempt != 3 {
		t.Fatalf("redriven delivery %+v, want the original message %s on %s", d, m.ID, m.Subject)
	}

	// Redriving the same entries again: they are gone, no handler runs.
	runs := len(seen)
	sum, err = r.queue.Redrive(ctx, entries, handlerFor, dlq.RedriveOptions{})
	testenv.Fatal(t, "second redrive", err)
	if sum.Skipped != 1 || sum.Results[0].Outcome != dlq.SkippedGone || len(seen) != runs {
		t.Fatalf("second redrive: %s %+v", sum, sum.Results)
	}

	// The same message dead-lettered a second time (say, a lost ack) and redriven: the
	// handler runs, and its inbox makes it change nothing.
	again := &nats.Msg{Subject: entries[0].Subject, Header: maps.Clone(entries[0].Header), Data: entries[0].Data}
	_, err = r.js.PublishMsg(ctx, again, jetstream.WithMsgID("copy-"+m.ID))
	testenv.Fatal(t, "dead-letter again", err)
	copies := r.awaitDLQ(t, 1)
	sum, err = r.queue.Redrive(ctx, copies, handlerFor, dlq.RedriveOptions{})
	testenv.Fatal(t, "redrive the copy", err)
	if sum.Applied != 1 || len(seen) != runs+1 {
		t.Fatalf("redrive of the copy: %s, handler runs %d -> %d", sum, runs, len(seen))
	}
	if got := r.state(t); got != after {
		t.Fatalf("redriving twice changed the state: %s -> %s", after, got)
	}
	r.awaitDLQ(t, 0)
}

func TestRedriveSkipsRoutesWithoutAHandler(t *testing.T) {
	t.Parallel()
	r := start(t)
	r.hold(t, 1)
	entries := r.awaitDLQ(t, 1)
	none := func(string, string) (consumer.Handler, bool) { return nil, false }
	sum, err := r.queue.Redrive(context.Background(), entries, none, dlq.RedriveOptions{})
	testenv.Fatal(t, "redrive", err)
	if sum.Skipped != 1 || sum.Results[0].Outcome != dlq.SkippedNoHand {
		t.Fatalf("redrive without a handler: %s %+v", sum, sum.Results)
	}
	r.awaitDLQ(t, 1)
}

func TestPurgeLeavesARecord(t *testing.T) {
	t.Parallel()
	r := start(t)
	ctx := context.Background()
	drop, keep := r.hold(t, 1), r.hold(t, 2)
	r.awaitDLQ(t, 2)
	before := r.state(t)

	f := dlq.Filter{BookingID: bookingOf(t, drop)}
	entries, err := r.queue.List(ctx, f)
	testenv.Fatal(t, "list", err)
	if len(entries) != 1 {
		t.Fatalf("%d entries for booking %s", len(entries), f.BookingID)
	}
	opts := dlq.PurgeOptions{By: "ops@example", Reason: "booking cancelled by hand"}

	dry := opts
	dry.DryRun = true
	sum, err := r.queue.Purge(ctx, entries, dry)
	testenv.Fatal(t, "dry run", err)
	if sum.Skipped != 1 || sum.Applied != 0 || sum.Results[0].Outcome != dlq.WouldPurge {
		t.Fatalf("dry run: %s", sum)
	}
	r.awaitDLQ(t, 2)
	purged := dlq.PurgedSubject(r.ns, events.ServiceFlight, messaging.RouteHold)
	stream, err := r.js.Stream(ctx, r.queue.StreamName())
	testenv.Fatal(t, "stream", err)
	if _, err := stream.GetLastMsgForSubject(ctx, purged); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("dry run left a purge record: %v", err)
	}

	sum, err = r.queue.Purge(ctx, entries, opts)
	testenv.Fatal(t, "purge", err)
	if sum.Read != 1 || sum.Applied != 1 || sum.Failed != 0 {
		t.Fatalf("purge: %s %+v", sum, sum.Results)
	}
	left := r.awaitDLQ(t, 1)
	if left[0].MsgID != keep.ID {
		t.Fatalf("purge removed the wrong entry: %s is left, want %s", left[0].MsgID, keep.ID)
	}
	if _, err := r.queue.Show(ctx, entries[0].Seq); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("show of a purged entry: %v", err)
	}

	rec, err := stream.GetLastMsgForSubject(ctx, purged)
	testenv.Fatal(t, "purge record", err)
	var pr dlq.PurgeRecord
	testenv.Fatal(t, "decode record", json.Unmarshal(rec.Data, &pr))
	if pr.MsgID != drop.ID || pr.BookingID != f.BookingID || pr.DLQSeq != entries[0].Seq || pr.By != opts.By ||
		pr.Reason != opts.Reason || !strings.Contains(pr.Error, "inventory bug") || pr.PurgedAt.IsZero() {
		t.Fatalf("purge record %+v", pr)
	}
	// The record lives in the DLQ stream but is no dead letter.
	if _, err := r.queue.Show(ctx, rec.Sequence); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("show of the purge record: %v", err)
	}

	// Purging again finds nothing to do and records nothing more.
	sum, err = r.queue.Purge(ctx, entries, opts)
	testenv.Fatal(t, "second purge", err)
	if sum.Skipped != 1 || sum.Results[0].Outcome != dlq.SkippedGone {
		t.Fatalf("second purge: %s", sum)
	}
	again, err := stream.GetLastMsgForSubject(ctx, purged)
	testenv.Fatal(t, "purge record", err)
	if again.Sequence != rec.Sequence {
		t.Fatalf("second purge wrote another record at %d", again.Sequence)
	}
	if got := r.state(t); got != before {
		t.Fatalf("purge changed the flight: %s -> %s", before, got)
	}
}

func TestDeliveryWithoutMsgID(t *testing.T) {
	t.Parallel()
	// A message published with neither Nats-Msg-Id nor ce-id was known by its stream and
	// sequence; redriving it must not invent a Nats-Msg-Id.
	e := dlq.Entry{
		MsgID: "BOOKING:42", OriginalStream: "BOOKING", OriginalSeq: 42, OriginalSubject: "booking.x", Deliveries: 5,
		Header: nats.Header{consumer.HeaderDLQError: {"boom"}, nats.MsgIdHdr: {"flight_x:7"}, "Custom": {"a", "b"}},
		Data:   []byte("{}"),
	}
	d := e.Delivery()
	if d.ID != "BOOKING:42" || d.Header.Get(nats.MsgIdHdr) != "" || d.Header.Get(consumer.HeaderDLQError) != "" ||
		len(d.Header["Custom"]) != 2 || d.Attempt != 6 || d.Sequence != 42 || d.Subject != "booking.x" {
		t.Fatalf("delivery %+v", d)
	}
}
