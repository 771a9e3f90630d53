package outbox

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flightbook/flightbook/testenv"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkRelayBacklog measures how fast one relay, with the default configuration, drains a
// backlog of 20,000 committed events into JetStream (file storage, acks awaited, rows marked).
func BenchmarkRelayBacklog(b *testing.B) {
	forEachBench(b, benchBacklog)
}

// BenchmarkRelayAtomic is BenchmarkRelayBacklog, and BenchmarkCommitToDelivery's steady 1,000
// events/s, on JetStream as flightbook deploys it (a sync on every write), with the stream
// taking atomic batches and without: what atomic batches save, and what they cost when the
// relay's batches are short.
//
//	go test -run '^$' -bench RelayAtomic -benchtime 2x ./outbox/
func BenchmarkRelayAtomic(b *testing.B) {
	for _, s := range stores {
		for _, atomic := range []bool{false, true} {
			name := fmt.Sprintf("%s/atomic=%v", s.name, atomic)
			b.Run("backlog/"+name, func(b *testing.B) { benchBacklog(b, s.open(b), deployedBroker(b, atomic)) })
			b.Run("steady/"+name, func(b *testing.B) { benchSteady(b, s.open(b), deployedBroker(b, atomic), 1000, false) })
		}
	}
}

func benchBacklog(b *testing.B, h *harness, br *broker) {
	const backlog = 20000
	ctx := context.Background()
	b.StopTimer() // only the drains are timed, not the inserts
	for i := range b.N {
		for j := 0; j < backlog; j += 1000 {
			testenv.Fatal(b, "add", h.add(ctx, events(br.ns, fmt.Sprintf("i%da%d", i, j), 0, 1000)...))
		}
		r := h.newRelay(br.js, RelayConfig{})
		b.StartTimer()
		stop := runRelay(b, r)
		for r.published.Load() < backlog {
			time.Sleep(200 * time.Microsecond)
		}
		b.StopTimer()
		stop()
	}
	if got, want := br.count(b), backlog*b.N; got != want {
		b.Fatalf("stream holds %d messages, want %d", got, want)
	}
	b.ReportMetric(float64(backlog*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkCommitToDelivery writes 1,000 events/s, one per transaction, each followed by Notify
// as a service would, and measures from each commit to a plain JetStream consumer receiving the
// event. Each iteration is three seconds of traffic.
func BenchmarkCommitToDelivery(b *testing.B) {
	const (
		rate      = 1000
		perRound  = 3 * rate
		producers = 4 // so that one slow commit does not hold the schedule back
	)
	forEachBench(b, func(b *testing.B, h *harness, br *broker) {
		ctx := context.Background()
		r := h.newRelay(br.js, RelayConfig{})
		runRelay(b, r)

		var mu sync.Mutex
		committed := map[string]time.Time{}
		received := map[string]time.Time{}
		cons, err := br.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverNewPolicy})
		testenv.Fatal(b, "consumer", err)
		cc, err := cons.Consume(func(m jetstream.Msg) {
			now := time.Now()
			mu.Lock()
			received[m.Headers().Get(jetstream.MsgIDHeader)] = now
			mu.Unlock()
		})
		testenv.Fatal(b, "consume", err)
		defer cc.Stop()

		var elapsed time.Duration
		for i := 0; b.Loop(); i++ {
			msgs := events(br.ns, fmt.Sprintf("round%d", i), 0, perRound)
			start := time.Now()
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					for k := p; k < perRound; k += producers {
						time.Sleep(time.Until(start.Add(time.Duration(k) * time.Second / rate)))
						if err := h.add(ctx, msgs[k]); err != nil {
							b.Error(err)
							return
						}
						now := time.Now()
						mu.Lock()
						committed[msgs[k].ID] = now
						mu.Unlock()
						r.Notify()
					}
				})
			}
			wg.Wait()
			elapsed += time.Since(start)
			waitFor(b, 30*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if len(received) < len(committed) {
					return fmt.Errorf("received %d of %d", len(received), len(committed))
				}
				return nil
			})
		}
		lat := make([]float64, 0, len(committed))
		for id, c := range committed {
			lat = append(lat, float64(received[id].Sub(c).Microseconds())/1000)
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(lat[len(lat)-1], "max-ms")
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
	})
}

// benchBrokers are the JetStream servers the benchmarks run against: the machine's server
// (nats-server 2.9 over TCP, as in production) and an embedded nats-server of the version in
// go.mod, which costs less CPU per message and so shows how much of a figure is the broker's.
var benchBrokers = []struct {
	name string
	open func(testing.TB) *broker
}{
	{"nats-server", sharedBroker},
	{"embedded", func(tb testing.TB) *broker {
		ns, _ := embeddedNATS(tb, tb.TempDir(), 0)
		return newBroker(tb, ns.ClientURL(), testenv.Name(), false)
	}},
}

// forEachBench runs bench for every store and broker.
func forEachBench(b *testing.B, bench func(b *testing.B, h *harness, br *broker)) {
	for _, s := range stores {
		for _, nb := range benchBrokers {
			b.Run(s.name+"/"+nb.name, func(b *testing.B) { bench(b, s.open(b), nb.open(b)) })
		}
	}
}

// BenchmarkRelaySteady offers a steady stream of small commits, as a busy service does: several
// producers commit 1-3 events per transaction at an offered rate, each commit followed by
// Notify, for three seconds per iteration. It reports the events committed per second (the
// producers fall short of the offer when the database cannot keep up), the events delivered
// per second (from the first commit until a plain consumer has every event), the largest
// unpublished backlog seen
// (sampled every 20 ms), and commit-to-delivery percentiles. A relay that keeps up delivers at
// the offered rate with a backlog of a few rows.
func BenchmarkRelaySteady(b *testing.B) {
	for _, rate := range []int{1000, 3000, 10000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			forEachBench(b, func(b *testing.B, h *harness, br *broker) { benchSteady(b, h, br, rate, false) })
		})
	}
	// As a service runs it on MySQL: the relay shares a pool of 20 connections with 64 producers
	// whose transactions each hold a connection for 20 ms (the statements of a POST).
	for _, rate := range []int{1000, 3000} {
		b.Run(fmt.Sprintf("shared-pool/rate=%d", rate), func(b *testing.B) {
			for _, nb := range benchBrokers {
				b.Run("mysql/"+nb.name, func(b *testing.B) { benchSteady(b, openMySQL("")(b), nb.open(b), rate, true) })
			}
		})
	}
}

func benchSteady(b *testing.B, h *harness, br *broker, rate int, sharedPool bool) {
	const seconds = 3
	ctx := context.Background()
	producers := 8
	add := h.add
	if sharedPool {
		producers = 64
		h.db.SetMaxOpenConns(20)
		add = func(ctx context.Context, msgs ...Message) error {
			tx, err := h.db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback() //nolint:errcheck
			if _, err := tx.ExecContext(ctx, "DO SLEEP(0.02)"); err != nil {
				return err
			}
			if err := AddMySQL(ctx, tx, msgs...); err != nil {
				return err
			}
			return tx.Commit()
		}
	}
	r := h.newRelay(br.js, RelayConfig{})
	runRelay(b, r)

	var mu sync.Mutex
	committed := map[string]time.Time{}
	received := map[string]time.Time{}
	cons, err := br.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverNewPolicy})
	testenv.Fatal(b, "consumer", err)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		mu.Lock()
		received[m.Headers().Get(jetstream.MsgIDHeader)] = now
		mu.Unlock()
	})
	testenv.Fatal(b, "consume", err)
	defer cc.Stop()

	var (
		elapsed, producing time.Duration
		maxBacklog         int64
	)
	for i := 0; b.Loop(); i++ {
		// Transactions of 1, 2 or 3 events in turn, 2 on average, so rate/2 commits a second.
		total := seconds * rate
		var txs [][]Message
		msgs := events(br.ns, fmt.Sprintf("round%d", i), 0, total)
		for k := 0; k < total; {
			n := min(1+len(txs)%3, total-k)
			txs = append(txs, msgs[k:k+n])
			k += n
		}
		start := time.Now()
		every := time.Duration(seconds) * time.Second / time.Duration(len(txs))
		sampling := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-sampling:
					return
				case <-t.C:
				}
				if n, err := h.count(ctx, "published_at IS NULL"); err == nil {
					maxBacklog = max(maxBacklog, n)
				}
			}
		})
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for k := p; k < len(txs); k += producers {
					time.Sleep(time.Until(start.Add(time.Duration(k) * every)))
					if err := add(ctx, txs[k]...); err != nil {
						b.Error(err)
						return
					}
					now := time.Now()
					mu.Lock()
					for _, m := range txs[k] {
						committed[m.ID] = now
					}
					mu.Unlock()
					r.Notify()
				}
			})
		}
		wg.Wait()
		producing += time.Since(start)
		waitFor(b, 60*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(received) < len(committed) {
				return fmt.Errorf("received %d of %d", len(received), len(committed))
			}
			return nil
		})
		elapsed += time.Since(start)
		close(sampling)
		sampler.Wait()
	}
	lat := make([]float64, 0, len(committed))
	for id, c := range committed {
		lat = append(lat, float64(received[id].Sub(c).Microseconds())/1000)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(maxBacklog), "max-backlog")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(len(lat))/producing.Seconds(), "committed/s")
	b.ReportMetric(0, "ns/op")
}
