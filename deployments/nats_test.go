package deployments

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"sigs.k8s.io/yaml"
)

// readYAML decodes a YAML file of this directory into v.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestNATSConfigs parses both server configs as nats-server does and checks that JetStream
// syncs every write. Not parallel: cluster.conf takes its server name from the environment.
func TestNATSConfigs(t *testing.T) {
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	for _, tt := range []struct {
		file   string
		routes int
	}{
		{"nats/single-node.conf", 0},
		{"nats/cluster.conf", 3},
	} {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			opts, err := server.ProcessConfigFile(tt.file)
			if err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			if !opts.JetStream || !opts.SyncAlways {
				t.Errorf("jetstream %v, sync always %v; want both", opts.JetStream, opts.SyncAlways)
			}
			if opts.StoreDir == "" || opts.JetStreamMaxStore <= 0 {
				t.Errorf("store_dir %q, max_file_store %d: want both set", opts.StoreDir, opts.JetStreamMaxStore)
			}
			if opts.ServerName == "" {
				t.Error("no server_name: JetStream needs a stable one")
			}
			if opts.Port != 4222 || opts.HTTPPort != 8222 {
				t.Errorf("client port %d, monitoring port %d; want 4222 and 8222", opts.Port, opts.HTTPPort)
			}
			if len(opts.Routes) != tt.routes {
				t.Errorf("%d routes, want %d", len(opts.Routes), tt.routes)
			}
			if tt.routes > 0 && (opts.Cluster.Name == "" || opts.Cluster.Port != 6222) {
				t.Errorf("cluster name %q port %d; want a name and 6222", opts.Cluster.Name, opts.Cluster.Port)
			}

			// The server accepts the whole configuration (its own validation runs in
			// NewServer), with the store and ports moved to this test's.
			opts.StoreDir = t.TempDir()
			opts.Port, opts.HTTPPort = -1, -1
			opts.Host, opts.HTTPHost = "127.0.0.1", "127.0.0.1"
			if tt.routes > 0 {
				opts.Cluster.Port, opts.Cluster.Host = -1, "127.0.0.1"
			}
			s, err := server.NewServer(opts)
			if err != nil {
				t.Fatalf("nats-server rejects %s: %v", tt.file, err)
			}
			if tt.routes > 0 {
				// Routes to nats-2 and nats-3 cannot be reached here; NewServer's
				// validation is as far as a single machine can go.
				return
			}
			s.Start()
			t.Cleanup(s.Shutdown)
			if !s.ReadyForConnections(10 * time.Second) {
				t.Fatal("server did not start")
			}
			if cfg := s.JetStreamConfig(); cfg == nil || !cfg.SyncAlways {
				t.Fatalf("running server's JetStream config %+v, want sync always", cfg)
			}
			// A stream like the services' accepts a publish.
			js := connect(t, s.ClientURL())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "BOOKING", Subjects: []string{"booking.>"}, Storage: jetstream.FileStorage,
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "booking.created", []byte("{}")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func connect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// BenchmarkJetStreamSync measures what sync_interval: always costs on this machine's disk: one
// file-storage stream, 256-byte messages, published one at a time (each waiting for its ack,
// as a latency-bound publisher does), in windows of 100 (as the outbox relay publishes a short
// batch) and in atomic batches of 100 (as it publishes a backlog), with the default two-minute
// sync and with a sync on every write.
//
//	go test -run '^$' -bench JetStreamSync -benchtime 2000x ./deployments/
func BenchmarkJetStreamSync(b *testing.B) {
	for _, always := range []bool{false, true} {
		mode := "interval"
		if always {
			mode = "always"
		}
		for _, window := range []int{1, 100} {
			b.Run(fmt.Sprintf("sync=%s/window=%d", mode, window), func(b *testing.B) {
				benchmarkPublish(b, always, window)
			})
		}
		b.Run(fmt.Sprintf("sync=%s/atomic=100", mode), func(b *testing.B) {
			benchmarkPublishStreams(b, always, -100, 1)
		})
	}
}

// BenchmarkJetStreamSyncStreams measures whether spreading messages over more streams raises
// what a sync on every write allows: each stream stores and syncs its messages one at a time,
// but different streams' syncs can overlap. Each stream gets b.N/streams messages from a
// publisher of its own, in windows of 100. On an idle machine they do overlap; under a saga
// load, with the databases syncing too, four streams gained nothing (docs/performance.md).
//
//	go test -run '^$' -bench JetStreamSyncStreams -benchtime 4000x ./deployments/
func BenchmarkJetStreamSyncStreams(b *testing.B) {
	for _, streams := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			benchmarkPublishStreams(b, true, 100, streams)
		})
	}
}

func benchmarkPublish(b *testing.B, always bool, window int) {
	benchmarkPublishStreams(b, always, window, 1)
}

// benchmarkPublishStreams publishes b.N messages over streams streams in windows of window
// messages, or in atomic batches of -window messages if window is negative.
func benchmarkPublishStreams(b *testing.B, always bool, window, streams int) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: b.TempDir(),
		SyncAlways: always, NoLog: true, NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		b.Fatal(err)
	}
	s.Start()
	b.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("server did not start")
	}
	js := connect(b, s.ClientURL())
	ctx := context.Background()
	for i := range streams {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: fmt.Sprintf("BENCH%d", i), Subjects: []string{fmt.Sprintf("bench%d.>", i)}, Storage: jetstream.FileStorage,
			AllowAtomicPublish: window < 0,
		}); err != nil {
			b.Fatal(err)
		}
	}
	msg := []byte(strings.Repeat("x", 256))
	per := max(b.N/streams, 1)

	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, streams)
	for i := range streams {
		go func() {
			subject := fmt.Sprintf("bench%d.msg", i)
			if window < 0 {
				errs <- publishAtomic(js, subject, msg, per, -window)
				return
			}
			errs <- publish(js, subject, msg, per, window)
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(per*streams)/time.Since(start).Seconds(), "msgs/s")
}

// publish sends n messages to subject, window at a time, each window waiting for its acks.
func publish(js jetstream.JetStream, subject string, msg []byte, n, window int) error {
	for sent := 0; sent < n; {
		w := min(window, n-sent)
		futures := make([]jetstream.PubAckFuture, 0, w)
		for range w {
			f, err := js.PublishAsync(subject, msg)
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			}
		}
		sent += w
	}
	return nil
}

// publishAtomic sends n messages to subject in atomic batches of size, each waiting for its
// commit's ack: the messages before the commit go without a reply subject, as the outbox relay
// sends them (outbox/atomic.go).
func publishAtomic(js jetstream.JetStream, subject string, msg []byte, n, size int) error {
	for sent := 0; sent < n; {
		k := min(size, n-sent)
		id := nuid.Next()
		for i := 1; i <= k; i++ {
			m := &nats.Msg{Subject: subject, Data: msg, Header: nats.Header{}}
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
			if i < k {
				if err := js.Conn().PublishMsg(m); err != nil {
					return err
				}
				continue
			}
			m.Header.Set("Nats-Batch-Commit", "1")
			if _, err := js.PublishMsg(context.Background(), m); err != nil {
				return err
			}
		}
		sent += k
	}
	return nil
}
