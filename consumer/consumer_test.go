package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/testenv"
)

// env is one test's namespace on the real NATS server: a BOOKING-like stream to consume and a
// DLQ stream, both deleted by testenv at the end.
type env struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	namespace string
	stream    string // consumed stream
	subject   string // the subject published to and consumed
	dlq       string // the DLQ stream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url, nats.Name("consumer test"))
	testenv.Fatal(t, "connect", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	e := &env{
		nc: nc, js: js, namespace: ns,
		stream:  strings.ToUpper(ns) + "_BOOKING",
		subject: ns + ".booking.test.created",
		dlq:     strings.ToUpper(ns) + "_DLQ",
	}
	ctx := context.Background()
	for name, subj := range map[string]string{e.stream: ns + ".booking.>", e.dlq: ns + ".dlq.>"} {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{subj}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute,
		})
		testenv.Fatal(t, "create stream "+name, err)
	}
	return e
}

func (e *env) publish(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("msg-%03d", i)
		m := &nats.Msg{Subject: e.subject, Header: nats.Header{}, Data: []byte(ids[i])}
		m.Header.Set("ce-type", "test.created.v1")
		_, err := e.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(ids[i]))
		testenv.Fatal(t, "publish", err)
	}
	return ids
}

func (e *env) router(t *testing.T, cfg consumer.Config, h consumer.Handler) *consumer.Router {
	t.Helper()
	r, err := consumer.New(e.nc, e.js, "booking", e.namespace, cfg, testLogger(t))
	testenv.Fatal(t, "new router", err)
	r.Handle("test-created", e.stream, e.subject, h)
	return r
}

// run starts r and returns a function that stops it and waits for Run to return.
func run(t *testing.T, r *consumer.Router) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-done:
		cancel()
		t.Fatalf("router did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("router did not start in 10s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err, "Run")
			case <-time.After(30 * time.Second):
				t.Error("router did not stop in 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) consumerInfo(t *testing.T, r *consumer.Router) *jetstream.ConsumerInfo {
	t.Helper()
	rt, ok := r.Route("test-created")
	require.True(t, ok)
	c, err := e.js.PushConsumer(context.Background(), rt.Stream, rt.Durable)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info
}

// dlqMessages returns every message in the test's DLQ stream.
func (e *env) dlqMessages(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, e.dlq)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	return msgs
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// recorder remembers every delivery a handler saw.
type recorder struct {
	mu   sync.Mutex
	seen map[string][]consumer.Delivery
	at   map[string][]time.Time
}

func newRecorder() *recorder {
	return &recorder{seen: map[string][]consumer.Delivery{}, at: map[string][]time.Time{}}
}

func (r *recorder) add(d consumer.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[d.ID] = append(r.seen[d.ID], d)
	r.at[d.ID] = append(r.at[d.ID], time.Now())
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen[id])
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

var fast = consumer.Config{
	AckWait:       5 * time.Second,
	MaxDeliver:    3,
	Backoff:       []time.Duration{50 * time.Millisecond},
	Concurrency:   4,
	MaxAckPending: 32,
}

func TestHappyPathHandlesEachMessageOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder()
	r := e.router(t, fast, func(_ context.Context, d consumer.Delivery) error {
		rec.add(d)
		return nil
	})
	run(t, r)
	ids := e.publish(t, 50)

	require.Eventually(t, func() bool { return rec.distinct() == len(ids) }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		info := e.consumerInfo(t, r)
		return info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 20*time.Millisecond, "consumer still has pending or unacked messages")
	for _, id := range ids {
		require.Equal(t, 1, rec.count(id), "deliveries of %s", id)
		d := rec.seen[id][0]
		assert.Equal(t, e.subject, d.Subject)
		assert.Equal(t, id, string(d.Data))
		assert.Equal(t, 1, d.Attempt)
		assert.Equal(t, "test.created.v1", d.Header.Get("ce-type"))
		assert.NotZero(t, d.Sequence)
	}

	info := e.consumerInfo(t, r)
	assert.Equal(t, "booking", info.Config.DeliverGroup)
	assert.Equal(t, jetstream.AckExplicitPolicy, info.Config.AckPolicy)
	assert.Equal(t, fast.AckWait, info.Config.AckWait)
	assert.Empty(t, e.dlqMessages(t))
}

func TestFailingHandlerIsRetriedWithBackoffThenSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fast
	cfg.MaxDeliver = 5
	cfg.Backoff = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	const failures = 3
	rec := newRecorder()
	r := e.router(t, cfg, func(_ context.Context, d consumer.Delivery) error {
		rec.add(d)
		if d.Attempt <= failures {
			return fmt.Errorf("transient failure %d", d.Attempt)
		}
		return nil
	})
	run(t, r)
	ids := e.publish(t, 1)

	require.Eventually(t, func() bool { return rec.count(ids[0]) == failures+1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return e.consumerInfo(t, r).NumAckPending == 0 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, failures+1, rec.count(ids[0]), "no delivery after the successful one")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, d := range rec.seen[ids[0]] {
		assert.Equal(t, i+1, d.Attempt)
	}
	at := rec.at[ids[0]]
	for i := 1; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), cfg.Backoff[i-1], "gap before delivery %d", i+1)
	}
	assert.Empty(t, e.dlqMessages(t))
}

func TestHandlerThatAlwaysFailsLandsInDLQOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder()
	r := e.router(t, fast, func(_ context.Context, d consumer.Delivery) error {
		rec.add(d)
		return errors.New("seat map unavailable\nfor flight 42")
	})
	run(t, r)
	ids := e.publish(t, 1)

	require.Eventually(t, func() bool { return len(e.dlqMessages(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return e.consumerInfo(t, r).NumAckPending == 0 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, fast.MaxDeliver, rec.count(ids[0]), "deliveries")

	m := e.dlqMessages(t)[0]
	rt, _ := r.Route("test-created")
	assert.Equal(t, consumer.DLQSubject(e.namespace, "booking", "test-created"), rt.DLQSubject)
	assert.Equal(t, e.namespace+".dlq.booking.test-created", m.Subject)
	assert.Equal(t, ids[0], string(m.Data))
	assert.Equal(t, "seat map unavailable for flight 42", m.Header.Get(consumer.HeaderDLQError))
	assert.Equal(t, "3", m.Header.Get(consumer.HeaderDLQAttempts))
	assert.Equal(t, "false", m.Header.Get(consumer.HeaderDLQPermanent))
	assert.Equal(t, e.subject, m.Header.Get(consumer.HeaderDLQOriginalSubject))
	assert.Equal(t, e.stream, m.Header.Get(consumer.HeaderDLQOriginalStream))
	assert.Equal(t, ids[0], m.Header.Get(consumer.HeaderDLQOriginalID))
	assert.Equal(t, rt.Durable, m.Header.Get(consumer.HeaderDLQDurable))
	assert.Equal(t, "test.created.v1", m.Header.Get("ce-type"), "original headers kept")
	_, err := time.Parse(time.RFC3339Nano, m.Header.Get(consumer.HeaderDLQTime))
	assert.NoError(t, err)

	// Publishing a second message and seeing it handled proves the consumer kept going; the
	// dead-lettered one must not have come back in the meantime.
	more := e.publish(t, 2)
	require.Eventually(t, func() bool { return rec.count(more[1]) == fast.MaxDeliver }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, fast.MaxDeliver, rec.count(ids[0]), "original redelivered after dead-lettering")
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder()
	r := e.router(t, fast, func(_ context.Context, d consumer.Delivery) error {
		rec.add(d)
		return consumer.Permanent(fmt.Errorf("decode %s: %w", d.ID, errors.New("unknown ce-type")))
	})
	run(t, r)
	ids := e.publish(t, 1)

	require.Eventually(t, func() bool { return len(e.dlqMessages(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return e.consumerInfo(t, r).NumAckPending == 0 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1, rec.count(ids[0]))
	m := e.dlqMessages(t)[0]
	assert.Equal(t, "true", m.Header.Get(consumer.HeaderDLQPermanent))
	assert.Equal(t, "1", m.Header.Get(consumer.HeaderDLQAttempts))
	assert.Contains(t, m.Header.Get(consumer.HeaderDLQError), "unknown ce-type")
}

func TestPanickingHandlerDoesNotStopTheRouter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder()
	r := e.router(t, fast, func(_ context.Context, d consumer.Delivery) error {
		rec.add(d)
		if string(d.Data) == "msg-000" {
			var seats []int
			_ = seats[len(d.Data)] // index out of range: panics
		}
		return nil
	})
	run(t, r)
	ids := e.publish(t, 5)

	require.Eventually(t, func() bool { return len(e.dlqMessages(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	for _, id := range ids[1:] {
		require.Eventually(t, func() bool { return rec.count(id) == 1 }, 10*time.Second, 10*time.Millisecond)
	}
	assert.Equal(t, fast.MaxDeliver, rec.count(ids[0]))
	m := e.dlqMessages(t)[0]
	assert.Contains(t, m.Header.Get(consumer.HeaderDLQError), "handler panicked")
	assert.Contains(t, m.Header.Get(consumer.HeaderDLQError), "index out of range")

	// Still running after the panics.
	later := e.publish(t, 6)[5]
	require.Eventually(t, func() bool { return rec.count(later) == 1 }, 10*time.Second, 10*time.Millisecond)
}

func TestHungDeliveriesStillReachDLQOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fast
	cfg.AckWait = 300 * time.Millisecond
	cfg.MaxDeliver = 2
	rec := newRecorder()
	r := e.router(t, cfg, func(ctx context.Context, d consumer.Delivery) error {
		rec.add(d)
		<-ctx.Done() // hangs until the ack wait runs out
		return ctx.Err()
	})
	run(t, r)
	ids := e.publish(t, 1)

	require.Eventually(t, func() bool { return len(e.dlqMessages(t)) >= 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return e.consumerInfo(t, r).NumAckPending == 0 }, 10*time.Second, 20*time.Millisecond)
	assert.Len(t, e.dlqMessages(t), 1, "dead-lettered once though dead-lettering ran after the ack wait")
	assert.Equal(t, cfg.MaxDeliver, rec.count(ids[0]), "handler runs")
}

func TestReplicasInOneQueueGroupSplitTheWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	handled := map[string][]int{} // id -> replicas that handled it
	replica := func(n int) consumer.Handler {
		return func(_ context.Context, d consumer.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			handled[d.ID] = append(handled[d.ID], n)
			return nil
		}
	}
	r1 := e.router(t, fast, replica(1))
	r2 := e.router(t, fast, replica(2))
	run(t, r1)
	run(t, r2)
	ids := e.publish(t, 300)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == len(ids)
	}, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return e.consumerInfo(t, r1).NumAckPending == 0 }, 10*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	per := map[int]int{}
	for _, id := range ids {
		require.Len(t, handled[id], 1, "%s handled by replicas %v", id, handled[id])
		per[handled[id][0]]++
	}
	t.Logf("split: replica 1 %d, replica 2 %d", per[1], per[2])
	assert.Positive(t, per[1])
	assert.Positive(t, per[2])
}

func TestRestartDeliversWhatWasLeftUnacked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fast
	cfg.AckWait = time.Second
	cfg.MaxDeliver = 100 // the first router's stuck deliveries must not dead-letter anything
	cfg.Concurrency = 2
	cfg.MaxAckPending = 4
	var mu sync.Mutex
	done := map[string]string{} // id -> which router acked it
	ids := e.publish(t, 20)
	first := map[string]bool{}
	for _, id := range ids[:10] {
		first[id] = true
	}

	r1 := e.router(t, cfg, func(ctx context.Context, d consumer.Delivery) error {
		if !first[d.ID] {
			<-ctx.Done() // stuck until shutdown: never acked
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		done[d.ID] = "r1"
		return nil
	})
	stop1 := run(t, r1)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == 10
	}, 10*time.Second, 10*time.Millisecond)
	stop1()
	left := e.consumerInfo(t, r1)
	require.Positive(t, uint64(left.NumAckPending)+left.NumPending, "nothing was left over")

	r2 := e.router(t, cfg, func(_ context.Context, d consumer.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if by, ok := done[d.ID]; ok {
			return fmt.Errorf("%s already acked by %s", d.ID, by)
		}
		done[d.ID] = "r2"
		return nil
	})
	run(t, r2)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == len(ids)
	}, 15*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		info := e.consumerInfo(t, r2)
		return info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.Empty(t, e.dlqMessages(t))
}

func TestRunRejectsBadRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r, err := consumer.New(e.nc, e.js, "booking", e.namespace, fast, testLogger(t))
	require.NoError(t, err)
	ok := func(context.Context, consumer.Delivery) error { return nil }
	r.Handle("seats.held", e.stream, e.subject, ok)
	r.Handle("a", e.stream, e.subject, ok)
	r.Handle("a", e.stream, e.subject+"2", ok)
	r.Handle("b", e.stream, e.subject, ok)
	err = r.Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"seats.held"`)
	assert.Contains(t, err.Error(), "route a: name")
	assert.Contains(t, err.Error(), "route b: name")
}

func TestStopLetsInFlightHandlersFinishAndAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan struct{})
	stopping := make(chan struct{})
	rec := newRecorder()
	r := e.router(t, fast, func(ctx context.Context, d consumer.Delivery) error {
		rec.add(d)
		close(started)
		<-stopping // still working when the router is told to stop
		return ctx.Err()
	})
	stop := run(t, r)
	ids := e.publish(t, 1)
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(stopping)
	<-stopped

	info := e.consumerInfo(t, r)
	assert.Zero(t, info.NumAckPending, "the in-flight message was not acked before Run returned")
	assert.Zero(t, info.NumPending)
	assert.Equal(t, 1, rec.count(ids[0]))
}

// TestDeletedStreamAndDurableComeBack deletes the consumed stream (and with it the durable)
// under a running router, recreates the stream and publishes again: the router recreates its
// durable and handles the new messages without a restart.
func TestDeletedStreamAndDurableComeBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fast
	cfg.CheckInterval = 50 * time.Millisecond
	rec := newRecorder()
	r := e.router(t, cfg, func(_ context.Context, d consumer.Delivery) error { rec.add(d); return nil })
	run(t, r)
	ids := e.publish(t, 5)
	require.Eventually(t, func() bool { return rec.distinct() == 5 }, 10*time.Second, 10*time.Millisecond)

	ctx := context.Background()
	info, err := e.js.Stream(ctx, e.stream)
	testenv.Fatal(t, "stream", err)
	cfgStream := info.CachedInfo().Config
	testenv.Fatal(t, "delete stream", e.js.DeleteStream(ctx, e.stream))
	_, err = e.js.CreateStream(ctx, cfgStream)
	testenv.Fatal(t, "recreate stream", err)

	// The same ids again, as a republish from the outbox would send them, and new ones.
	for i, id := range append(ids, "msg-new-1", "msg-new-2") {
		m := &nats.Msg{Subject: e.subject, Header: nats.Header{}, Data: []byte(id)}
		_, err := e.js.PublishMsg(ctx, m, jetstream.WithMsgID(id))
		testenv.Fatal(t, fmt.Sprint("publish ", i), err)
	}
	require.Eventually(t, func() bool { return rec.count("msg-new-1") == 1 && rec.count("msg-new-2") == 1 },
		15*time.Second, 20*time.Millisecond, "the router did not resume after its stream was recreated")
	require.Eventually(t, func() bool { return rec.count(ids[0]) == 2 }, 10*time.Second, 10*time.Millisecond,
		"the recreated durable starts from the beginning of the new stream")
}
