package outbox

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flightbook/flightbook/migrate"
	"github.com/flightbook/flightbook/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pressly/goose/v3"
)

func TestRelayConfigDefaultsMatchTags(t *testing.T) {
	var loaded RelayConfig
	if err := envconfig.Process("OUTBOX_DEFAULTS_TEST", &loaded); err != nil {
		t.Fatal(err)
	}
	if got := (RelayConfig{}).withDefaults(); !reflect.DeepEqual(got, loaded) {
		t.Errorf("RelayConfig{}.withDefaults() = %+v, the tags say %+v", got, loaded)
	}
}

func TestEncodeHeaders(t *testing.T) {
	tests := []struct {
		name    string
		msg     Message
		want    string
		invalid bool
	}{
		{"no id", Message{Subject: "a.b"}, "", true},
		{"no subject", Message{ID: "1"}, "", true},
		{"no headers", Message{ID: "1", Subject: "a.b"}, "{}", false},
		{"headers", Message{ID: "1", Subject: "a.b", Header: nats.Header{"ce-type": {"x.v1"}}}, `{"ce-type":["x.v1"]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeHeaders(tt.msg)
			if tt.invalid != errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("err = %v, want invalid: %v", err, tt.invalid)
			}
			if got != tt.want {
				t.Errorf("headers = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRowMsgSetsMsgID(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		want    nats.Header
		wantErr bool
	}{
		{"empty", "", nats.Header{"Nats-Msg-Id": {"m1"}}, false},
		{"json null", "null", nats.Header{"Nats-Msg-Id": {"m1"}}, false},
		{"headers kept", `{"ce-id":["m1"]}`, nats.Header{"ce-id": {"m1"}, "Nats-Msg-Id": {"m1"}}, false},
		{"broken", `{"ce-id"`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := row{id: 1, msgID: "m1", subject: "a.b", headers: []byte(tt.headers), payload: []byte("x")}.msg()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && (!reflect.DeepEqual(m.Header, tt.want) || m.Subject != "a.b" || string(m.Data) != "x") {
				t.Errorf("msg = %+v, want header %v", m, tt.want)
			}
		})
	}
}

func TestAddRejectsInvalidMessage(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		err := h.add(context.Background(), Message{ID: "ok", Subject: "x.y"}, Message{Subject: "x.y"})
		if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("add without id: err = %v, want ErrInvalidMessage", err)
		}
		if n, err := h.count(context.Background(), "1=1"); err != nil || n != 0 {
			t.Errorf("outbox holds %d rows (%v) after a refused add, want 0", n, err)
		}
	})
}

// TestRelayPublishesOnNotify: with polling effectively off, Notify alone gets committed events
// to JetStream, in id order, with their headers, body and Nats-Msg-Id.
func TestRelayPublishesOnNotify(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{PollInterval: time.Hour, LockInterval: 50 * time.Millisecond})
		runRelay(t, r)
		waitFor(t, 5*time.Second, func() error {
			if st, err := r.Stats(ctx); err != nil || !st.IsLeader {
				return fmt.Errorf("not leader yet (%v)", err)
			}
			return nil
		})

		var want []Message
		for i := range 3 {
			msgs := events(b.ns, "b1", i*7, 7)
			testenv.Fatal(t, "add", h.add(ctx, msgs...))
			r.Notify()
			want = append(want, msgs...)
		}
		drained(t, h, b, len(want), 10*time.Second)

		got := b.storedMessages(t)
		for i, m := range got {
			w := want[i]
			if m.msgID != w.ID || m.data != string(w.Data) || m.hdr.Get("ce-type") != "test.event.v1" || m.seq != i {
				t.Errorf("message %d = %+v, want id %s data %s seq %d", i, m, w.ID, w.Data, i)
			}
		}
		// The relay counts a batch once its mark has committed, so the rows can read as
		// published a moment before the count does: await it rather than read it once.
		waitFor(t, 5*time.Second, func() error {
			st, err := r.Stats(ctx)
			if err != nil || st.Published != uint64(len(want)) || st.Pending != 0 || st.Lag != 0 || !st.IsLeader {
				return fmt.Errorf("stats = %+v (%v), want %d published, none pending, leader", st, err, len(want))
			}
			return nil
		})
	})
}

// TestSteadyStreamOnceInOrder: producers commit a few events at a time, notifying after each
// commit, so the relay works through many short batches (the path a change to the pipeline of
// short batches would touch); every event is stored once, and each aggregate's in the order its
// producer committed them.
func TestSteadyStreamOnceInOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{})
		runRelay(t, r)
		const producers, commits = 4, 150
		var wg sync.WaitGroup
		var total atomic.Int64
		for p := range producers {
			wg.Go(func() {
				agg, seq := fmt.Sprintf("p%d", p), 0
				for k := range commits {
					n := 1 + k%3
					if err := h.add(ctx, events(b.ns, agg, seq, n)...); err != nil {
						t.Error(err)
						return
					}
					seq += n
					total.Add(int64(n))
					r.Notify()
				}
			})
		}
		wg.Wait()
		drained(t, h, b, int(total.Load()), 30*time.Second)
		checkOnceInOrder(t, b.storedMessages(t), int(total.Load()))
	})
}

// TestNothingLostWhileNATSDown stops the JetStream server, writes events, and starts it again.
// It uses an embedded server rather than the machine's shared one so that a real outage
// (connection refused, client reconnecting, the same store after restart) happens to this test
// only. Lag must grow during the outage and return to zero after the drain.
func TestNothingLostWhileNATSDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		dir := t.TempDir()
		ns, port := embeddedNATS(t, dir, 0)
		b := newBroker(t, ns.ClientURL(), testenv.Name(), false)
		r := h.newRelay(b.js, RelayConfig{
			PollInterval: 20 * time.Millisecond, PublishTimeout: 300 * time.Millisecond,
			MaxBackoff: 100 * time.Millisecond, LockInterval: 50 * time.Millisecond,
		})
		runRelay(t, r)

		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "a0", 0, 50)...))
		r.Notify()
		drained(t, h, b, 50, 10*time.Second)

		ns.Shutdown()
		ns.WaitForShutdown()
		const down = 4 * 50
		for i := range 4 {
			testenv.Fatal(t, "add", h.add(ctx, events(b.ns, fmt.Sprintf("a%d", i+1), 0, 50)...))
			r.Notify()
		}
		var first Stats
		waitFor(t, 10*time.Second, func() error {
			st, err := r.Stats(ctx)
			if err != nil {
				return err
			}
			if st.Errors == 0 || st.Pending != down || st.Lag <= 0 {
				return fmt.Errorf("stats %+v: want failed attempts and %d pending", st, down)
			}
			first = st
			return nil
		})
		waitFor(t, 10*time.Second, func() error {
			st, err := r.Stats(ctx)
			if err != nil {
				return err
			}
			if st.Lag < first.Lag+100*time.Millisecond {
				return fmt.Errorf("lag %s has not grown from %s", st.Lag, first.Lag)
			}
			return nil
		})

		embeddedNATS(t, dir, port)
		waitFor(t, 30*time.Second, func() error {
			st, err := r.Stats(ctx)
			if err != nil {
				return err
			}
			if st.Pending != 0 || st.Lag != 0 {
				return fmt.Errorf("not drained: %+v", st)
			}
			return nil
		})
		checkOnceInOrder(t, b.storedMessages(t), 50+down)
	})
}

// TestLateCommitNotSkipped: a producer transaction that stays open does not hold the relay up
// (SKIP LOCKED, no gap locks), and its row, with an id below everything published meanwhile,
// is published once it commits.
func TestLateCommitNotSkipped(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		if h.serialWriters {
			t.Skip("one writer at a time: no commit can land below rows already visible, and the open transaction would block the other producer (TestOpenProducerDoesNotStopPublishing covers what remains)")
		}
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{BatchSize: 50, PollInterval: 20 * time.Millisecond})
		runRelay(t, r)
		commit, err := h.addOpen(ctx, events(b.ns, "late", 0, 1)...)
		testenv.Fatal(t, "add in an open transaction", err)
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "early", 0, 500)...))
		r.Notify()
		drained(t, h, b, 500, 10*time.Second)
		testenv.Fatal(t, "commit the late transaction", commit())
		drained(t, h, b, 501, 10*time.Second)
		if n, err := h.count(ctx, "aggregate_id = 'late' AND id < (SELECT MIN(id) FROM (SELECT id FROM outbox WHERE aggregate_id = 'early') e)"); err != nil || n != 1 {
			t.Errorf("the late row's id is not below the others (%d, %v): the test proves nothing", n, err)
		}
	})
}

// TestOpenProducerDoesNotStopPublishing: committed rows are sent while a producer transaction
// stays open, and its row follows once it commits. On SQLite the open transaction holds the
// database's only write lock, so this shows that the relay needs none to send.
func TestOpenProducerDoesNotStopPublishing(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		// The relay leads before the transaction opens (taking the lease on SQLite needs the
		// write lock), and only Notify makes it look for rows. One batch holds every committed
		// row: a pipeline of smaller ones would wait for slots that only a mark, which needs
		// the write lock, frees.
		r := h.newRelay(b.js, RelayConfig{BatchSize: 500, PollInterval: time.Hour})
		runRelay(t, r)
		waitFor(t, 5*time.Second, func() error {
			if st, err := r.Stats(ctx); err != nil || !st.IsLeader {
				return fmt.Errorf("not leader yet (%v)", err)
			}
			return nil
		})
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "early", 0, 300)...))
		commit, err := h.addOpen(ctx, events(b.ns, "late", 0, 1)...)
		testenv.Fatal(t, "add in an open transaction", err)
		r.Notify()
		waitFor(t, 10*time.Second, func() error {
			if n := b.count(t); n != 300 {
				return fmt.Errorf("stream holds %d of the 300 committed events", n)
			}
			return nil
		})
		testenv.Fatal(t, "commit the open transaction", commit())
		r.Notify()
		drained(t, h, b, 301, 10*time.Second)
		checkOnceInOrder(t, b.storedMessages(t), 301)
	})
}

// TestRelayKilledBetweenPublishAndMark: the first relay dies after JetStream acked a batch and
// before the batch was marked; the rows stay unpublished, the next relay sends them again, and
// the stream still holds each event once.
func TestRelayKilledBetweenPublishAndMark(t *testing.T) {
	// On a stream that takes atomic batches the first relay sends its rows as one, and the
	// second relay's atomic batch is refused because JetStream has its messages: the second
	// must send them again one by one.
	for _, batches := range []bool{false, true} {
		t.Run(fmt.Sprintf("atomic=%v", batches), func(t *testing.T) {
			forEachStore(t, func(t *testing.T, h *harness) { relayKilledBetweenPublishAndMark(t, h, batches) })
		})
	}
}

func relayKilledBetweenPublishAndMark(t *testing.T, h *harness, batches bool) {
	ctx := context.Background()
	b := sharedBroker(t)
	if batches {
		b = deployedBroker(t, true)
	}
	const n = 120
	testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "k", 0, n)...))

	cfg := RelayConfig{BatchSize: 200, LockInterval: 50 * time.Millisecond}
	first := h.newRelay(b.js, cfg)
	runCtx, kill := context.WithCancel(ctx)
	var inStream atomic.Int64
	first.afterAcks = func(context.Context, int) error {
		inStream.Store(int64(b.count(t)))
		kill()
		return errors.New("relay killed after the acks")
	}
	testenv.Fatal(t, "first relay", first.Run(runCtx))
	if got := inStream.Load(); got != n {
		t.Fatalf("stream held %d messages when the relay was killed, want %d", got, n)
	}
	if pending, err := h.count(ctx, "published_at IS NULL"); err != nil || pending != n {
		t.Fatalf("after the kill %d rows unpublished (%v), want %d", pending, err, n)
	}

	second := h.newRelay(b.js, cfg)
	runRelay(t, second)
	drained(t, h, b, n, 10*time.Second)
	msgs := b.storedMessages(t)
	checkOnceInOrder(t, msgs, n)
	if got := inAtomicBatches(msgs); batches && got != n {
		t.Errorf("%d of %d messages stored in an atomic batch, want all (the first relay's one batch)", got, n)
	}
	// The relay counts a batch after its commit, so the rows can read as published a
	// moment before the counter moves.
	waitFor(t, 10*time.Second, func() error {
		if st, _ := second.Stats(ctx); st.Published != n {
			return fmt.Errorf("second relay published %d, want %d", st.Published, n)
		}
		return nil
	})
}

// inAtomicBatches counts the messages that were stored as part of an atomic batch.
func inAtomicBatches(msgs []stored) int {
	n := 0
	for _, m := range msgs {
		if m.hdr.Get(batchIDHeader) != "" {
			n++
		}
	}
	return n
}

// TestAtomicBatchesRefused: a server whose limit on an atomic batch's size is below the
// relay's batches refuses the first ones (as many as the pipeline had sent); the relay then
// publishes message by message for good, so a second backlog meets no refusal.
func TestAtomicBatchesRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := deployedBrokerWith(t, true, server.JSLimitOpts{MaxBatchSize: minAtomicBatch + 10})
		r := h.newRelay(b.js, RelayConfig{BatchSize: 100})
		runRelay(t, r)
		const n = 300
		backlog := func(round int) {
			for a := range 3 {
				testenv.Fatal(t, "add", h.add(ctx, events(b.ns, fmt.Sprintf("r%da%d", round, a), 0, n/3)...))
			}
			r.Notify()
			drained(t, h, b, n*(round+1), 20*time.Second)
		}
		backlog(0)
		first, err := r.Stats(ctx)
		testenv.Fatal(t, "stats", err)
		if first.Errors == 0 || first.Errors > pipelineDepth {
			t.Errorf("%d failed batches in the first backlog, want 1 to %d refused", first.Errors, pipelineDepth)
		}
		backlog(1)
		if st, err := r.Stats(ctx); err != nil || st.Errors != first.Errors {
			t.Errorf("stats %+v (%v): the second backlog met %d refusals, want none", st, err, st.Errors-first.Errors)
		}
		msgs := b.storedMessages(t)
		checkOnceInOrder(t, msgs, 2*n)
		if got := inAtomicBatches(msgs); got != 0 {
			t.Errorf("%d messages stored in atomic batches, want none", got)
		}
	})
}

// TestAtomicBatches: on a stream that takes them, a backlog goes out in atomic batches, once
// and in order, and a short batch message by message; on a stream that does not, or with
// MessageByMessage set, everything goes message by message.
func TestAtomicBatches(t *testing.T) {
	for _, c := range []struct {
		name             string
		stream, oneByOne bool
		atomic           bool // whether the backlog should go in atomic batches
	}{
		{"stream takes them", true, false, true},
		{"stream does not", false, false, false},
		{"message by message", true, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, h *harness) {
				ctx := context.Background()
				b := deployedBroker(t, c.stream)
				const backlog, short = 3 * 100, minAtomicBatch - 1
				for a := range 3 {
					testenv.Fatal(t, "add", h.add(ctx, events(b.ns, fmt.Sprintf("a%d", a), 0, backlog/3)...))
				}
				r := h.newRelay(b.js, RelayConfig{BatchSize: 100, PollInterval: time.Hour, MessageByMessage: c.oneByOne})
				runRelay(t, r)
				drained(t, h, b, backlog, 10*time.Second)
				testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "s", 0, short)...))
				r.Notify()
				drained(t, h, b, backlog+short, 10*time.Second)

				msgs := b.storedMessages(t)
				checkOnceInOrder(t, msgs, backlog+short)
				want := 0
				if c.atomic {
					want = backlog
				}
				if got := inAtomicBatches(msgs); got != want {
					t.Errorf("%d messages stored in atomic batches, want %d", got, want)
				}
				if got := inAtomicBatches(msgs[backlog:]); got != 0 {
					t.Errorf("%d of the short batch's %d messages stored in an atomic batch, want none", got, short)
				}
				// The relay counts a batch once its mark has committed, a moment after the
				// rows read as published.
				waitFor(t, 5*time.Second, func() error {
					if st, err := r.Stats(ctx); err != nil || st.AtomicBatches != uint64(want/100) {
						return fmt.Errorf("stats %+v (%v), want %d atomic batches", st, err, want/100)
					}
					return nil
				})
			})
		})
	}
}

// TestTwoRelays runs two relays on one database while events are written; only the leader
// publishes, the other takes over when the leader is stopped mid-run, and the stream holds
// every event once, in order per aggregate.
func TestTwoRelays(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		cfg := RelayConfig{BatchSize: 20, PollInterval: 10 * time.Millisecond, LockInterval: 30 * time.Millisecond}
		relays := []*Relay{h.newRelay(b.js, cfg), h.newRelay(sharedJS(t, b), cfg)}
		stops := []func(){runRelay(t, relays[0]), runRelay(t, relays[1])}

		const aggs, perAgg, perTx = 8, 64, 4 // perAgg/2 is a multiple of perTx
		total := 0
		write := func(from, to int) {
			for seq := from; seq < to; seq += perTx {
				var msgs []Message
				for a := range aggs {
					msgs = append(msgs, events(b.ns, fmt.Sprintf("agg%d", a), seq, perTx)...)
				}
				testenv.Fatal(t, "add", h.add(ctx, msgs...))
				total += len(msgs)
				relays[0].Notify()
				relays[1].Notify()
			}
		}
		write(0, perAgg/2)

		leader := -1
		waitFor(t, 5*time.Second, func() error {
			for i, r := range relays {
				st, err := r.Stats(ctx)
				if err != nil {
					return err
				}
				if st.IsLeader && st.Published > 0 {
					leader = i
					return nil
				}
			}
			return errors.New("no leader has published yet")
		})
		standby := 1 - leader
		if st, _ := relays[standby].Stats(ctx); st.IsLeader || st.Published != 0 {
			t.Errorf("standby relay: %+v, want not leader and nothing published", st)
		}
		stops[leader]()

		write(perAgg/2, perAgg)
		drained(t, h, b, total, 20*time.Second)
		checkOnceInOrder(t, b.storedMessages(t), total)
		// A batch is counted just after its mark commits (see TestRelayPublishesOnNotify).
		waitFor(t, 5*time.Second, func() error {
			a, _ := relays[leader].Stats(ctx)
			s, _ := relays[standby].Stats(ctx)
			if !s.IsLeader || s.Published == 0 || a.Published+s.Published != uint64(total) {
				return fmt.Errorf("first leader %+v, standby %+v: want the standby leading and %d published in all", a, s, total)
			}
			return nil
		})
	})
}

// sharedJS is a second NATS connection to b's server, as a second replica would have.
func sharedJS(t testing.TB, b *broker) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(b.nc.ConnectedUrl(), nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "connect", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	testenv.Fatal(t, "jetstream", err)
	return js
}

// TestLeaderLockLost kills the leader's lock session from outside: the relay must notice,
// step down, and (alone here) become leader again and keep publishing.
func TestLeaderLockLost(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{PollInterval: 10 * time.Millisecond, LockInterval: 30 * time.Millisecond})
		runRelay(t, r)
		var session int64
		waitFor(t, 5*time.Second, func() error {
			if l := r.held.Load(); l != nil {
				session = (*l).session()
				return nil
			}
			return errors.New("not leader yet")
		})
		testenv.Fatal(t, "kill lock session", h.kill(ctx, session))
		waitFor(t, 5*time.Second, func() error {
			l := r.held.Load()
			if st, _ := r.Stats(ctx); st.Errors == 0 || l == nil || (*l).session() == session {
				return fmt.Errorf("relay has not moved to a new lock session (errors %d)", st.Errors)
			}
			return nil
		})
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "l", 0, 30)...))
		r.Notify()
		drained(t, h, b, 30, 10*time.Second)
	})
}

// drain publishes every unpublished row through r's batch step, without running the relay.
func drain(t testing.TB, r *Relay) {
	t.Helper()
	for {
		n, err := r.relayBatch(context.Background())
		testenv.Fatal(t, "relay batch", err)
		if n == 0 {
			return
		}
	}
}

// TestRetentionCleanup: only rows published longer ago than the retention go, never
// unpublished ones however old, and the leader's cleanup loop does it on its own.
func TestRetentionCleanup(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{BatchSize: 1000, Retention: time.Hour, CleanupInterval: 20 * time.Millisecond})

		const old = 2300 // more than two cleanup batches
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "old", 0, old)...))
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "new", 0, 300)...))
		drain(t, r)
		testenv.Fatal(t, "add unpublished", h.add(ctx, events(b.ns, "unpublished", 0, 10)...))
		testenv.Fatal(t, "age", h.age(ctx, "aggregate_id IN ('old', 'unpublished')", 2*time.Hour))

		deleted, err := r.cleanup(ctx)
		testenv.Fatal(t, "cleanup", err)
		if deleted != old {
			t.Errorf("cleanup deleted %d rows, want %d", deleted, old)
		}
		for where, want := range map[string]int64{
			"aggregate_id = 'old'":                                  0,
			"aggregate_id = 'new'":                                  300,
			"aggregate_id = 'unpublished' AND published_at IS NULL": 10,
		} {
			if n, err := h.count(ctx, where); err != nil || n != want {
				t.Errorf("%s: %d rows (%v), want %d", where, n, err, want)
			}
		}

		// The running leader publishes the old unpublished rows (so they are kept: their
		// retention starts now) and deletes the rows that have aged since.
		testenv.Fatal(t, "age", h.age(ctx, "aggregate_id = 'new'", 2*time.Hour))
		runRelay(t, r)
		waitFor(t, 10*time.Second, func() error {
			all, err := h.count(ctx, "1=1")
			if err != nil {
				return err
			}
			kept, err := h.count(ctx, "aggregate_id = 'unpublished' AND published_at IS NOT NULL")
			if err != nil {
				return err
			}
			if all != 10 || kept != 10 {
				return fmt.Errorf("%d rows left, %d of them the newly published ones; want 10 and 10", all, kept)
			}
			return nil
		})
	})
}

// TestRepublish sends retained rows again from a point in time: published or not, in id order,
// and the stream, within its duplicate window, still holds each event once.
func TestRepublish(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		b := sharedBroker(t)
		r := h.newRelay(b.js, RelayConfig{BatchSize: 64})
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "before", 0, 150)...))
		testenv.Fatal(t, "add", h.add(ctx, events(b.ns, "after", 0, 100)...))
		drain(t, r)
		testenv.Fatal(t, "add unpublished", h.add(ctx, events(b.ns, "after", 100, 20)...))
		testenv.Fatal(t, "age", h.age(ctx, "aggregate_id = 'before'", time.Hour))

		// Every message sent reaches a plain subscriber, duplicates included, so it counts
		// what Republish really sent.
		sub, err := b.nc.SubscribeSync(b.ns + ".>")
		testenv.Fatal(t, "subscribe", err)
		testenv.Fatal(t, "flush", b.nc.Flush())
		sent, err := r.Republish(ctx, time.Now().Add(-30*time.Minute))
		testenv.Fatal(t, "republish", err)
		if sent != 120 {
			t.Errorf("Republish sent %d, want 120", sent)
		}
		for i := range 120 {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("republished message %d: %v", i, err)
			}
			if want := fmt.Sprint(i); m.Header.Get("agg") != "after" || m.Header.Get("seq") != want {
				t.Errorf("republished message %d: agg %s seq %s, want after %s", i, m.Header.Get("agg"), m.Header.Get("seq"), want)
			}
		}
		checkOnceInOrder(t, b.storedMessages(t), 250+20)

		all, err := r.Republish(ctx, time.Time{})
		testenv.Fatal(t, "republish all", err)
		if all != 270 {
			t.Errorf("Republish(zero time) sent %d, want 270", all)
		}
		checkOnceInOrder(t, b.storedMessages(t), 270)
	})
}

// TestPostgresClaimEndsOnItsConnection: a PostgreSQL claim ends its transaction itself, the
// mark going with its COMMIT, and hands its connection back to the pool idle, whether it is
// marked published or rolled back. A connection handed back inside a transaction would be
// closed by the pool, and one not handed back would be lost to it.
func TestPostgresClaimEndsOnItsConnection(t *testing.T) {
	t.Parallel()
	// A connection not handed back makes the next claim wait for one until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t)+"&pool_max_conns=1")
	testenv.Fatal(t, "pool", err)
	t.Cleanup(func() {
		if pool.Stat().AcquiredConns() == 0 { // Close would wait for a lost connection forever
			pool.Close()
		}
	})
	db := stdlib.OpenDBFromPool(pool)
	fsys := migrationFS(t, "../services/flight/postgres/migrations", "00003_outbox.sql")
	testenv.Fatal(t, "migrate", migrate.Up(ctx, goose.DialectPostgres, db, fsys, quietLog()))
	testenv.Fatal(t, "close migration db", db.Close())
	s := postgresStore{pool: pool}
	add := func() {
		t.Helper()
		testenv.Fatal(t, "add", pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return AddPostgres(ctx, tx, events("claims", "a", 0, 1)...)
		}))
	}
	unpublished := func() int {
		t.Helper()
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("%d connections not handed back", n)
		}
		var n int
		testenv.Fatal(t, "count", pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n))
		return n
	}
	for i := range 10 {
		add()
		c, err := s.claim(ctx, 0, 10)
		testenv.Fatal(t, "claim", err)
		if len(c.claimed()) != 1 {
			t.Fatalf("round %d: claimed %d rows, want 1", i, len(c.claimed()))
		}
		if i%2 == 0 {
			c.rollback()
			if n := unpublished(); n != 1 {
				t.Fatalf("round %d: %d rows unpublished after a rollback, want 1", i, n)
			}
			c, err = s.claim(ctx, 0, 10)
			testenv.Fatal(t, "claim again", err)
		}
		testenv.Fatal(t, "mark", c.markPublished(ctx))
		if n := unpublished(); n != 0 {
			t.Fatalf("round %d: %d rows unpublished after the mark, want 0", i, n)
		}
	}
	// Nothing to claim: the claim rolls back and hands the connection back.
	c, err := s.claim(ctx, 0, 10)
	testenv.Fatal(t, "empty claim", err)
	c.rollback()
	// The migration opened the pool's first connection.
	if st := pool.Stat(); st.AcquiredConns() != 0 || st.NewConnsCount() != 1 {
		t.Errorf("pool: %d connections acquired, %d opened; want 0 and 1", st.AcquiredConns(), st.NewConnsCount())
	}
}

// TestMySQLClaimStopsAtALockedRow: a row another transaction holds (a commit in progress, as
// SKIP LOCKED sees one) ends the claim, so the rows after it are not published ahead of it; on
// both kinds of pool, and each claim hands its connection back.
func TestMySQLClaimStopsAtALockedRow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		params string
		multi  int32
	}{
		{"one statement a query", "", multiNo},
		{"multi-statement queries", "&multiStatements=true&interpolateParams=true", multiYes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			h := openMySQLWith(t, tc.params)
			testenv.Fatal(t, "add", h.add(ctx, events("locked", "a", 0, 3)...))
			var first int64
			testenv.Fatal(t, "first id", h.db.QueryRowContext(ctx, "SELECT MIN(id) FROM outbox").Scan(&first))

			blocker, err := h.db.BeginTx(ctx, nil)
			testenv.Fatal(t, "begin", err)
			defer blocker.Rollback() //nolint:errcheck
			var id int64
			testenv.Fatal(t, "lock the first row", blocker.QueryRowContext(ctx, "SELECT id FROM outbox WHERE id = ? FOR UPDATE", first).Scan(&id))

			s := mysqlStore{db: h.db, multi: new(atomic.Int32)}
			c, err := s.claim(ctx, 0, 10)
			testenv.Fatal(t, "claim", err)
			if got := c.claimed(); len(got) != 0 {
				t.Fatalf("claimed %d rows from id %d while row %d is locked; want none", len(got), got[0].id, first)
			}
			c.rollback()
			if got := s.multi.Load(); got != tc.multi {
				t.Fatalf("multi-statement probe said %d, want %d", got, tc.multi)
			}
			if n := h.db.Stats().InUse; n != 1 { // the blocker's
				t.Fatalf("%d connections in use after the claim, want 1", n)
			}

			testenv.Fatal(t, "release", blocker.Rollback())
			c, err = s.claim(ctx, 0, 10)
			testenv.Fatal(t, "claim again", err)
			rows := c.claimed()
			if len(rows) != 3 || rows[0].id != first || rows[1].id <= rows[0].id || rows[2].id <= rows[1].id {
				t.Fatalf("claimed %+v, want the three rows in order from %d", rows, first)
			}
			testenv.Fatal(t, "mark", c.markPublished(ctx))
			if n, err := h.count(ctx, "published_at IS NULL"); err != nil || n != 0 {
				t.Fatalf("%d rows unpublished after the mark (%v), want 0", n, err)
			}
			if n := h.db.Stats().InUse; n != 0 {
				t.Fatalf("%d connections in use after the mark, want 0", n)
			}
		})
	}
}
