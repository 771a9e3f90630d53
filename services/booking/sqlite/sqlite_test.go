package sqlite_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/services/booking/storetest"
	"github.com/flightbook/flightbook/testenv"
)

// TestStore runs the booking.Store contract suite on SQLite.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Adapter {
		db, err := sqlite.Open(context.Background(), testenv.SQLite(t), slog.New(slog.DiscardHandler))
		testenv.Fatal(t, "open", err)
		t.Cleanup(func() { db.Close() })
		return storetest.Adapter{DB: db, Open: func(c storetest.Config) booking.Store {
			return sqlite.NewStore(db, c.Rules, c.Emit).WithClock(c.Now).WithKeyStaleAfter(c.KeyStaleAfter)
		}}
	})
}

// TestReopen: the file keeps the bookings, the migrations run once, and times are stored as
// the fixed-width UTC text the package documents, which sorts in time order.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, log := testenv.SQLite(t), slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(ctx, path, log)
	testenv.Fatal(t, "open", err)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("CET", 3600))
	b, err := sqlite.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil).
		WithClock(func() time.Time { return at }).Create(ctx, "alice", 7, 1)
	testenv.Fatal(t, "create", err)
	testenv.Fatal(t, "close", db.Close())

	db, err = sqlite.Open(ctx, path, log)
	testenv.Fatal(t, "reopen", err)
	t.Cleanup(func() { db.Close() })
	got, err := sqlite.NewStore(db, booking.Rules{}, nil).Get(ctx, b.ID)
	if err != nil || got != b {
		t.Fatalf("after reopening: %+v %v, want %+v", got, err, b)
	}
	var raw string
	testenv.Fatal(t, "raw", db.QueryRow(`SELECT created_at FROM bookings WHERE id = ?`, b.ID).Scan(&raw))
	if raw != "2026-01-02 02:04:05.000006" {
		t.Fatalf("created_at stored as %q", raw)
	}
}
