package mysql_test

import (
	"context"
	"database/sql"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/booking/storetest"
	"github.com/flightbook/flightbook/testenv"
)

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := mysql.Open(context.Background(), testenv.MySQL(t), 50, slog.New(slog.DiscardHandler))
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStore runs the booking.Store contract suite on MySQL.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Adapter {
		db := open(t)
		return storetest.Adapter{DB: db, Open: func(c storetest.Config) booking.Store {
			return mysql.NewStore(db, c.Rules, c.Emit).WithClock(c.Now).WithKeyStaleAfter(c.KeyStaleAfter)
		}}
	})
}

// TestClaimExpiredSkipsLockedRows: a booking whose row another transaction holds (a payment
// or a cancel deciding it) is skipped by the expiry claim rather than waited for, so
// schedulers on several replicas, and the payments they race, never queue behind one another.
func TestClaimExpiredSkipsLockedRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t)
	start := time.Now()
	store := mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil)
	var ids []string
	for range 2 {
		b, err := store.Create(ctx, "alice", 7, 1)
		testenv.Fatal(t, "create", err)
		ids = append(ids, b.ID)
	}
	later := store.WithClock(func() time.Time { return start.Add(time.Hour) })
	err := store.InTx(ctx, func(tx booking.Tx) error {
		// Lock the first booking's row (a no-op note still locks it) and claim meanwhile.
		if _, err := tx.Apply(ctx, ids[0], booking.SeatsConfirmed{}); err != nil {
			return err
		}
		claimed, err := later.ClaimExpired(ctx, 10)
		if err != nil {
			return err
		}
		if !slices.Equal(claimed, ids[1:]) {
			t.Errorf("claimed %v while %s was locked, want %v", claimed, ids[0], ids[1:])
		}
		return nil
	})
	testenv.Fatal(t, "claim", err)
	claimed, err := later.ClaimExpired(ctx, 10)
	if err != nil || !slices.Equal(claimed, ids) {
		t.Fatalf("after the lock: %v %v, want %v", claimed, err, ids)
	}
}
