// Package groupcommit runs the work of concurrent callers together, one batch per key at a
// time, so that work which would otherwise take one database transaction each shares one
// transaction and one commit.
//
// A Batcher adds no delay of its own: a call that finds its key idle starts a batch at once,
// alone. Calls that arrive while that batch runs queue and form the next batch, so batches
// grow exactly as far as contention makes callers wait anyway. At most one batch per key runs
// at a time (in this process), in a goroutine that lives while the key's queue is not empty.
//
// The flight service uses it for seat holds, keyed by flight: every hold on a flight locks
// that flight's row, so holds on a popular flight commit one after another however many run
// at once. The booking service uses it for the flight service's replies, keyed by a shard of
// the booking id, to spend one commit on many replies.
package groupcommit

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/flightbook/flightbook/consumer"
)

// Batcher queues items by key and hands each key's queue, up to max items at a time, to run.
type Batcher[K comparable, T any] struct {
	max int
	// run does one batch's work, typically in one transaction, and returns what every call
	// in the batch gets.
	run func(ctx context.Context, items []T) error

	mu     sync.Mutex
	queues map[K]*queue[T] // a key is here exactly while its goroutine runs
}

// queue is one key's calls waiting for the running batch to finish.
type queue[T any] struct {
	calls []*call[T]
}

// call is one item handed to the batcher by Do.
type call[T any] struct {
	ctx   context.Context
	item  T
	done  chan result // buffered: the batch never waits for a caller that gave up
	taken bool        // guarded by Batcher.mu: a batch has taken it off the queue
}

type result struct {
	err    error
	shared bool
}

// New returns a Batcher that runs batches of at most max items with run.
func New[K comparable, T any](max int, run func(ctx context.Context, items []T) error) *Batcher[K, T] {
	if max < 1 {
		max = 1
	}
	return &Batcher[K, T]{max: max, run: run, queues: map[K]*queue[T]{}}
}

// Do queues item behind key's running batch (or starts a batch for it if there is none) and
// waits for its batch to finish. It returns the batch's error, and whether the batch held
// other items too, in which case the error may be another item's fault: a caller can then do
// its item again alone, since the failed batch wrote nothing (run must make it so).
//
// When ctx ends first, Do returns its cause. If a batch had already taken the item, that
// batch may still commit it; the caller must be able to tell on a retry (an inbox does).
func (b *Batcher[K, T]) Do(ctx context.Context, key K, item T) (shared bool, err error) {
	c := &call[T]{ctx: ctx, item: item, done: make(chan result, 1)}
	b.submit(key, c)
	select {
	case res := <-c.done:
		return res.shared, res.err
	case <-ctx.Done():
		b.withdraw(key, c)
		return false, fmt.Errorf("waiting for the batch: %w", context.Cause(ctx))
	}
}

// Pending reports how many calls wait for key's next batch, and whether a batch of key is
// running, so that tests can line calls up into one batch without sleeping.
func (b *Batcher[K, T]) Pending(key K) (queued int, busy bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, busy := b.queues[key]
	if !busy {
		return 0, false
	}
	return len(q.calls), true
}

func (b *Batcher[K, T]) submit(key K, c *call[T]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, busy := b.queues[key]
	if !busy {
		q = &queue[T]{}
		b.queues[key] = q
		go b.drain(key, q)
	}
	q.calls = append(q.calls, c)
}

// withdraw takes c off its queue if no batch has taken it yet.
func (b *Batcher[K, T]) withdraw(key K, c *call[T]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.taken {
		return
	}
	q := b.queues[key]
	q.calls = slices.DeleteFunc(q.calls, func(x *call[T]) bool { return x == c })
	c.taken = true // so that no batch takes it afterwards either
}

// drain runs batches for key until its queue is empty.
func (b *Batcher[K, T]) drain(key K, q *queue[T]) {
	for {
		b.mu.Lock()
		n := min(len(q.calls), b.max)
		if n == 0 {
			delete(b.queues, key)
			b.mu.Unlock()
			return
		}
		calls := slices.Clone(q.calls[:n])
		q.calls = slices.Delete(q.calls, 0, n)
		for _, c := range calls {
			c.taken = true
		}
		b.mu.Unlock()

		items := make([]T, len(calls))
		for i, c := range calls {
			items[i] = c.item
		}
		ctx, stop := batchContext(calls)
		err := b.runSafely(ctx, items)
		stop()
		for _, c := range calls {
			c.done <- result{err: err, shared: len(calls) > 1}
		}
	}
}

// runSafely runs a batch, turning a panic into the batch's error: the batch goroutine is not
// under the router's recover, and a bug must cost its messages, not the service.
func (b *Batcher[K, T]) runSafely(ctx context.Context, items []T) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &consumer.PanicError{Value: p, Stack: string(debug.Stack())}
		}
	}()
	return b.run(ctx, items)
}

// batchContext returns the context a batch runs under: it carries the first caller's values
// (trace, logger) and is cancelled once every caller in the batch has given up, since then
// nobody waits for the result and the redeliveries will do the work afresh. One caller giving
// up must not cancel the others' transaction.
func batchContext[T any](calls []*call[T]) (context.Context, context.CancelFunc) {
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
