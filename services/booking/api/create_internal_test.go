package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/testenv"
)

// gatedStore holds its first transaction until gate is closed, so a test can queue POSTs
// behind it into one batch.
type gatedStore struct {
	booking.Store
	gate  chan struct{}
	first sync.Once
}

func (g *gatedStore) InTx(ctx context.Context, fn func(booking.Tx) error) error {
	g.first.Do(func() { <-g.gate })
	return g.Store.InTx(ctx, fn)
}

// TestCreateBatchFailsAlone: a POST whose key is in progress fails the batch it shares, and
// the other POST of that batch is written again alone, and succeeds.
func TestCreateBatchFailsAlone(t *testing.T) {
	ctx := context.Background()
	db, err := mysql.Open(ctx, testenv.MySQL(t), 10, slog.New(slog.DiscardHandler))
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { db.Close() })
	store := mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil)
	key := func(k string) *booking.Key { return &booking.Key{UserID: "dora", Key: k, Hash: "h-" + k} }
	_, err = store.ClaimKey(ctx, *key("busy"))
	testenv.Fatal(t, "claim busy", err)

	gated := &gatedStore{Store: store, gate: make(chan struct{})}
	c := newCreator(gated)
	c.shards = 1
	type outcome struct {
		b   booking.Booking
		err error
	}
	post := func(k string) <-chan outcome {
		out := make(chan outcome, 1)
		go func() {
			_, _, b, err := c.create(ctx, creation{key: key(k), userID: "dora", flightID: 7, seats: 1})
			out <- outcome{b, err}
		}()
		return out
	}
	first := post("first")
	require.Eventually(t, func() bool { q, busy := c.batches.Pending(0); return busy && q == 0 }, 10*time.Second, time.Millisecond,
		"the first POST's batch did not start")
	ok, busy := post("ok"), post("busy")
	require.Eventually(t, func() bool { q, _ := c.batches.Pending(0); return q == 2 }, 10*time.Second, time.Millisecond,
		"the next two POSTs did not queue")
	close(gated.gate)

	if o := <-first; o.err != nil {
		t.Fatalf("first POST: %v", o.err)
	}
	if o := <-busy; !errors.Is(o.err, booking.ErrKeyInProgress) {
		t.Fatalf("POST on the key in progress: %v, want %v", o.err, booking.ErrKeyInProgress)
	}
	o := <-ok
	if o.err != nil {
		t.Fatalf("the POST that shared the failed batch: %v", o.err)
	}
	got, err := store.Get(ctx, o.b.ID)
	if err != nil || got.Status != booking.Pending {
		t.Fatalf("its booking: %+v %v", got, err)
	}
	r, err := store.ClaimKey(ctx, *key("ok"))
	if err != nil || r == nil || r.Status != 202 {
		t.Fatalf("its key: %+v %v, want its 202 stored", r, err)
	}
}
