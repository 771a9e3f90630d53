package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// holdDelivery is a first delivery of a SeatHoldRequested for a new booking on flightID.
func (r *rig) holdDelivery(t testing.TB, flightID int64) consumer.Delivery {
	t.Helper()
	return delivery(t, r.booking, events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: flightID, UserID: "u1", Seats: 1})
}

func delivery(t testing.TB, topo events.Topology, ev events.Event) consumer.Delivery {
	t.Helper()
	m, err := topo.Encode(ev)
	testenv.Fatal(t, "encode", err)
	return consumer.Delivery{ID: m.ID, Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1}
}

// written counts what the hold handlers wrote: holds, inbox entries and outbox rows.
func (r *rig) written(t *testing.T) (holds, claims, replies int) {
	t.Helper()
	testenv.Fatal(t, "count writes", r.db.QueryRowContext(context.Background(),
		`SELECT (SELECT count(*) FROM holds), (SELECT count(*) FROM inbox), (SELECT count(*) FROM outbox)`).Scan(&holds, &claims, &replies))
	return holds, claims, replies
}

func (r *rig) audit(t *testing.T, flightID int64) {
	t.Helper()
	a, err := r.inv.Audit(context.Background(), flightID)
	testenv.Fatal(t, "audit", err)
	if p := a.Problems(); len(p) > 0 {
		t.Fatalf("flight %d: %v", flightID, p)
	}
}

// lineUp makes the deliveries ds one batch: it locks the flight row, lets an opening hold
// start a batch that waits for the lock, hands ds to Hold while that batch waits, so that
// they queue behind it, and lets go of the lock once all of them are queued. It returns
// the error each of ds got, in order, and the opening hold's error. ctxs[i], if given, is
// the context ds[i] is handled in.
func (r *rig) lineUp(t *testing.T, flightID int64, ds []consumer.Delivery, ctxs ...context.Context) (errs []error, opening error) {
	t.Helper()
	return r.queueBehind(t, flightID, r.handlers.Pending,
		func() error { return r.handlers.Hold(context.Background(), r.holdDelivery(t, flightID)) },
		ds, func(consumer.Delivery) consumer.Handler { return r.handlers.Hold }, ctxs)
}

// lineUpCommands is lineUp for releases and confirms, with opening as the command that
// starts the batch and handler choosing each delivery's handler.
func (r *rig) lineUpCommands(t *testing.T, flightID int64, opening func() error, ds []consumer.Delivery, handler func(consumer.Delivery) consumer.Handler) (errs []error, opened error) {
	t.Helper()
	return r.queueBehind(t, flightID, r.handlers.PendingCommands, opening, ds, handler, nil)
}

// queueBehind is lineUp's and lineUpCommands' work; pending reports the batcher's queue.
func (r *rig) queueBehind(t *testing.T, flightID int64, pending func(int64) (int, bool), opening func() error,
	ds []consumer.Delivery, handler func(consumer.Delivery) consumer.Handler, ctxs []context.Context) (errs []error, opened error) {
	t.Helper()
	ctx := context.Background()
	gate, err := r.db.BeginTx(ctx, nil)
	testenv.Fatal(t, "begin gate", err)
	defer gate.Rollback() //nolint:errcheck // released below; this only covers a failed test
	testenv.Fatal(t, "lock flight", r.backend.lock(ctx, gate, flightID))
	first := make(chan error, 1)
	go func() { first <- opening() }()
	require.Eventually(t, func() bool { q, busy := pending(flightID); return busy && q == 0 }, 10*time.Second, time.Millisecond,
		"the opening batch did not start")

	errs = make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		c := ctx
		if i < len(ctxs) {
			c = ctxs[i]
		}
		wg.Go(func() { errs[i] = consumer.Invoke(c, handler(d), d) })
	}
	require.Eventually(t, func() bool { q, _ := pending(flightID); return q == len(ds) }, 10*time.Second, time.Millisecond,
		"the messages did not queue behind the running batch")
	testenv.Fatal(t, "release flight", gate.Rollback())
	wg.Wait()
	return errs, <-first
}

// heldBookings holds one seat on flightID for each of n new bookings, in one batch, and
// returns their ids.
func (r *rig) heldBookings(t *testing.T, flightID int64, n int) []string {
	t.Helper()
	holds := make([]consumer.Delivery, n)
	for i := range holds {
		holds[i] = r.holdDelivery(t, flightID)
	}
	testenv.Fatal(t, "hold", r.handlers.HoldTogether(context.Background(), holds))
	ids := make([]string, n)
	for i, d := range holds {
		ev, err := events.DecodeAs[events.SeatHoldRequested](d.Subject, d.Header, d.Data)
		testenv.Fatal(t, "decode", err)
		ids[i] = ev.BookingID
	}
	return ids
}

// TestHoldBatchesOnAHotFlight is a sell-out: 300 bookings want the 100 seats of one flight,
// and every request is delivered twice at once. Exactly 100 are held and 200 rejected, each
// booking gets one reply, and the flight's counters add up.
func TestHoldBatchesOnAHotFlight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 100)
		const bookings = 300
		var ds []consumer.Delivery
		for range bookings {
			d := r.holdDelivery(t, f)
			ds = append(ds, d, d)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for _, d := range ds {
			wg.Go(func() {
				if err := consumer.Invoke(context.Background(), r.handlers.Hold, d); err != nil {
					failed.Add(1)
					t.Errorf("hold: %v", err)
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}

		ctx := context.Background()
		var held, rejected, soldOut int
		testenv.Fatal(t, "count holds", r.db.QueryRowContext(ctx, `
		SELECT count(*) FILTER (WHERE status = 'held'), count(*) FILTER (WHERE status = 'rejected'),
		       count(*) FILTER (WHERE reason = 'sold_out')
		FROM holds WHERE flight_id = $1`, f).Scan(&held, &rejected, &soldOut))
		if held != 100 || rejected != 200 || soldOut != 200 {
			t.Fatalf("held %d, rejected %d (%d sold out); want 100 and 200 (200)", held, rejected, soldOut)
		}
		var replies, replied, heldReplies, txs int
		testenv.Fatal(t, "count replies", r.db.QueryRowContext(ctx, `
		SELECT count(*), count(DISTINCT aggregate_id), count(*) FILTER (WHERE subject LIKE '%.seats-held'),
		       count(DISTINCT created_at)
		FROM outbox`).Scan(&replies, &replied, &heldReplies, &txs))
		if replies != bookings || replied != bookings || heldReplies != 100 {
			t.Fatalf("%d replies for %d bookings, %d of them held; want one per booking, 100 held", replies, replied, heldReplies)
		}
		// now() is the transaction's start, so distinct timestamps count the transactions that
		// wrote replies: fewer than the bookings means holds were decided together.
		t.Logf("%d bookings decided in %d transactions", bookings, txs)
		if txs >= bookings {
			t.Fatalf("%d transactions for %d bookings: nothing was batched", txs, bookings)
		}
		_, claims, _ := r.written(t)
		if claims != bookings {
			t.Fatalf("%d inbox entries, want %d", claims, bookings)
		}
		r.audit(t, f)
	})
}

// TestHoldBatchFailureWritesNothing: when a batch's transaction fails after it has claimed the
// messages and held the seats (here the outbox refuses the replies), the claims, holds and
// seat counts of the whole batch are rolled back. A batch that repeats a message, and a batch
// of redeliveries, change nothing twice.
func TestHoldBatchFailureWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 10)
		ctx := context.Background()
		var ds []consumer.Delivery
		for range 5 {
			ds = append(ds, r.holdDelivery(t, f))
		}
		_, err := r.db.ExecContext(ctx, r.backend.breakOutbox)
		testenv.Fatal(t, "break outbox", err)
		err = r.handlers.HoldTogether(ctx, ds)
		if err == nil || !strings.Contains(err.Error(), "refuse_all") {
			t.Fatalf("batch with the outbox refusing: %v, want the outbox's refusal", err)
		}
		if holds, claims, replies := r.written(t); holds+claims+replies != 0 {
			t.Fatalf("failed batch left %d holds, %d claims, %d replies", holds, claims, replies)
		}
		if c, err := r.inv.SeatCounts(ctx, f); err != nil || c.Available != 10 {
			t.Fatalf("failed batch left seats %+v (%v), want 10 available", c, err)
		}

		_, err = r.db.ExecContext(ctx, r.backend.mendOutbox)
		testenv.Fatal(t, "mend outbox", err)
		testenv.Fatal(t, "batch with repeats", r.handlers.HoldTogether(ctx, append(slices.Clone(ds), ds[0], ds[3])))
		if holds, claims, replies := r.written(t); holds != 5 || claims != 5 || replies != 5 {
			t.Fatalf("batch of 5 (2 repeated) wrote %d holds, %d claims, %d replies; want 5 each", holds, claims, replies)
		}
		testenv.Fatal(t, "batch of redeliveries", r.handlers.HoldTogether(ctx, ds))
		if holds, claims, replies := r.written(t); holds != 5 || claims != 5 || replies != 5 {
			t.Fatalf("redelivered batch: %d holds, %d claims, %d replies; want 5 each", holds, claims, replies)
		}
		r.audit(t, f)
	})
}

// TestHoldBatchFailsForEveryCaller: when the database refuses every batch's writes (here, the
// outbox refuses rows), every caller of the batch gets an error, so every message is
// redelivered, and nothing is written; the redeliveries, once the fault is gone, hold.
func TestHoldBatchFailsForEveryCaller(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 10)
		ctx := context.Background()
		_, err := r.db.ExecContext(ctx, r.backend.breakOutbox)
		testenv.Fatal(t, "break outbox", err)

		var ds []consumer.Delivery
		for range 6 {
			ds = append(ds, r.holdDelivery(t, f))
		}
		errs, opening := r.lineUp(t, f, ds)
		for i, err := range append([]error{opening}, errs...) {
			if err == nil || !strings.Contains(err.Error(), "refuse_all") {
				t.Errorf("hold %d: %v, want the outbox's refusal", i, err)
			}
		}
		if holds, claims, replies := r.written(t); holds+claims+replies != 0 {
			t.Fatalf("failed batch left %d holds, %d claims, %d replies", holds, claims, replies)
		}
		r.audit(t, f)

		_, err = r.db.ExecContext(ctx, r.backend.mendOutbox)
		testenv.Fatal(t, "mend outbox", err)
		for _, d := range ds {
			d.Attempt = 2
			testenv.Fatal(t, "redelivery", consumer.Invoke(ctx, r.handlers.Hold, d))
		}
		if holds, claims, replies := r.written(t); holds != 6 || claims != 6 || replies != 6 {
			t.Fatalf("redeliveries wrote %d holds, %d claims, %d replies; want 6 each", holds, claims, replies)
		}
		r.audit(t, f)
	})
}

// TestHoldBatchIsolatesABadMessage: a message that fails a batch fails alone; the others of
// its batch are held when they retry on their own.
func TestHoldBatchIsolatesABadMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 10)
		var ds []consumer.Delivery
		for range 5 {
			ds = append(ds, r.holdDelivery(t, f))
		}
		bad := r.holdDelivery(t, f)
		bad.ID = strings.Repeat("z", 300)
		ds = append(ds[:2], append([]consumer.Delivery{bad}, ds[2:]...)...)

		errs, opening := r.lineUp(t, f, ds)
		testenv.Fatal(t, "opening hold", opening)
		for i, err := range errs {
			switch {
			case ds[i].ID == bad.ID && !errors.Is(err, inbox.ErrInvalid):
				t.Errorf("bad message: %v, want inbox.ErrInvalid", err)
			case ds[i].ID != bad.ID && err != nil:
				t.Errorf("hold %d failed with the bad message: %v", i, err)
			}
		}
		if holds, claims, replies := r.written(t); holds != 6 || claims != 6 || replies != 6 {
			t.Fatalf("wrote %d holds, %d claims, %d replies; want 6 each (the opening hold and 5)", holds, claims, replies)
		}
		r.audit(t, f)
	})
}

// TestHoldWaitingCallerCancelled: a caller whose context ends while its hold waits for the
// next batch returns at once, and its hold leaves the queue and is never decided.
func TestHoldWaitingCallerCancelled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		f := r.seedFlight(t, 10)
		ctx := context.Background()
		gate, err := r.db.BeginTx(ctx, nil)
		testenv.Fatal(t, "begin gate", err)
		defer gate.Rollback() //nolint:errcheck // only for a failed test
		testenv.Fatal(t, "lock flight", r.backend.lock(ctx, gate, f))

		opened := make(chan error, 1)
		go func() { opened <- r.handlers.Hold(ctx, r.holdDelivery(t, f)) }()
		require.Eventually(t, func() bool { q, busy := r.handlers.Pending(f); return busy && q == 0 }, 10*time.Second, time.Millisecond)

		waiting, cancel := context.WithCancel(ctx)
		got := make(chan error, 1)
		go func() { got <- r.handlers.Hold(waiting, r.holdDelivery(t, f)) }()
		require.Eventually(t, func() bool { q, _ := r.handlers.Pending(f); return q == 1 }, 10*time.Second, time.Millisecond)
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiting hold: %v, want context.Canceled", err)
		}
		if q, _ := r.handlers.Pending(f); q != 0 {
			t.Fatalf("%d holds still queued after the caller gave up", q)
		}
		testenv.Fatal(t, "release flight", gate.Rollback())
		testenv.Fatal(t, "opening hold", <-opened)
		if holds, claims, replies := r.written(t); holds != 1 || claims != 1 || replies != 1 {
			t.Fatalf("wrote %d holds, %d claims, %d replies; want only the opening hold's", holds, claims, replies)
		}
	})
}

// benchCallers is how many handler calls run at once in BenchmarkHoldHandler: a router (or
// several replicas' routers) handing a hot flight's requests to 64 workers.
const benchCallers = 64

// BenchmarkHoldHandler compares the SeatHoldRequested handler deciding each hold in its own
// transaction with the batched handler, on one hot flight with 64 concurrent callers, and
// measures the ceiling of one hold per commit: single-statement transactions decrementing the
// flight row (as BenchmarkRowUpdate in services/flight/postgres does; test code cannot be
// shared across packages). Each figure is in operations per second; compare batched holds/s
// with updates/s.
func BenchmarkHoldHandler(b *testing.B) {
	// 20 connections, as in the postgres package's benchmarks: enough for one-at-a-time to
	// keep the flight row's lock queue full.
	pool := database(b, 20)
	defer pool.Close()
	cat := postgres.NewCatalog(pool)
	topo := events.Topology{Namespace: "bench", Source: "flightbook/booking"}
	h := messaging.New(postgres.NewInventory(pool), events.Topology{Namespace: "bench", Source: "flightbook/flight"}, nil, discard)

	run := func(b *testing.B, unit string, op func(ctx context.Context, flightID int64, d consumer.Delivery) error) {
		f := seedFlight(b, cat, 50_000_000) // more seats than any run holds: every hold is granted
		ds := make([]consumer.Delivery, b.N)
		for i := range ds {
			ds[i] = delivery(b, topo, events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: f, UserID: "u1", Seats: 1})
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range benchCallers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
					if err := op(context.Background(), f, ds[i]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
		b.StopTimer()
		var held int
		testenv.Fatal(b, "held seats", pool.QueryRow(context.Background(), `SELECT held_seats FROM flights WHERE id = $1`, f).Scan(&held))
		if held != b.N {
			b.Fatalf("%d operations, %d seats held", b.N, held)
		}
	}

	b.Run("row-update", func(b *testing.B) {
		run(b, "updates/s", func(ctx context.Context, f int64, _ consumer.Delivery) error {
			// held_seats moves too: the balance CHECK refuses a bare decrement.
			_, err := pool.Exec(ctx, `UPDATE flights SET available_seats = available_seats - 1, held_seats = held_seats + 1 WHERE id = $1`, f)
			if err != nil {
				return fmt.Errorf("update: %w", err)
			}
			return nil
		})
	})
	b.Run("one-at-a-time", func(b *testing.B) {
		run(b, "holds/s", func(ctx context.Context, _ int64, d consumer.Delivery) error { return h.HoldAlone(ctx, d) })
	})
	b.Run("batched", func(b *testing.B) {
		run(b, "holds/s", func(ctx context.Context, _ int64, d consumer.Delivery) error { return h.Hold(ctx, d) })
	})
}

// TestCommandBatchIsolatesABadMessage lines releases and confirms for one flight up into one
// batch behind the flight's row lock: confirms of six held bookings, each delivered twice,
// releases of three, and a confirm for a booking the flight never held. The batch fails for
// that confirm; every message is then handled alone, so the good ones each change their hold
// once and reply once, and only the bad one is permanent (dead-lettered by the router).
func TestCommandBatchIsolatesABadMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		f := r.seedFlight(t, 20)
		booked := r.heldBookings(t, f, 10)

		var ds []consumer.Delivery
		handlers := map[string]consumer.Handler{}
		for _, id := range booked[1:7] {
			d := delivery(t, r.booking, events.SeatsConfirmRequested{BookingID: id, FlightID: f, Seats: 1})
			ds = append(ds, d, d)
			handlers[d.ID] = r.handlers.Confirm
		}
		for _, id := range booked[7:] {
			d := delivery(t, r.booking, events.SeatReleaseRequested{BookingID: id, FlightID: f, Seats: 1, Reason: events.ReleaseExpired})
			ds = append(ds, d)
			handlers[d.ID] = r.handlers.Release
		}
		bad := delivery(t, r.booking, events.SeatsConfirmRequested{BookingID: uuid.NewString(), FlightID: f, Seats: 1})
		handlers[bad.ID] = r.handlers.Confirm
		ds = append(ds[:5:5], append([]consumer.Delivery{bad}, ds[5:]...)...)

		errs, opened := r.lineUpCommands(t, f, func() error {
			return r.handlers.Release(ctx, delivery(t, r.booking, events.SeatReleaseRequested{BookingID: booked[0], FlightID: f, Seats: 1, Reason: events.ReleaseCancelled}))
		}, ds, func(d consumer.Delivery) consumer.Handler { return handlers[d.ID] })
		testenv.Fatal(t, "opening release", opened)
		for i, err := range errs {
			switch {
			case ds[i].ID == bad.ID && !consumer.IsPermanent(err):
				t.Errorf("confirm of an unknown hold: %v, want a permanent error", err)
			case ds[i].ID != bad.ID && err != nil:
				t.Errorf("message %d failed with the bad one: %v", i, err)
			}
		}

		c, err := r.inv.SeatCounts(ctx, f)
		testenv.Fatal(t, "seat counts", err)
		if c.Available != 14 || c.Held != 0 || c.Sold != 6 {
			t.Fatalf("seats %+v, want 14 available, 0 held, 6 sold", c)
		}
		var confirmed, released int
		testenv.Fatal(t, "count replies", r.db.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM outbox WHERE subject LIKE '%.seats-confirmed'),
		       (SELECT count(*) FROM outbox WHERE subject LIKE '%.seats-released')`).Scan(&confirmed, &released))
		if confirmed != 6 || released != 4 {
			t.Fatalf("%d SeatsConfirmed and %d SeatsReleased replies, want 6 and 4", confirmed, released)
		}
		// The failed batch had done the good messages' work before it rolled back; only what
		// committed is logged.
		if c, r := r.logs.count("seats confirmed"), r.logs.count("seats released"); c != 6 || r != 4 {
			t.Fatalf("logged %d confirms and %d releases, want 6 and 4, one per committed change", c, r)
		}
		r.audit(t, f)
	})
}

// TestConfirmBatch lines up a batch of nothing but confirms, which the PostgreSQL store
// confirms in its inbox claim's round trip: a redelivery of a confirm already done, bookings
// confirmed once, a delivery handed over twice, and one booking confirmed by two messages.
// The batch must not fail, each booking's seats are sold once, and each new message replies
// once.
func TestConfirmBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		f := r.seedFlight(t, 20)
		booked := r.heldBookings(t, f, 8)
		confirm := func(i int) consumer.Delivery {
			return delivery(t, r.booking, events.SeatsConfirmRequested{BookingID: booked[i], FlightID: f, Seats: 1})
		}
		done := confirm(0)
		testenv.Fatal(t, "first confirm", r.handlers.Confirm(ctx, done))

		redelivered := done
		redelivered.Attempt = 2
		twice := confirm(5)
		ds := []consumer.Delivery{redelivered, confirm(2), confirm(3), twice, confirm(4), twice, confirm(6), confirm(6)}
		errs, opened := r.lineUpCommands(t, f, func() error { return r.handlers.Confirm(ctx, confirm(1)) },
			ds, func(consumer.Delivery) consumer.Handler { return r.handlers.Confirm })
		testenv.Fatal(t, "opening confirm", opened)
		for i, err := range errs {
			if err != nil {
				t.Errorf("confirm %d: %v", i, err)
			}
		}
		if n := r.logs.count("batch failed; handling alone"); n != 0 {
			t.Errorf("%d messages were handled alone after their batch failed", n)
		}
		c, err := r.inv.SeatCounts(ctx, f)
		testenv.Fatal(t, "seat counts", err)
		if c.Sold != 7 || c.Held != 1 || c.Available != 12 {
			t.Fatalf("seats %+v, want 7 sold, 1 held", c)
		}
		var replies int
		testenv.Fatal(t, "count replies", r.db.QueryRowContext(ctx,
			`SELECT count(*) FROM outbox WHERE subject LIKE '%.seats-confirmed'`).Scan(&replies))
		if replies != 8 { // bookings 0 to 5 once each, booking 6 once per message
			t.Fatalf("%d SeatsConfirmed replies, want 8", replies)
		}
		r.audit(t, f)
	})
}
