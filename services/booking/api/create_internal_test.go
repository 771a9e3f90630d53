package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/groupcommit"
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

// BenchmarkCreate writes bookings with idempotency keys from 32 goroutines per core, as the
// POST handler does: one transaction per booking ("alone", the batches held to one POST) and
// in batches of the POSTs that arrive together ("batched", the default). It measures the
// database's side of a POST, without HTTP.
//
//	go test -run '^$' -bench Create -benchtime 3s ./services/booking/api/
func BenchmarkCreate(b *testing.B) {
	for _, batched := range []bool{false, true} {
		name := "alone"
		if batched {
			name = "batched"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db, err := mysql.Open(ctx, testenv.MySQL(b), 20, slog.New(slog.DiscardHandler))
			testenv.Fatal(b, "open", err)
			b.Cleanup(func() { db.Close() })
			c := newCreator(mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil))
			if !batched {
				c.batches = groupcommit.New[uint32](1, c.write)
				c.shards = 1 << 16 // a batch each: the shards only keep them apart
			}
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := &booking.Key{UserID: "bench", Key: uuid.NewString(), Hash: "h"}
					if _, _, _, err := c.create(ctx, creation{key: k, userID: "bench", flightID: 7, seats: 1}); err != nil {
						b.Errorf("create: %v", err)
						return
					}
					n.Add(1)
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "bookings/s")
		})
	}
}
