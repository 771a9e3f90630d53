package api

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/flightbook/flightbook/groupcommit"
	"github.com/flightbook/flightbook/services/booking"
)

// Booking POSTs that arrive while others are being written are written together, in one
// transaction (groupcommit): under load, the database's cost per booking is mostly per
// transaction and per statement, not per row, and the MySQL store sends a batch's rows as one
// multi-row INSERT per table, in one round trip (docs/performance.md). A lone POST is written
// at once, alone.
const (
	// createShards is how many batches may be written at once. More than one, so that a batch
	// waiting for its commit does not hold up the POSTs behind it.
	createShards = 4
	// maxCreateBatch bounds a batch.
	maxCreateBatch = 64
)

// creator writes new bookings in batches.
type creator struct {
	store   booking.Store
	batches *groupcommit.Batcher[uint32, *creation]
	shards  uint32
	next    atomic.Uint32
}

// creation is one POST /bookings: its request, and its outcome once its batch has committed.
type creation struct {
	key      *booking.Key
	userID   string
	flightID int64
	seats    int

	out keyed
}

func newCreator(store booking.Store) *creator {
	c := &creator{store: store, shards: createShards}
	c.batches = groupcommit.New[uint32](maxCreateBatch, c.write)
	return c
}

// create writes one booking, with its idempotency key when not nil, in whichever batch it
// joins. Each booking has its own key, history and event in its batch's transaction, so a
// batch commits exactly what the POSTs one by one would have.
func (c *creator) create(ctx context.Context, in creation) (booking.Response, bool, booking.Booking, error) {
	item := &in
	shared, err := c.batches.Do(ctx, c.next.Add(1)%c.shards, item)
	switch {
	case err == nil:
		return item.out.resp, item.out.replayed, item.out.b, nil
	case !shared:
		// Alone in its batch, the error is its own. (Or ctx ended while the batch still runs:
		// then item belongs to the batch until it ends.)
		return booking.Response{}, false, booking.Booking{}, err
	}
	// The batch wrote nothing, and the error may be another POST's (its key in use, say), so
	// write this one again, alone.
	var k keyed
	err = c.store.InTx(ctx, func(tx booking.Tx) error { return k.run(ctx, tx, in.key, in.work(ctx)) })
	return k.resp, k.replayed, k.b, err
}

// write is a batch: every POST in one transaction. Any error fails them all.
func (c *creator) write(ctx context.Context, items []*creation) error {
	return c.store.InTx(ctx, func(tx booking.Tx) error {
		for _, it := range items {
			if err := it.out.run(ctx, tx, it.key, it.work(ctx)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (it *creation) work(ctx context.Context) func(tx booking.Tx) (int, booking.Booking, error) {
	return func(tx booking.Tx) (int, booking.Booking, error) {
		b, err := tx.Create(ctx, it.userID, it.flightID, it.seats)
		return http.StatusAccepted, b, err
	}
}
