package messaging_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/testenv"
)

// TestHandlersOnEveryStore delivers the flight service's replies and catalogue events straight
// to the handlers (no broker), on each store: a reply moves its booking once however often it
// is delivered, its effects land in that store's outbox in the same transaction, and a reply
// for an unknown booking is permanent.
func TestHandlersOnEveryStore(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store booking.Store, db *sql.DB) {
		ctx := context.Background()
		changes := &booking.Changes{}
		h := bookingmessaging.New(store, testTopo, testLog).WithChanges(changes)
		deliver := func(route string, ev events.Event, id string) error {
			m, err := testTopo.Encode(ev)
			testenv.Fatal(t, "encode", err)
			if id == "" {
				id = m.ID
			}
			handler, ok := h.Handler(route)
			if !ok {
				t.Fatalf("no route %s", route)
			}
			return handler(ctx, consumer.Delivery{ID: id, Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1})
		}

		dep := time.Now().Add(48 * time.Hour).UTC()
		testenv.Fatal(t, "flight scheduled", deliver(bookingmessaging.RouteFlightScheduled, events.FlightScheduled{
			FlightID: 7, FlightNumber: "FB7", DepartureAirport: "DEL", ArrivalAirport: "BOM", DepartureTime: dep,
			ArrivalTime: dep.Add(2 * time.Hour), TotalSeats: 100, FareAmount: 5000, Currency: "EUR"}, ""))
		if f, err := store.Flight(ctx, 7); err != nil || f.Number != "FB7" || f.Cancelled {
			t.Fatalf("flight 7: %+v %v", f, err)
		}

		b, err := store.Create(ctx, "alice", 7, 2)
		testenv.Fatal(t, "create", err)
		held := events.SeatsHeld{BookingID: b.ID, FlightID: 7, Seats: 2, UnitPrice: 5000, Total: 10000, Currency: "EUR"}
		changed, stop := changes.Watch(b.ID)
		defer stop()
		for i := range 2 { // a redelivery: the inbox makes it a no-op
			testenv.Fatal(t, "seats held", deliver(bookingmessaging.RouteHeld, held, "reply-1"))
			// The handler publishes before it returns, and only when it changed the booking.
			select {
			case got := <-changed:
				if i > 0 {
					t.Fatal("a redelivered reply published a change")
				}
				if got.Status != booking.Held || got.Version != 2 || got.Total != 10000 {
					t.Fatalf("SeatsHeld published %+v, want the booking as committed", got)
				}
			default:
				if i == 0 {
					t.Fatal("SeatsHeld changed the booking without publishing it")
				}
			}
		}
		b, err = store.Get(ctx, b.ID)
		if err != nil || b.Status != booking.Held || b.Version != 2 || b.Total != 10000 {
			t.Fatalf("after SeatsHeld twice: %+v %v", b, err)
		}
		rows, err := db.QueryContext(ctx, `SELECT subject FROM outbox WHERE aggregate_id = ? ORDER BY id`, b.ID)
		testenv.Fatal(t, "outbox", err)
		var subjects []string
		for rows.Next() {
			var s string
			testenv.Fatal(t, "scan", rows.Scan(&s))
			subjects = append(subjects, s)
		}
		rows.Close()
		want := []string{events.SeatHoldRequested{}.Subject(), events.BookingHeld{}.Subject()}
		if !slices.Equal(subjects, want) {
			t.Fatalf("outbox %v, want %v", subjects, want)
		}

		err = deliver(bookingmessaging.RouteHeld, events.SeatsHeld{BookingID: "0190aaaa-0000-7000-8000-000000000000", FlightID: 7, Seats: 1, UnitPrice: 1, Total: 1, Currency: "EUR"}, "")
		if !consumer.IsPermanent(err) || !errors.Is(err, booking.ErrNotFound) {
			t.Fatalf("reply for an unknown booking: %v", err)
		}
	})
}

var (
	testTopo  = events.Topology{Source: "test/flight"}
	testRules = booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}
	testLog   = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// eachStore runs test, in parallel, on a fresh booking store of each kind: MySQL and SQLite.
func eachStore(t *testing.T, test func(t *testing.T, store booking.Store, db *sql.DB)) {
	stores := map[string]func(t *testing.T) (booking.Store, *sql.DB){
		"mysql": func(t *testing.T) (booking.Store, *sql.DB) {
			db, err := mysql.Open(context.Background(), testenv.MySQL(t), 4, testLog)
			testenv.Fatal(t, "open", err)
			t.Cleanup(func() { db.Close() })
			return mysql.NewStore(db, testRules, bookingmessaging.Emit(testTopo, outbox.AddMySQL)), db
		},
		"sqlite": func(t *testing.T) (booking.Store, *sql.DB) {
			db, err := sqlite.Open(context.Background(), testenv.SQLite(t), testLog)
			testenv.Fatal(t, "open", err)
			t.Cleanup(func() { db.Close() })
			return sqlite.NewStore(db, testRules, bookingmessaging.Emit(testTopo, outbox.AddSQLite)), db
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, db := open(t)
			test(t, store, db)
		})
	}
}
