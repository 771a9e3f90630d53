package messaging_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/testenv"
)

// heldDelivery is a first delivery of SeatsHeld for booking id.
func heldDelivery(t *testing.T, id string) consumer.Delivery {
	t.Helper()
	m, err := testTopo.Encode(events.SeatsHeld{BookingID: id, FlightID: 7, Seats: 1, UnitPrice: 5000, Total: 5000, Currency: "EUR"})
	testenv.Fatal(t, "encode", err)
	return consumer.Delivery{ID: m.ID, Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1}
}

// onShard creates n PENDING bookings whose replies share one batch queue.
func onShard(t *testing.T, store booking.Store, shard uint32, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		b, err := store.Create(context.Background(), "alice", 7, 1)
		testenv.Fatal(t, "create", err)
		if bookingmessaging.Shard(b.ID) == shard {
			ids = append(ids, b.ID)
		}
	}
	return ids
}

// unknownOnShard is a booking id on shard that no booking has.
func unknownOnShard(shard uint32) string {
	for {
		if id := uuid.NewString(); bookingmessaging.Shard(id) == shard {
			return id
		}
	}
}

// replyWrites counts what the SeatsHeld replies wrote: inbox entries, HELD bookings and
// BookingHeld events.
func replyWrites(t *testing.T, db *sql.DB) (claims, held, announced int) {
	t.Helper()
	testenv.Fatal(t, "count writes", db.QueryRowContext(context.Background(), `
		SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM bookings WHERE status = 'HELD'),
		       (SELECT count(*) FROM outbox WHERE subject = ?)`, events.BookingHeld{}.Subject()).Scan(&claims, &held, &announced))
	return claims, held, announced
}

// TestReplyBatchIsAllOrNothing: a batch of replies is one transaction. When one reply in it
// cannot apply (its booking is unknown), the whole batch writes nothing; a batch that repeats
// a reply, and a batch of redeliveries, change each booking once.
func TestReplyBatchIsAllOrNothing(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store booking.Store, db *sql.DB) {
		ctx := context.Background()
		h := bookingmessaging.New(store, testTopo, testLog)
		var ds []consumer.Delivery
		for range 5 {
			b, err := store.Create(ctx, "alice", 7, 1)
			testenv.Fatal(t, "create", err)
			ds = append(ds, heldDelivery(t, b.ID))
		}
		err := h.HeldTogether(ctx, append(ds[:3:3], heldDelivery(t, uuid.NewString()), ds[3], ds[4]))
		if !errors.Is(err, booking.ErrNotFound) {
			t.Fatalf("batch with an unknown booking: %v, want ErrNotFound", err)
		}
		if claims, held, announced := replyWrites(t, db); claims+held+announced != 0 {
			t.Fatalf("failed batch left %d inbox entries, %d HELD bookings, %d BookingHeld", claims, held, announced)
		}

		testenv.Fatal(t, "batch with repeats", h.HeldTogether(ctx, append(ds[:5:5], ds[0], ds[2])))
		if claims, held, announced := replyWrites(t, db); claims != 5 || held != 5 || announced != 5 {
			t.Fatalf("batch of 5 (2 repeated): %d inbox entries, %d HELD, %d BookingHeld; want 5 each", claims, held, announced)
		}
		testenv.Fatal(t, "batch of redeliveries", h.HeldTogether(ctx, ds))
		if claims, held, announced := replyWrites(t, db); claims != 5 || held != 5 || announced != 5 {
			t.Fatalf("redelivered batch: %d inbox entries, %d HELD, %d BookingHeld; want 5 each", claims, held, announced)
		}
	})
}

// TestReplyBatchIsolatesABadMessage lines replies up into one batch behind a booking's row
// lock: replies for ten bookings, each delivered twice, and one for a booking nobody has. The
// batch fails for the unknown booking; every reply is then applied alone, so the ten bookings
// are HELD once each and only the bad reply is permanent (dead-lettered by the router).
func TestReplyBatchIsolatesABadMessage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store booking.Store, db *sql.DB) {
		ctx := context.Background()
		h := bookingmessaging.New(store, testTopo, testLog)
		const shard = 1
		ids := onShard(t, store, shard, 11)
		opening, ids := ids[0], ids[1:]

		// Hold the opening booking's row (SQLite: the database's one write lock) so that the
		// opening reply's batch waits, and the others queue behind it.
		gate, err := db.BeginTx(ctx, nil)
		testenv.Fatal(t, "begin gate", err)
		defer gate.Rollback() //nolint:errcheck // released below; this only covers a failed test
		if _, isSQLite := store.(*sqlite.Store); !isSQLite {
			_, err = gate.ExecContext(ctx, `SELECT id FROM bookings WHERE id = ? FOR UPDATE`, opening)
			testenv.Fatal(t, "lock booking", err)
		}
		held, _ := h.Handler(bookingmessaging.RouteHeld)
		opened := make(chan error, 1)
		go func() { opened <- held(ctx, heldDelivery(t, opening)) }()
		require.Eventually(t, func() bool { q, busy := h.Pending(shard); return busy && q == 0 }, 10*time.Second, time.Millisecond,
			"the opening reply's batch did not start")

		var ds []consumer.Delivery
		for _, id := range ids {
			d := heldDelivery(t, id)
			ds = append(ds, d, d)
		}
		bad := heldDelivery(t, unknownOnShard(shard))
		ds = append(ds[:7:7], append([]consumer.Delivery{bad}, ds[7:]...)...)
		errs := make([]error, len(ds))
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Go(func() { errs[i] = consumer.Invoke(ctx, held, d) })
		}
		require.Eventually(t, func() bool { q, _ := h.Pending(shard); return q == len(ds) }, 10*time.Second, time.Millisecond,
			"the replies did not queue behind the running batch")
		testenv.Fatal(t, "release gate", gate.Rollback())
		wg.Wait()
		testenv.Fatal(t, "opening reply", <-opened)

		for i, err := range errs {
			if ds[i].ID == bad.ID {
				if !consumer.IsPermanent(err) || !errors.Is(err, booking.ErrNotFound) {
					t.Errorf("reply for the unknown booking: %v, want permanent ErrNotFound", err)
				}
				continue
			}
			if err != nil {
				t.Errorf("reply %d: %v", i, err)
			}
		}
		if claims, held, announced := replyWrites(t, db); claims != 11 || held != 11 || announced != 11 {
			t.Fatalf("%d inbox entries, %d HELD, %d BookingHeld; want 11 each", claims, held, announced)
		}
		for _, id := range append(ids, opening) {
			b, err := store.Get(ctx, id)
			if err != nil || b.Status != booking.Held || b.Version != 2 {
				t.Fatalf("booking %s: %+v %v, want HELD at version 2", id, b, err)
			}
		}
	})
}
