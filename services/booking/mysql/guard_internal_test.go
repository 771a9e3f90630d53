package mysql

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

// TestVersionGuardStopsTheCommit: the update of a booking is guarded by the version read under
// the row lock, and the guard is checked before the COMMIT is sent. A change made from a stale
// copy of the booking fails, and nothing of it commits: not the row, not its history line, not
// its event.
func TestVersionGuardStopsTheCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, testenv.MySQL(t), 5, slog.New(slog.DiscardHandler))
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { db.Close() })
	emitted := 0
	emit := func(ctx context.Context, ex outbox.Execer, b booking.Booking, effects []booking.Effect) error {
		for range effects {
			m := outbox.Message{ID: uuid.NewString(), Subject: "booking.test", Data: []byte("{}"), AggregateID: b.ID}
			if err := outbox.AddMySQL(ctx, ex, m); err != nil {
				return err
			}
		}
		return nil
	}
	s := NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, emit)
	b, err := s.Create(ctx, "alice", 7, 1)
	testenv.Fatal(t, "create", err)
	events := func() (n int) {
		testenv.Fatal(t, "count events", db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = ?", b.ID).Scan(&n))
		return n
	}
	created := events()

	err = s.inTx(ctx, func(t *tx) error {
		if err := t.Lock(ctx, []string{b.ID}); err != nil {
			return err
		}
		stale := t.locked[b.ID]
		stale.Version = 7 // as if the row had changed since it was read
		t.locked[b.ID] = stale
		c, err := t.Apply(ctx, b.ID, booking.SeatsHeld{UnitPrice: 100, Total: 100, Currency: "EUR"})
		emitted = len(c.Effects)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "version 7 changed under the row lock") {
		t.Fatalf("commit of a stale change: %v, want the guard's error", err)
	}
	if emitted == 0 {
		t.Fatal("the change had no effects to leave behind; the test proves nothing")
	}
	got, err := s.Get(ctx, b.ID)
	testenv.Fatal(t, "get", err)
	if got.Status != booking.Pending || got.Version != 1 {
		t.Fatalf("booking %s v%d after the failed commit, want PENDING v1", got.Status, got.Version)
	}
	if h, _ := s.History(ctx, b.ID); len(h) != 1 {
		t.Fatalf("history: %d lines, want 1", len(h))
	}
	if n := events() - created; n != 0 {
		t.Fatalf("%d events of the failed change in the outbox", n)
	}
}
