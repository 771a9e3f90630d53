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
	const backlog = 20000
	forEachBench(b, func(b *testing.B, h *harness, br *broker) {
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
	})
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
		return newBroker(tb, ns.ClientURL(), testenv.Name())
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
