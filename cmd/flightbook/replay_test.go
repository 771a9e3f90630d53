package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
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

// TestReplayCommand drives flightbook replay end to end with no service running: the replay
// itself is what processes three seat hold requests, through the flight service's real hold
// handler on PostgreSQL built from the FLIGHTBOOK_* variables; run again, it finds them all
// in the inbox. It sets environment variables, so it cannot run in parallel.
func TestReplayCommand(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	pgURL := testenv.Postgres(t)
	t.Setenv("FLIGHTBOOK_POSTGRES_URL", pgURL)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := postgres.Open(ctx, pgURL, 2, log)
	testenv.Fatal(t, "postgres", err)
	defer pool.Close()
	var city, plane, flightID int64
	testenv.Fatal(t, "city", pool.QueryRow(ctx, `INSERT INTO cities (name, country) VALUES ('Delhi', 'IN') RETURNING id`).Scan(&city))
	_, err = pool.Exec(ctx, `INSERT INTO airports (code, name, city_id) VALUES ('DEL', 'Delhi', $1), ('BOM', 'Mumbai', $1)`, city)
	testenv.Fatal(t, "airports", err)
	testenv.Fatal(t, "airplane", pool.QueryRow(ctx, `INSERT INTO airplanes (model, capacity) VALUES ('A320', 10) RETURNING id`).Scan(&plane))
	dep := time.Now().Add(72 * time.Hour)
	testenv.Fatal(t, "flight", pool.QueryRow(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, total_seats, available_seats)
		VALUES ('AI101', $1, 'DEL', 'BOM', $2, $3, 500000, 'INR', 10, 10) RETURNING id`, plane, dep, dep.Add(2*time.Hour)).Scan(&flightID))

	nc, err := nats.Connect(natsURL)
	testenv.Fatal(t, "nats", err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	topo := events.Topology{Namespace: ns, Source: "flightbook/booking"}
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))
	for range 3 {
		m, err := topo.Encode(events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: flightID, UserID: "u1", Seats: 2})
		testenv.Fatal(t, "encode", err)
		_, err = js.PublishMsg(ctx, m.NATS())
		testenv.Fatal(t, "publish", err)
	}

	replayCmd := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"replay"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := replayCmd(args...)
		if err != nil {
			t.Fatalf("flightbook replay %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	seats := func() (available int, holds int) {
		t.Helper()
		testenv.Fatal(t, "seats", pool.QueryRow(ctx, `SELECT available_seats FROM flights WHERE id = $1`, flightID).Scan(&available))
		testenv.Fatal(t, "holds", pool.QueryRow(ctx, `SELECT count(*) FROM holds`).Scan(&holds))
		return available, holds
	}

	if out, err := replayCmd("--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "--to-consumer") {
		t.Fatalf("replay --help: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"--to-consumer", "flight/seat-hold"}, // no stream
		{"--stream", "DLQ", "--to-consumer", "flight/seat-hold"},
		{"--stream", "BOOKING"}, // no target
		{"--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--republish-to", "booking.copies"},
		{"--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--from-seq", "2", "--since", "2026-01-01T00:00:00Z"},
		{"--stream", "BOOKING", "--to-consumer", "flight/no-such-route"},
		{"--stream", "FLIGHT", "--to-consumer", "flight/seat-hold"}, // the route reads BOOKING
		{"--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--subject", "booking.saga.seat-release-requested"},
	} {
		if out, err := replayCmd(bad...); err == nil {
			t.Errorf("flightbook replay %s was accepted:\n%s", strings.Join(bad, " "), out)
		}
	}
	if _, err := replayCmd("--stream", "BOOKING", "--to-consumer", "flight/no-such-route"); err == nil || !strings.Contains(err.Error(), "flight/seat-hold") {
		t.Errorf("an unknown route's error does not list the routes: %v", err)
	}

	out := must("--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--dry-run")
	if !strings.Contains(out, "read 3 (stream sequences 1..3), matched 3, would apply 3, skipped 0 (already processed), failed 0 (dry run") {
		t.Fatalf("dry run:\n%s", out)
	}
	if avail, holds := seats(); avail != 10 || holds != 0 {
		t.Fatalf("a dry run changed the database: %d available, %d holds", avail, holds)
	}

	out = must("--stream", "BOOKING", "--to-consumer", "flight/seat-hold")
	if !strings.Contains(out, "matched 3, applied 3, skipped 0 (already processed), failed 0") {
		t.Fatalf("replay:\n%s", out)
	}
	if avail, holds := seats(); avail != 4 || holds != 3 {
		t.Fatalf("after the replay %d seats available and %d holds, want 4 and 3", avail, holds)
	}
	var replies int
	testenv.Fatal(t, "outbox", pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&replies))
	if replies != 3 {
		t.Fatalf("%d replies queued in the outbox, want 3", replies)
	}

	out = must("--stream", "booking", "--to-consumer", "flight/seat-hold", "--subject", "booking.saga.seat-hold-requested")
	if !strings.Contains(out, "matched 3, applied 0, skipped 3 (already processed), failed 0") {
		t.Fatalf("replay again:\n%s", out)
	}
	if avail, holds := seats(); avail != 4 || holds != 3 {
		t.Fatalf("replaying again changed the seats: %d available, %d holds", avail, holds)
	}
	var booking string
	testenv.Fatal(t, "a booking", pool.QueryRow(ctx, `SELECT booking_id FROM holds ORDER BY booking_id LIMIT 1`).Scan(&booking))
	if out := must("--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--booking", booking, "--from-seq", "1"); !strings.Contains(out, "read 3 (stream sequences 1..3), matched 1, applied 0, skipped 1") {
		t.Fatalf("replay of one booking:\n%s", out)
	}

	// Copies to another subject of the same stream: stored once, however often the replay runs.
	for run, want := range []string{"applied 3, skipped 0", "applied 0, skipped 3"} {
		out := must("--stream", "BOOKING", "--subject", "booking.saga.seat-hold-requested", "--republish-to", "booking.copies.hold")
		if !strings.Contains(out, "matched 3, "+want) {
			t.Fatalf("republish run %d:\n%s", run+1, out)
		}
	}
	s, err := js.Stream(ctx, topo.StreamName(events.StreamBooking))
	testenv.Fatal(t, "stream", err)
	copies := topo.Subject("booking.copies.hold")
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(copies))
	testenv.Fatal(t, "stream info", err)
	if n := info.State.Subjects[copies]; n != 3 {
		t.Fatalf("%d copies on %s, want 3", n, copies)
	}
}

// TestReplayCommandBooking replays a SeatsHeld reply into the booking service's real handler
// on MySQL: the first replay moves the booking to HELD, the second finds the reply in the
// inbox. It sets environment variables, so it cannot run in parallel.
func TestReplayCommandBooking(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	dsn := testenv.MySQL(t)
	t.Setenv("FLIGHTBOOK_MYSQL_DSN", dsn)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	db, err := mysql.Open(ctx, dsn, 2, log)
	testenv.Fatal(t, "mysql", err)
	defer db.Close()
	flightTopo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	store := mysql.NewStore(db, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute},
		bookingmessaging.Emit(events.Topology{Namespace: ns, Source: "flightbook/booking"}, outbox.AddMySQL))
	b, err := store.Create(ctx, "u1", 7, 2)
	testenv.Fatal(t, "create booking", err)

	js := jetStream(t, natsURL)
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, flightTopo, events.StreamConfig{}))
	m, err := flightTopo.Encode(events.SeatsHeld{BookingID: b.ID, FlightID: 7, Seats: 2, UnitPrice: 1000, Total: 2000, Currency: "INR"})
	testenv.Fatal(t, "encode", err)
	_, err = js.PublishMsg(ctx, m.NATS())
	testenv.Fatal(t, "publish", err)

	status := func() booking.Status {
		t.Helper()
		got, err := store.Get(ctx, b.ID)
		testenv.Fatal(t, "get booking", err)
		return got.Status
	}
	for i, want := range []string{"applied 1, skipped 0", "applied 0, skipped 1"} {
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"replay", "--stream", "FLIGHT", "--to-consumer", "booking/seats-held"}, &out, &errOut)
		if err != nil || !strings.Contains(out.String(), "matched 1, "+want+" (already processed), failed 0") {
			t.Fatalf("replay run %d: %v\n%s%s", i+1, err, out.String(), errOut.String())
		}
		if s := status(); s != booking.Held {
			t.Fatalf("booking %s after replay run %d, want HELD", s, i+1)
		}
	}
}
