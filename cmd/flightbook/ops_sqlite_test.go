package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	bookingsqlite "github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/services/flight"
	flightmessaging "github.com/flightbook/flightbook/services/flight/messaging"
	flightsqlite "github.com/flightbook/flightbook/services/flight/sqlite"
	"github.com/flightbook/flightbook/testenv"
)

// The operator commands on services that keep their data in SQLite files (flightbook dev, or
// FLIGHTBOOK_FLIGHT_SQLITE and FLIGHTBOOK_BOOKING_SQLITE set). Each test sets environment
// variables, so none can run in parallel.

// sqliteServices keeps both services on new SQLite files, as flightbook dev does, and points
// the server databases' settings at a closed port, so that a command which reached for them
// fails instead of quietly using this machine's servers. It returns the files' paths.
func sqliteServices(t *testing.T) (flightPath, bookingPath string) {
	t.Helper()
	flightPath, bookingPath = testenv.SQLite(t), testenv.SQLite(t)
	t.Setenv("FLIGHTBOOK_FLIGHT_SQLITE", flightPath)
	t.Setenv("FLIGHTBOOK_BOOKING_SQLITE", bookingPath)
	t.Setenv("FLIGHTBOOK_POSTGRES_URL", "postgres://postgres@127.0.0.1:1/flightbook?sslmode=disable")
	t.Setenv("FLIGHTBOOK_MYSQL_DSN", "root@tcp(127.0.0.1:1)/flightbook?parseTime=true")
	return flightPath, bookingPath
}

// openSQLite opens (creating and migrating) a service's SQLite file with the service's Open.
func openSQLite(t *testing.T, open func(context.Context, string, *slog.Logger) (*sql.DB, error), path string) *sql.DB {
	t.Helper()
	db, err := open(context.Background(), path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Fatal(t, "sqlite "+path, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// sqliteFlight schedules a flight of 10 seats in the flight service's SQLite file and returns
// its id and a count of its available seats and of all holds.
func sqliteFlight(t *testing.T, db *sql.DB) (id int64, seats func() (available, holds int)) {
	t.Helper()
	ctx := context.Background()
	cat := flightsqlite.NewCatalog(db)
	city, err := cat.CreateCity(ctx, flight.City{Name: "Delhi", Country: "IN"})
	testenv.Fatal(t, "city", err)
	for _, code := range []string{"DEL", "BOM"} {
		_, err := cat.CreateAirport(ctx, flight.Airport{Code: code, Name: code, CityID: city.ID})
		testenv.Fatal(t, "airport", err)
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "A320", Capacity: 10})
	testenv.Fatal(t, "airplane", err)
	dep := time.Now().Add(72 * time.Hour).UTC()
	f, err := cat.CreateFlight(ctx, flight.NewFlight{FlightNumber: "AI101", AirplaneID: plane.ID, DepartureAirport: "DEL",
		ArrivalAirport: "BOM", DepartureTime: dep, ArrivalTime: dep.Add(2 * time.Hour), FareAmount: 500000, Currency: "INR"})
	testenv.Fatal(t, "flight", err)
	return f.ID, func() (available, holds int) {
		t.Helper()
		testenv.Fatal(t, "seats", db.QueryRowContext(ctx, `SELECT available_seats FROM flights WHERE id = ?`, f.ID).Scan(&available))
		testenv.Fatal(t, "holds", db.QueryRowContext(ctx, `SELECT count(*) FROM holds`).Scan(&holds))
		return available, holds
	}
}

// sqliteBookings is the booking service's store on its SQLite file.
func sqliteBookings(t *testing.T, path string, topo events.Topology) *bookingsqlite.Store {
	t.Helper()
	db := openSQLite(t, bookingsqlite.Open, path)
	return bookingsqlite.NewStore(db, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute},
		bookingmessaging.Emit(topo, outbox.AddSQLite))
}

// runCommand runs flightbook with args in-process and returns its output, stdout then stderr.
func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestReplayCommandSQLite replays seat hold requests into the flight service's hold handler and
// a SeatsHeld reply into the booking service's, each on its SQLite file: the first replay
// applies them, the second finds them in the inbox.
func TestReplayCommandSQLite(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	flightPath, bookingPath := sqliteServices(t)
	flightFile := openSQLite(t, flightsqlite.Open, flightPath)
	flightID, seats := sqliteFlight(t, flightFile)
	bookingTopo := events.Topology{Namespace: ns, Source: "flightbook/booking"}
	flightTopo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	store := sqliteBookings(t, bookingPath, bookingTopo)
	b, err := store.Create(ctx, "u1", 7, 2)
	testenv.Fatal(t, "create booking", err)

	js := jetStream(t, natsURL)
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, bookingTopo, events.StreamConfig{}))
	for _, ev := range []events.Event{
		events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: flightID, UserID: "u1", Seats: 2},
		events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: flightID, UserID: "u2", Seats: 2},
		events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: flightID, UserID: "u3", Seats: 2},
	} {
		m, err := bookingTopo.Encode(ev)
		testenv.Fatal(t, "encode", err)
		_, err = js.PublishMsg(ctx, m.NATS())
		testenv.Fatal(t, "publish", err)
	}
	m, err := flightTopo.Encode(events.SeatsHeld{BookingID: b.ID, FlightID: 7, Seats: 2, UnitPrice: 1000, Total: 2000, Currency: "INR"})
	testenv.Fatal(t, "encode", err)
	_, err = js.PublishMsg(ctx, m.NATS())
	testenv.Fatal(t, "publish", err)

	replayCmd := func(args ...string) string {
		t.Helper()
		out, err := runCommand(t, append([]string{"replay"}, args...)...)
		if err != nil {
			t.Fatalf("flightbook replay %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out := replayCmd("--stream", "BOOKING", "--to-consumer", "flight/seat-hold", "--dry-run"); !strings.Contains(out, "matched 3, would apply 3, skipped 0") {
		t.Fatalf("dry run:\n%s", out)
	}
	if avail, holds := seats(); avail != 10 || holds != 0 {
		t.Fatalf("a dry run changed the flight database: %d available, %d holds", avail, holds)
	}
	for run, want := range []string{"applied 3, skipped 0", "applied 0, skipped 3"} {
		if out := replayCmd("--stream", "BOOKING", "--to-consumer", "flight/seat-hold"); !strings.Contains(out, "matched 3, "+want+" (already processed), failed 0") {
			t.Fatalf("flight replay run %d:\n%s", run+1, out)
		}
		if avail, holds := seats(); avail != 4 || holds != 3 {
			t.Fatalf("after flight replay run %d: %d seats available and %d holds, want 4 and 3", run+1, avail, holds)
		}
	}
	var replies int
	testenv.Fatal(t, "outbox", flightFile.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&replies))
	if replies != 3 {
		t.Fatalf("%d replies queued in the flight outbox, want 3", replies)
	}

	for run, want := range []string{"applied 1, skipped 0", "applied 0, skipped 1"} {
		if out := replayCmd("--stream", "FLIGHT", "--to-consumer", "booking/seats-held"); !strings.Contains(out, "matched 1, "+want+" (already processed), failed 0") {
			t.Fatalf("booking replay run %d:\n%s", run+1, out)
		}
		got, err := store.Get(ctx, b.ID)
		testenv.Fatal(t, "get booking", err)
		if got.Status != booking.Held {
			t.Fatalf("booking %s after replay run %d, want HELD", got.Status, run+1)
		}
	}
}

// TestDLQRedriveSQLite redrives a dead-lettered message of each service into its handler on
// the service's SQLite file.
func TestDLQRedriveSQLite(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	flightPath, bookingPath := sqliteServices(t)
	flightID, seats := sqliteFlight(t, openSQLite(t, flightsqlite.Open, flightPath))
	bookingTopo := events.Topology{Namespace: ns, Source: "flightbook/booking"}
	flightTopo := events.Topology{Namespace: ns, Source: "flightbook/flight"}
	store := sqliteBookings(t, bookingPath, bookingTopo)
	b, err := store.Create(ctx, "u1", flightID, 2)
	testenv.Fatal(t, "create booking", err)

	js := jetStream(t, natsURL)
	testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, bookingTopo, events.StreamConfig{}))
	deadLetterOf(t, js, bookingTopo, events.ServiceFlight, flightmessaging.RouteHold, events.StreamBooking,
		events.SeatHoldRequested{BookingID: b.ID, FlightID: flightID, UserID: "u1", Seats: 2})
	deadLetter(t, js, flightTopo, events.SeatsHeld{BookingID: b.ID, FlightID: flightID, Seats: 2, UnitPrice: 5000, Total: 10000, Currency: "INR"})

	if out, err := runCommand(t, "dlq", "redrive", "--dry-run"); err != nil || !strings.Contains(out, "read 2, applied 0, skipped 2, failed 0 (dry run") {
		t.Fatalf("redrive --dry-run: %v\n%s", err, out)
	}
	if out, err := runCommand(t, "dlq", "redrive"); err != nil || !strings.Contains(out, "read 2, applied 2, skipped 0, failed 0") {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if avail, holds := seats(); avail != 8 || holds != 1 {
		t.Fatalf("after the redrive %d seats available and %d holds, want 8 and 1", avail, holds)
	}
	got, err := store.Get(ctx, b.ID)
	testenv.Fatal(t, "get booking", err)
	if got.Status != booking.Held {
		t.Fatalf("booking %s after the redrive, want HELD", got.Status)
	}
	if out, err := runCommand(t, "dlq", "list"); err != nil || !strings.Contains(out, "0 message(s)") {
		t.Fatalf("list after the redrive: %v\n%s", err, out)
	}
}

// TestOutboxRepublishSQLite republishes each service's outbox from its SQLite file into a
// stream that lost it: a dry run counts the rows, every run stores each event once, and a
// later --since finds none.
func TestOutboxRepublishSQLite(t *testing.T) {
	ctx := context.Background()
	natsURL, ns := commandEnv(t)
	flightPath, bookingPath := sqliteServices(t)
	js := jetStream(t, natsURL)
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		service, path, stream string
		open                  func(context.Context, string, *slog.Logger) (*sql.DB, error)
		evs                   []events.Event
	}{
		{events.ServiceFlight, flightPath, events.StreamFlight, flightsqlite.Open, []events.Event{
			events.SeatsHeld{BookingID: uuid.NewString(), FlightID: 1, Seats: 2, UnitPrice: 100, Total: 200, Currency: "INR"},
			events.SeatsReleased{BookingID: uuid.NewString(), FlightID: 1, Seats: 1},
		}},
		{events.ServiceBooking, bookingPath, events.StreamBooking, bookingsqlite.Open, []events.Event{
			events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: 1, UserID: "u1", Seats: 2},
			events.SeatReleaseRequested{BookingID: uuid.NewString(), FlightID: 1, Seats: 2, Reason: events.ReleaseCancelled},
			events.SeatHoldRequested{BookingID: uuid.NewString(), FlightID: 1, UserID: "u2", Seats: 1},
		}},
	} {
		topo := events.Topology{Namespace: ns, Source: "flightbook/" + c.service}
		db := openSQLite(t, c.open, c.path)
		want := map[string]int{}
		var msgs []outbox.Message
		for _, ev := range c.evs {
			m, err := topo.Encode(ev)
			testenv.Fatal(t, "encode", err)
			want[m.ID] = 1
			msgs = append(msgs, outbox.Message(m))
		}
		tx, err := db.BeginTx(ctx, nil)
		testenv.Fatal(t, "begin", err)
		testenv.Fatal(t, "outbox", outbox.AddSQLite(ctx, tx, msgs...))
		testenv.Fatal(t, "commit", tx.Commit())
		testenv.Fatal(t, "streams", events.EnsureStreams(ctx, js, topo, events.StreamConfig{}))
		stream := topo.StreamName(c.stream)

		n := strconv.Itoa(len(msgs))
		republish := func(args ...string) string {
			t.Helper()
			out, err := runCommand(t, append([]string{"outbox", "republish", "--service", c.service}, args...)...)
			if err != nil {
				t.Fatalf("flightbook outbox republish --service %s %s: %v\n%s", c.service, strings.Join(args, " "), err, out)
			}
			return out
		}
		if out := republish("--since", since, "--dry-run"); !strings.Contains(out, "would republish "+n+" "+c.service+" outbox row(s)") {
			t.Fatalf("%s dry run:\n%s", c.service, out)
		}
		if out := republish("--since", later, "--dry-run"); !strings.Contains(out, "would republish 0 "+c.service) {
			t.Fatalf("%s dry run since a later time:\n%s", c.service, out)
		}
		if got := streamIDs(t, js, stream); len(got) != 0 {
			t.Fatalf("a dry run published %v", got)
		}
		for run := 1; run <= 2; run++ {
			if out := republish("--since", since); !strings.Contains(out, "republished "+n+" "+c.service+" outbox row(s)") {
				t.Fatalf("%s run %d:\n%s", c.service, run, out)
			}
			if got := streamIDs(t, js, stream); !maps.Equal(got, want) {
				t.Fatalf("after %s run %d the stream holds %v, want every event once: %v", c.service, run, got, want)
			}
		}
		if out := republish("--since", later); !strings.Contains(out, "republished 0 "+c.service) {
			t.Fatalf("%s republish since a later time:\n%s", c.service, out)
		}
	}
}
