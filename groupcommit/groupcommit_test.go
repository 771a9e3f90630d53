package groupcommit_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/groupcommit"
)

// gated is a run function whose batches wait at a gate: each batch reports its items on
// batches and then waits for a value on release, returning it.
type gated struct {
	batches chan []int
	release chan error
}

func newGated() *gated {
	return &gated{batches: make(chan []int, 100), release: make(chan error)}
}

func (g *gated) run(ctx context.Context, items []int) error {
	g.batches <- slices.Clone(items)
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type outcome struct {
	item   int
	shared bool
	err    error
}

// call runs Do in a goroutine and reports its outcome on out.
func call(b *groupcommit.Batcher[string, int], ctx context.Context, key string, item int, out chan<- outcome) {
	go func() {
		shared, err := b.Do(ctx, key, item)
		out <- outcome{item, shared, err}
	}()
}

func awaitQueued(t *testing.T, b *groupcommit.Batcher[string, int], key string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { q, busy := b.Pending(key); return busy && q == n }, 5*time.Second, time.Millisecond,
		"%d calls did not queue on %q", n, key)
}

// TestQueuedCallsShareTheNextBatch: a call on an idle key runs alone at once; calls arriving
// while it runs wait and then run together, at most max at a time, in arrival order.
func TestQueuedCallsShareTheNextBatch(t *testing.T) {
	t.Parallel()
	g := newGated()
	b := groupcommit.New[string](3, g.run)
	out := make(chan outcome, 10)

	call(b, context.Background(), "f1", 0, out)
	require.Equal(t, []int{0}, <-g.batches, "the first call runs alone, without waiting")
	for i := 1; i <= 5; i++ {
		call(b, context.Background(), "f1", i, out)
		awaitQueued(t, b, "f1", i)
	}
	g.release <- nil
	require.Equal(t, []int{1, 2, 3}, <-g.batches, "the queued calls run together, at most max")
	g.release <- nil
	require.Equal(t, []int{4, 5}, <-g.batches)
	g.release <- nil

	for range 6 {
		o := <-out
		require.NoError(t, o.err)
		require.Equal(t, o.item != 0, o.shared, "item %d: shared", o.item)
	}
	require.Eventually(t, func() bool { _, busy := b.Pending("f1"); return !busy }, 5*time.Second, time.Millisecond,
		"the key's goroutine did not end with its queue empty")
}

// TestKeysRunIndependently: a batch waiting on one key does not hold up another key.
func TestKeysRunIndependently(t *testing.T) {
	t.Parallel()
	g := newGated()
	b := groupcommit.New[string](10, g.run)
	out := make(chan outcome, 2)
	call(b, context.Background(), "a", 1, out)
	require.Equal(t, []int{1}, <-g.batches)
	call(b, context.Background(), "b", 2, out)
	require.Equal(t, []int{2}, <-g.batches, "key b waited for key a's batch")
	g.release <- nil
	g.release <- nil
	for range 2 {
		require.NoError(t, (<-out).err)
	}
}

// TestBatchErrorReachesEveryCaller: every call of a failed batch gets its error, marked
// shared when the batch held more than one.
func TestBatchErrorReachesEveryCaller(t *testing.T) {
	t.Parallel()
	g := newGated()
	b := groupcommit.New[string](10, g.run)
	out := make(chan outcome, 4)
	call(b, context.Background(), "f", 0, out)
	<-g.batches
	for i := 1; i <= 3; i++ {
		call(b, context.Background(), "f", i, out)
	}
	awaitQueued(t, b, "f", 3)
	g.release <- nil
	require.ElementsMatch(t, []int{1, 2, 3}, <-g.batches)
	boom := errors.New("boom")
	g.release <- boom
	for range 4 {
		o := <-out
		if o.item == 0 {
			require.NoError(t, o.err)
			continue
		}
		require.ErrorIs(t, o.err, boom, "item %d", o.item)
		require.True(t, o.shared, "item %d", o.item)
	}
}

// TestPanicBecomesTheBatchError: a panic in run fails the batch's calls instead of the process.
func TestPanicBecomesTheBatchError(t *testing.T) {
	t.Parallel()
	b := groupcommit.New[string](10, func(context.Context, []int) error { panic("bug") })
	_, err := b.Do(context.Background(), "f", 1)
	var p *consumer.PanicError
	require.ErrorAs(t, err, &p)
	require.Equal(t, "bug", p.Value)
}

// TestGivenUpCallLeavesTheQueue: a queued call whose context ends returns at once and is not
// part of the next batch.
func TestGivenUpCallLeavesTheQueue(t *testing.T) {
	t.Parallel()
	g := newGated()
	b := groupcommit.New[string](10, g.run)
	out := make(chan outcome, 3)
	call(b, context.Background(), "f", 0, out)
	<-g.batches
	ctx, cancel := context.WithCancel(context.Background())
	call(b, ctx, "f", 1, out)
	awaitQueued(t, b, "f", 1)
	call(b, context.Background(), "f", 2, out)
	awaitQueued(t, b, "f", 2)
	cancel()
	o := <-out
	require.Equal(t, 1, o.item)
	require.ErrorIs(t, o.err, context.Canceled)
	awaitQueued(t, b, "f", 1)
	g.release <- nil
	require.Equal(t, []int{2}, <-g.batches, "the given-up call was still batched")
	g.release <- nil
	for range 2 {
		require.NoError(t, (<-out).err)
	}
}

// TestBatchContextEndsWhenEveryCallerGaveUp: one caller giving up must not cancel a batch the
// others wait for; once all have, the batch's context ends so its work can stop.
func TestBatchContextEndsWhenEveryCallerGaveUp(t *testing.T) {
	t.Parallel()
	started := make(chan context.Context, 2)
	opened, first := make(chan struct{}), make(chan struct{})
	b := groupcommit.New[string](10, func(ctx context.Context, items []int) error {
		if items[0] == 0 {
			close(opened)
			<-first // the opening batch holds the key until the two calls queue
			return nil
		}
		started <- ctx
		<-ctx.Done()
		return ctx.Err()
	})
	out := make(chan outcome, 3)
	call(b, context.Background(), "f", 0, out)
	<-opened
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	call(b, ctx1, "f", 1, out)
	awaitQueued(t, b, "f", 1)
	call(b, ctx2, "f", 2, out)
	awaitQueued(t, b, "f", 2)
	close(first)
	require.NoError(t, (<-out).err)

	batch := <-started
	cancel1()
	require.ErrorIs(t, (<-out).err, context.Canceled)
	require.NoError(t, batch.Err(), "the batch was cancelled while a caller still waited")
	cancel2()
	require.ErrorIs(t, (<-out).err, context.Canceled)
	select {
	case <-batch.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's context did not end after every caller gave up")
	}
}
