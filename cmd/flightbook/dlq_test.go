package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/testenv"
)

// TestDLQCommand drives flightbook dlq end to end on the booking service's dead letters: the
// redrive builds the real booking handlers on MySQL from the FLIGHTBOOK_* variables. (The
// dlq package's tests cover the router's side: how a crashing handler's message gets there.)
// It sets environment variables, so it cannot run in parallel.
func TestDLQCommand(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	dsn := testenv.MySQL(t)
	t.Setenv("FLIGHTBOOK_MYSQL_DSN", dsn)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := mysql.Open(ctx, dsn, 2, log)
	testenv.Fatal(t, "mysql", err)
	defer db.Close()
	topo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	store := mysql.NewStore(db, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}, bookingmessaging.Emit(topo, outbox.AddMySQL))
	b, err := store.Create(ctx, "u1", 7, 2)
	testenv.Fatal(t, "create booking", err)

	nc, err := nats.Connect(natsURL)
	testenv.Fatal(t, "nats", err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))

	// Two SeatsHeld replies the booking service gave up on: one for its booking (the cause
	// since fixed), one for a booking it has never heard of (it will fail again).
	held := deadLetter(t, js, topo, events.SeatsHeld{BookingID: b.ID, FlightID: 7, Seats: 2, UnitPrice: 1000, Total: 2000, Currency: "INR"})
	stray := deadLetter(t, js, topo, events.SeatsHeld{BookingID: uuid.NewString(), FlightID: 7, Seats: 1, UnitPrice: 1000, Total: 1000, Currency: "INR"})

	dlq := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"dlq"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := dlq(args...)
		if err != nil {
			t.Fatalf("flightbook dlq %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	status := func() booking.Status {
		t.Helper()
		got, err := store.Get(ctx, b.ID)
		testenv.Fatal(t, "get booking", err)
		return got.Status
	}

	if out, err := dlq("--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "redrive") {
		t.Fatalf("dlq --help: %v\n%s", err, out)
	}
	if out, err := dlq("list", "--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "-booking") {
		t.Fatalf("dlq list --help: %v\n%s", err, out)
	}

	out := must("list")
	if !strings.Contains(out, "2 message(s)") || !strings.Contains(out, b.ID) || !strings.Contains(out, "seats-held") || !strings.Contains(out, "booking service was down") {
		t.Fatalf("list:\n%s", out)
	}
	if out := must("list", "--service", "flight"); !strings.Contains(out, "0 message(s)") {
		t.Fatalf("list --service flight:\n%s", out)
	}
	if out := must("list", "--booking", b.ID, "--json"); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"msg_id":"`+held+`"`) {
		t.Fatalf("list --booking --json:\n%s", out)
	}
	seqOf := func(msgID string) string {
		t.Helper()
		for _, line := range strings.Split(must("list"), "\n") {
			if strings.Contains(line, msgID) {
				return strings.Fields(line)[0]
			}
		}
		t.Fatalf("%s is not listed", msgID)
		return ""
	}
	out = must("show", seqOf(held))
	if !strings.Contains(out, `"booking_id": "`+b.ID+`"`) || !strings.Contains(out, consumer.HeaderDLQError) {
		t.Fatalf("show:\n%s", out)
	}

	out = must("redrive", "--dry-run")
	if !strings.Contains(out, "read 2, applied 0, skipped 2, failed 0 (dry run") || status() != booking.Pending {
		t.Fatalf("redrive --dry-run (booking %s):\n%s", status(), out)
	}

	out, err = dlq("redrive")
	if err == nil || !strings.Contains(out, "read 2, applied 1, skipped 0, failed 1") {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if status() != booking.Held {
		t.Fatalf("booking %s after redrive, want HELD", status())
	}
	out = must("list")
	if !strings.Contains(out, "1 message(s)") || !strings.Contains(out, stray) {
		t.Fatalf("list after redrive: the failed one should stay\n%s", out)
	}

	if _, err := dlq("purge"); err == nil {
		t.Fatal("purge with no selection was accepted")
	}
	seq := seqOf(stray)
	if out := must("purge", "--seq", seq, "--dry-run"); !strings.Contains(out, "would purge") || !strings.Contains(must("list"), stray) {
		t.Fatalf("purge --dry-run:\n%s", out)
	}
	if out := must("purge", "--seq", seq, "--reason", "no such booking"); !strings.Contains(out, "read 1, applied 1, skipped 0, failed 0") {
		t.Fatalf("purge:\n%s", out)
	}
	if out := must("list"); !strings.Contains(out, "0 message(s)") {
		t.Fatalf("list after purge:\n%s", out)
	}
	if _, err := dlq("show", seq); err == nil {
		t.Fatal("show of a purged message succeeded")
	}
}

// deadLetter stores ev, a reply the booking service's seats-held route read from the FLIGHT
// stream, in the DLQ as its router does after the last delivery fails, and returns the
// message id.
func deadLetter(t *testing.T, js jetstream.JetStream, topo events.Topology, ev events.Event) string {
	t.Helper()
	return deadLetterOf(t, js, topo, events.ServiceBooking, bookingmessaging.RouteHeld, events.StreamFlight, ev)
}

// deadLetterOf stores ev in the DLQ as the router of service does after the last delivery to
// route, which reads stream, fails, and returns the message id.
func deadLetterOf(t *testing.T, js jetstream.JetStream, topo events.Topology, service, route, stream string, ev events.Event) string {
	t.Helper()
	m, err := topo.Encode(ev)
	testenv.Fatal(t, "encode", err)
	h := nats.Header{}
	for k, v := range m.Header {
		if k != nats.MsgIdHdr {
			h[k] = v
		}
	}
	h.Set(consumer.HeaderDLQError, service+" service was down")
	h.Set(consumer.HeaderDLQPermanent, "false")
	h.Set(consumer.HeaderDLQAttempts, "5")
	h.Set(consumer.HeaderDLQService, service)
	h.Set(consumer.HeaderDLQRoute, route)
	h.Set(consumer.HeaderDLQOriginalSubject, m.Subject)
	h.Set(consumer.HeaderDLQOriginalStream, topo.StreamName(stream))
	h.Set(consumer.HeaderDLQOriginalSeq, strconv.Itoa(1))
	h.Set(consumer.HeaderDLQOriginalID, m.ID)
	subject := consumer.DLQSubject(topo.Namespace, service, route)
	_, err = js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: m.Data}, jetstream.WithMsgID("dlq:"+m.ID))
	testenv.Fatal(t, "dead-letter", err)
	return m.ID
}

// commandEnv points the operator commands run in-process at a fresh NATS namespace, through
// the FLIGHTBOOK_* variables they read (so the calling test cannot run in parallel).
func commandEnv(t *testing.T) (natsURL, namespace string) {
	t.Helper()
	natsURL, namespace = testenv.NATS(t)
	t.Setenv("FLIGHTBOOK_NATS_URL", natsURL)
	t.Setenv("FLIGHTBOOK_NATS_NAMESPACE", namespace)
	t.Setenv("FLIGHTBOOK_LOG_LEVEL", "warn")
	return natsURL, namespace
}
