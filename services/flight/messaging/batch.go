package messaging

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// maxHoldBatch bounds how many holds one transaction decides: enough that a hot flight's
// queue is drained in one or two commits, few enough that the transaction stays short and its
// statements' arrays small.
const maxHoldBatch = 100

// holdBatcher is group commit for seat holds. Every hold on a flight locks that flight's row,
// so holds for one flight commit one after another however many the router runs at once; on a
// popular flight that makes the row lock plus one commit per hold the limit. The batcher
// queues concurrent holds by flight and decides each flight's queue in one transaction: one
// lock of the row and one commit for the lot.
//
// It adds no delay of its own: a hold that finds its flight idle starts a batch at once, alone.
// Holds that arrive while that batch runs queue and form the next batch, so batches grow
// exactly as far as contention makes callers wait anyway. At most one batch per flight runs
// at a time (in this process), in a goroutine that lives while the flight's queue is not
// empty.
type holdBatcher struct {
	max int
	// run decides one batch in one transaction and returns what every call in it gets.
	run func(ctx context.Context, calls []*holdCall) error

	mu     sync.Mutex
	queues map[int64]*holdQueue // a flight is here exactly while its goroutine runs
}

// holdQueue is one flight's holds waiting for the running batch to finish.
type holdQueue struct {
	calls []*holdCall
}

// holdCall is one Hold delivery handed to the batcher.
type holdCall struct {
	ctx   context.Context
	d     consumer.Delivery
	ev    events.SeatHoldRequested
	done  chan holdResult // buffered: the batch never waits for a caller that gave up
	taken bool            // guarded by holdBatcher.mu: a batch has taken it off the queue
}

// holdResult is what a batch tells each of its calls.
type holdResult struct {
	err    error
	shared bool // the batch held other calls too, so err may be another message's fault
}

func newHoldBatcher(max int, run func(ctx context.Context, calls []*holdCall) error) *holdBatcher {
	return &holdBatcher{max: max, run: run, queues: map[int64]*holdQueue{}}
}

// submit queues c behind its flight's running batch, or starts a batch for it if there is none.
func (b *holdBatcher) submit(c *holdCall) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, busy := b.queues[c.ev.FlightID]
	if !busy {
		q = &holdQueue{}
		b.queues[c.ev.FlightID] = q
		go b.drain(c.ev.FlightID, q)
	}
	q.calls = append(q.calls, c)
}

// withdraw takes c off its queue if no batch has taken it yet. It reports whether it did, that
// is whether c is certain to have changed nothing.
func (b *holdBatcher) withdraw(c *holdCall) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.taken {
		return false
	}
	q := b.queues[c.ev.FlightID]
	q.calls = slices.DeleteFunc(q.calls, func(x *holdCall) bool { return x == c })
	c.taken = true // so that no batch takes it afterwards either
	return true
}

// drain runs batches for flightID until its queue is empty.
func (b *holdBatcher) drain(flightID int64, q *holdQueue) {
	for {
		b.mu.Lock()
		n := min(len(q.calls), b.max)
		if n == 0 {
			delete(b.queues, flightID)
			b.mu.Unlock()
			return
		}
		calls := slices.Clone(q.calls[:n])
		q.calls = slices.Delete(q.calls, 0, n)
		for _, c := range calls {
			c.taken = true
		}
		b.mu.Unlock()

		ctx, stop := batchContext(calls)
		err := b.runSafely(ctx, calls)
		stop()
		for _, c := range calls {
			c.done <- holdResult{err: err, shared: len(calls) > 1}
		}
	}
}

// runSafely runs a batch, turning a panic into the batch's error: the batch goroutine is not
// under the router's recover, and a bug must cost its messages, not the service.
func (b *holdBatcher) runSafely(ctx context.Context, calls []*holdCall) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &consumer.PanicError{Value: p, Stack: string(debug.Stack())}
		}
	}()
	return b.run(ctx, calls)
}

// batchContext returns the context a batch's transaction runs under: it carries the first
// caller's values (trace, logger) and is cancelled once every caller in the batch has given
// up, since then nobody waits for the result and the redeliveries will decide the holds
// afresh. One caller giving up must not cancel the others' transaction.
func batchContext(calls []*holdCall) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(calls[0].ctx))
	var waiting atomic.Int64
	waiting.Store(int64(len(calls)))
	stops := make([]func() bool, len(calls))
	for i, c := range calls {
		stops[i] = context.AfterFunc(c.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// holdBatched hands one decoded hold to the batcher and waits for its batch.
//
// When a batch of several fails, each of its callers runs its hold again alone rather than
// returning the batch's error. The error may belong to one message (an id the inbox refuses,
// a reply that cannot be encoded); returned to all, it would send the innocent messages back
// to the broker together with the guilty one, where they could well meet in a batch again
// and end up dead-lettered with it. Alone, the guilty message fails on its own and the others
// go through; and since the failed batch rolled back, nothing of it has to be undone. A
// failure that is not one message's (the database down) fails the lone runs too, so every
// caller still gets an error and the router redelivers.
func (h *Handlers) holdBatched(ctx context.Context, d consumer.Delivery, ev events.SeatHoldRequested) error {
	c := &holdCall{ctx: ctx, d: d, ev: ev, done: make(chan holdResult, 1)}
	h.holds.submit(c)
	select {
	case res := <-c.done:
		if res.err != nil && res.shared && ctx.Err() == nil {
			h.log.Warn("hold batch failed; holding alone", "msg_id", d.ID, "flight_id", ev.FlightID, "error", res.err)
			return h.holdOne(ctx, d, ev)
		}
		if res.err != nil {
			return fmt.Errorf("%s %s: %w", RouteHold, d.ID, res.err)
		}
		return nil
	case <-ctx.Done():
		// If a batch has taken the hold, it may still commit it; the redelivery that
		// follows this error then finds the message in the inbox and changes nothing.
		h.holds.withdraw(c)
		return fmt.Errorf("%s %s: waiting for the flight's hold batch: %w", RouteHold, d.ID, context.Cause(ctx))
	}
}

// holdBatch decides calls, all for one flight, in one transaction: it claims each message in
// the inbox, holds seats for those claimed for the first time with one HoldBatch (one lock
// of the flight row), queues one reply per such message in the outbox, and commits. Messages
// already processed, including a second delivery of one in the same batch, are claimed
// without effect and get no second reply. If it fails, nothing of the batch is written.
func (h *Handlers) holdBatch(ctx context.Context, calls []*holdCall) error {
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = c.d.ID
	}
	var (
		fresh []*holdCall // claimed for the first time, in arrival order
		held  []flight.Hold
	)
	err := h.inTx(ctx, func(tx Tx) error {
		first, err := tx.ClaimAll(ctx, events.ServiceFlight+"."+RouteHold, ids)
		if err != nil {
			return err
		}
		// Arrival order, not id order, decides who gets the last seats.
		fresh, held = fresh[:0], nil
		reqs := make([]flight.HoldRequest, 0, len(calls))
		for i, c := range calls {
			if first[i] {
				fresh = append(fresh, c)
				reqs = append(reqs, flight.HoldRequest{BookingID: c.ev.BookingID, FlightID: c.ev.FlightID, Seats: c.ev.Seats})
			}
		}
		if len(reqs) == 0 {
			return nil
		}
		hs, err := tx.HoldBatch(ctx, reqs)
		if err != nil {
			return err
		}
		msgs := make([]outbox.Message, len(hs))
		for i, res := range hs {
			reply := holdReply(fresh[i].ev, res)
			m, err := h.topo.Encode(reply)
			if err != nil {
				return fmt.Errorf("encode %s for %s: %w", reply.EventType(), fresh[i].d.ID, err)
			}
			msgs[i] = outbox.Message(m)
		}
		if err := tx.Queue(ctx, msgs...); err != nil {
			return err
		}
		held = hs
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch of %d holds on flight %d: %w", len(calls), calls[0].ev.FlightID, err)
	}
	for i, res := range held {
		h.logHold(fresh[i].d, fresh[i].ev, res)
	}
	if len(held) > 0 {
		h.notify()
	}
	return nil
}
