package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// TestInventoryTx checks that a saga transaction, which sends BEGIN with its first statement
// and its outbox rows with COMMIT, writes all of its work or none of it, and leaves its
// connection fit for the next transaction.
func TestInventoryTx(t *testing.T) {
	t.Parallel()
	errHandler := errors.New("handler failed")
	reply := func() outbox.Message {
		id := uuid.NewString()
		return outbox.Message{ID: id, Subject: "flight.saga.seats-held", Data: []byte(`{}`), AggregateID: id}
	}
	// PostgreSQL refuses a NUL byte in text, so this reply fails only when the batch with the
	// COMMIT reaches the server, after every other statement of the transaction has run.
	refused := reply()
	refused.Subject = "flight.saga.\x00"
	invalid := reply()
	invalid.Subject = ""
	var pgErr *pgconn.PgError

	tests := []struct {
		name    string
		claim   bool
		hold    bool
		queue   []outbox.Message
		fail    bool             // the handler returns an error after its work
		wantErr func(error) bool // nil: commits
	}{
		{name: "claim, hold and reply", claim: true, hold: true, queue: []outbox.Message{reply()}},
		{name: "claim and hold, no reply", claim: true, hold: true},
		{name: "hold without a claim", hold: true, queue: []outbox.Message{reply()}},
		{name: "reply alone", queue: []outbox.Message{reply(), reply()}},
		{name: "nothing"},
		{name: "reply refused by the server", claim: true, hold: true, queue: []outbox.Message{reply(), refused},
			wantErr: func(err error) bool { return errors.As(err, &pgErr) }},
		{name: "reply without a subject", claim: true, hold: true, queue: []outbox.Message{invalid},
			wantErr: func(err error) bool { return errors.Is(err, outbox.ErrInvalidMessage) }},
		{name: "handler fails", claim: true, hold: true, queue: []outbox.Message{reply()}, fail: true,
			wantErr: func(err error) bool { return errors.Is(err, errHandler) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// One connection, so that the transaction after this one runs on the same.
			cfg := newInventoryTestDB(t).Config()
			cfg.MaxConns = 1
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			testenv.Fatal(t, "pool", err)
			t.Cleanup(pool.Close)
			inv := postgres.NewInventory(pool)
			flightID := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
			booking := uuid.NewString()

			err = inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
				if tc.claim {
					first, err := tx.ClaimAll(ctx, "flight.seat-hold", []string{booking})
					if err != nil || !first[0] {
						return errors.Join(errors.New("claim"), err)
					}
				}
				if tc.hold {
					h, err := tx.Hold(ctx, flight.HoldRequest{BookingID: booking, FlightID: flightID, Seats: 2})
					if err != nil || h.Status != flight.HoldHeld {
						return errors.Join(errors.New("hold"), err)
					}
				}
				if err := tx.Queue(ctx, tc.queue...); err != nil {
					return err
				}
				if tc.fail {
					return errHandler
				}
				return nil
			})
			committed := tc.wantErr == nil
			switch {
			case committed && err != nil:
				t.Fatalf("InTx: %v", err)
			case !committed && err == nil:
				t.Fatal("InTx committed, want an error")
			case !committed && !tc.wantErr(err):
				t.Fatalf("InTx: unexpected error %v", err)
			}

			want := func(what string, got, n int) {
				t.Helper()
				if !committed {
					n = 0
				}
				if got != n {
					t.Errorf("%s: %d rows, want %d", what, got, n)
				}
			}
			want("inbox", count(t, pool, `SELECT count(*) FROM inbox`), boolInt(tc.claim))
			want("holds", count(t, pool, `SELECT count(*) FROM holds`), boolInt(tc.hold))
			want("outbox", count(t, pool, `SELECT count(*) FROM outbox`), len(tc.queue))
			counts := audit(t, inv, flightID)
			if held := 2 * boolInt(committed && tc.hold); counts.Held != held {
				t.Errorf("held seats %d, want %d", counts.Held, held)
			}

			// The transaction ended on its connection, which the pool kept (it drops one still
			// inside a transaction), and the next transaction commits on it.
			if err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
				_, err := tx.ClaimAll(ctx, "flight.seat-hold", []string{uuid.NewString()})
				return err
			}); err != nil {
				t.Fatalf("next transaction: %v", err)
			}
			if n := pool.Stat().NewConnsCount(); n != 1 {
				t.Errorf("the pool opened %d connections, want 1", n)
			}
		})
	}
}

func count(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	testenv.Fatal(t, query, pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestInventoryTxSeesItsOwnHolds: a batch of holds is written with the COMMIT, unless another
// statement of the transaction comes first, which must see the holds.
func TestInventoryTxSeesItsOwnHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
	booking := uuid.NewString()
	err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
		hs, err := tx.HoldBatch(ctx, []flight.HoldRequest{{BookingID: booking, FlightID: f, Seats: 3}})
		if err != nil || !hs[0].Held() {
			return errors.Join(errors.New("hold"), err)
		}
		h, err := tx.Confirm(ctx, booking)
		if err != nil || h.Status != flight.HoldSold {
			return errors.Join(fmt.Errorf("confirm: %+v", h), err)
		}
		return nil
	})
	testenv.Fatal(t, "transaction", err)
	if c := audit(t, inv, f); c.Sold != 3 || c.Held != 0 {
		t.Errorf("counts %+v, want 3 sold", c)
	}
}
