package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// TestOutboxRepublishCommand loses the BOOKING stream after the booking service's events were
// published, recreates it empty, and has flightbook outbox republish put every event back:
// exactly once, however often it runs. It sets environment variables, so it cannot run in
// parallel.
func TestOutboxRepublishCommand(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	dsn := testenv.MySQL(t)
	t.Setenv("FLIGHTBOOK_MYSQL_DSN", dsn)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	js := jetStream(t, natsURL)
	topo := events.Topology{Namespace: ns, Source: "flightbook/booking"}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))
	db, err := mysql.Open(ctx, dsn, 4, log)
	testenv.Fatal(t, "mysql", err)
	defer db.Close()
	store := mysql.NewStore(db, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}, bookingmessaging.Emit(topo, outbox.AddMySQL))
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	for i := range 4 {
		_, err := store.Create(ctx, "u"+strconv.Itoa(i), 7, 1)
		testenv.Fatal(t, "create booking", err)
	}

	// The service's relay publishes them.
	relay := outbox.NewMySQLRelay(db, js, outbox.RelayConfig{LockName: ns}, log)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	awaitCond(t, "the outbox published", func() bool {
		st, err := relay.Stats(ctx)
		testenv.Fatal(t, "outbox stats", err)
		return st.Pending == 0
	})
	stop()
	testenv.Fatal(t, "relay", <-done)

	var ids []string
	rows, err := db.QueryContext(ctx, `SELECT msg_id FROM outbox ORDER BY id`)
	testenv.Fatal(t, "outbox ids", err)
	for rows.Next() {
		var id string
		testenv.Fatal(t, "scan", rows.Scan(&id))
		ids = append(ids, id)
	}
	testenv.Fatal(t, "outbox ids", rows.Err())
	if len(ids) < 4 {
		t.Fatalf("%d outbox rows for 4 bookings", len(ids))
	}
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
	}
	stream := topo.StreamName(events.StreamBooking)
	if got := streamIDs(t, js, stream); !maps.Equal(got, want) {
		t.Fatalf("the stream holds %v before the loss, want %v", got, want)
	}

	// The broker loses the stream; the services would recreate it empty at start-up.
	testenv.Fatal(t, "delete stream", js.DeleteStream(ctx, stream))
	testenv.Fatal(t, "recreate streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))
	if got := streamIDs(t, js, stream); len(got) != 0 {
		t.Fatalf("the recreated stream holds %v", got)
	}

	outboxCmd := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"outbox"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := outboxCmd(args...)
		if err != nil {
			t.Fatalf("flightbook outbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out, err := outboxCmd("--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "republish") {
		t.Fatalf("outbox --help: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{},
		{"replay"},
		{"republish", "--since", since}, // no service
		{"republish", "--service", "payments", "--since", since},         // no such service
		{"republish", "--service", "booking"},                            // no since
		{"republish", "--service", "booking", "--since", "yesterday"},    // not RFC 3339
		{"republish", "--service", "booking", "--since", since, "extra"}, // stray argument
	} {
		if out, err := outboxCmd(bad...); err == nil {
			t.Errorf("flightbook outbox %s was accepted:\n%s", strings.Join(bad, " "), out)
		}
	}

	n := strconv.Itoa(len(ids))
	if out := must("republish", "--service", "booking", "--since", since, "--dry-run"); !strings.Contains(out, "would republish "+n+" booking outbox row(s)") {
		t.Fatalf("dry run:\n%s", out)
	}
	if got := streamIDs(t, js, stream); len(got) != 0 {
		t.Fatalf("a dry run published %v", got)
	}
	for run := 1; run <= 2; run++ {
		if out := must("republish", "--service", "booking", "--since", since); !strings.Contains(out, "republished "+n+" booking outbox row(s)") {
			t.Fatalf("run %d:\n%s", run, out)
		}
		if got := streamIDs(t, js, stream); !maps.Equal(got, want) {
			t.Fatalf("after run %d the stream holds %v, want every event once: %v", run, got, want)
		}
	}
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := must("republish", "--service", "booking", "--since", later); !strings.Contains(out, "republished 0 booking") {
		t.Fatalf("republish since a later time:\n%s", out)
	}
}

// TestOutboxRepublishFlight republishes the flight service's outbox (PostgreSQL) into a FLIGHT
// stream that never received it. It sets environment variables, so it cannot run in parallel.
func TestOutboxRepublishFlight(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	pgURL := testenv.Postgres(t)
	t.Setenv("FLIGHTBOOK_POSTGRES_URL", pgURL)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	pool, err := postgres.Open(ctx, pgURL, 2, log)
	testenv.Fatal(t, "postgres", err)
	defer pool.Close()
	topo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	want := map[string]int{}
	testenv.Fatal(t, "outbox", postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
		var msgs []outbox.Message
		for _, ev := range []events.Event{
			events.SeatsHeld{BookingID: uuid.NewString(), FlightID: 1, Seats: 2, UnitPrice: 100, Total: 200, Currency: "INR"},
			events.SeatsReleased{BookingID: uuid.NewString(), FlightID: 1, Seats: 1},
		} {
			m, err := topo.Encode(ev)
			if err != nil {
				return err
			}
			want[m.ID] = 1
			msgs = append(msgs, outbox.Message(m))
		}
		return outbox.AddPostgres(ctx, tx, msgs...)
	}))

	// No stream yet: the command creates the streams as the service would at start-up.
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"outbox", "republish", "--service", "flight", "--since", since}, &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "republished 2 flight outbox row(s)") {
		t.Fatalf("republish: %v\n%s%s", err, out.String(), errOut.String())
	}
	js := jetStream(t, natsURL)
	if got := streamIDs(t, js, topo.StreamName(events.StreamFlight)); !maps.Equal(got, want) {
		t.Fatalf("the FLIGHT stream holds %v, want %v", got, want)
	}
}

func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "nats", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	return js
}

// streamIDs counts the messages of stream by Nats-Msg-Id.
func streamIDs(t *testing.T, js jetstream.JetStream, stream string) map[string]int {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	testenv.Fatal(t, "stream", err)
	info, err := s.Info(ctx)
	testenv.Fatal(t, "stream info", err)
	ids := map[string]int{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		testenv.Fatal(t, "message "+strconv.FormatUint(seq, 10), err)
		ids[m.Header.Get(nats.MsgIdHdr)]++
	}
	return ids
}

// awaitCond polls cond until it holds or 30 seconds pass.
func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
