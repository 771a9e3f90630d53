package status_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/status"
	"github.com/flightbook/flightbook/testenv"
)

// TestCollect runs a route whose handler fails every message until it is dead-lettered, with
// more messages waiting behind it, and an outbox with unpublished rows: the report shows the
// consumer's backlog, the dead letter under its route and the outbox's pending rows.
func TestCollect(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "nats", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	topo := events.Topology{Namespace: ns, Source: "test"}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))

	router, err := consumer.New(nc, js, "flight", ns, consumer.Config{
		AckWait: 5 * time.Second, MaxDeliver: 2, Backoff: []time.Duration{10 * time.Millisecond}, Concurrency: 1,
	}, log)
	testenv.Fatal(t, "router", err)
	subject := topo.Subject(events.SeatHoldRequested{}.Subject())
	block := make(chan struct{})
	router.Handle("seat-hold-requested", topo.StreamName(events.StreamBooking), subject, func(ctx context.Context, d consumer.Delivery) error {
		if d.ID == "poison" {
			return consumer.Permanent(io.ErrUnexpectedEOF)
		}
		<-block // hold the others, so they stay pending
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	t.Cleanup(func() { close(block); cancel(); <-done })
	<-router.Running()

	for _, id := range []string{"poison", "a", "b", "c"} {
		m := nats.NewMsg(subject)
		m.Header.Set(nats.MsgIdHdr, id)
		_, err := js.PublishMsg(ctx, m)
		testenv.Fatal(t, "publish", err)
	}
	src := status.Source{JS: js, Routes: router.Routes(), Namespace: ns, Service: "flight", DLQStream: topo.StreamName(events.StreamDLQ)}
	var r status.Report
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err = status.Collect(ctx, src)
		testenv.Fatal(t, "collect", err)
		if r.DLQ.Count == 1 && len(r.Consumers) == 1 && r.Consumers[0].Pending+uint64(r.Consumers[0].AckPending) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report never showed 1 dead letter and 3 waiting messages: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.DLQ.ByRoute["seat-hold-requested"] != 1 {
		t.Fatalf("dead letters by route: %v", r.DLQ.ByRoute)
	}
}
