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

// TestPreparedHolds: the reads PrepareHolds sends with the inbox claim serve the HoldBatch that
// follows, and only it. A HoldBatch for a booking they did not read, or one after another
// statement changed what they read, must read again: deciding on the stale read would hold
// seats twice for a booking or fail the transaction on every retry.
func TestPreparedHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	f := seedFlight(t, pool, 20, time.Now().Add(48*time.Hour), "scheduled")
	other := seedFlight(t, pool, 20, time.Now().Add(48*time.Hour), "scheduled")

	tests := []struct {
		name       string
		redelivery bool // x was held before, in a transaction of its own
		// between runs after the claim and before the HoldBatch of x, y.
		between  func(tx *postgres.InventoryTx, x string) error
		prepared func(x, y string) []flight.HoldRequest
	}{
		{"covered", false, nil, func(x, y string) []flight.HoldRequest {
			return []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 1}, {BookingID: x, FlightID: f, Seats: 2}}
		}},
		{"covered redelivery", true, nil, func(x, y string) []flight.HoldRequest {
			return []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 1}, {BookingID: x, FlightID: f, Seats: 2}}
		}},
		{"booking not read", true, nil, func(x, y string) []flight.HoldRequest {
			return []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 1}}
		}},
		{"flight not read", false, nil, func(x, y string) []flight.HoldRequest {
			return []flight.HoldRequest{{BookingID: y, FlightID: other, Seats: 1}, {BookingID: x, FlightID: other, Seats: 2}}
		}},
		{"hold between", false, func(tx *postgres.InventoryTx, x string) error {
			_, err := tx.Hold(ctx, flight.HoldRequest{BookingID: x, FlightID: f, Seats: 2})
			return err
		}, func(x, y string) []flight.HoldRequest {
			return []flight.HoldRequest{{BookingID: y, FlightID: f, Seats: 1}, {BookingID: x, FlightID: f, Seats: 2}}
		}},
	}
	held := 0
	for _, tt := range tests {
		x, y := uuid.NewString(), uuid.NewString()
		if tt.redelivery {
			if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: x, FlightID: f, Seats: 2}); err != nil || !h.Held() {
				t.Fatalf("%s: first hold: %+v %v", tt.name, h, err)
			}
		}
		runs := 0
		var hs []flight.Hold
		err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
			runs++
			tx.PrepareHolds(tt.prepared(x, y))
			if _, err := tx.ClaimAll(ctx, "flight.seat-hold", []string{uuid.NewString()}); err != nil {
				return err
			}
			if tt.between != nil {
				if err := tt.between(tx, x); err != nil {
					return err
				}
			}
			var err error
			hs, err = tx.HoldBatch(ctx, []flight.HoldRequest{{BookingID: x, FlightID: f, Seats: 2}, {BookingID: y, FlightID: f, Seats: 1}})
			return err
		})
		if err != nil || runs != 1 {
			t.Fatalf("%s: %v after %d runs", tt.name, err, runs)
		}
		if !hs[0].Held() || hs[0].Seats != 2 || !hs[1].Held() {
			t.Errorf("%s: answered %+v", tt.name, hs)
		}
		held += 3
		if c := audit(t, inv, f); c.Held != held || c.Available != 20-held {
			t.Fatalf("%s: counts %+v, want %d held", tt.name, c, held)
		}
	}
}

// stateBookings are bookings of one flight, one in each state a confirm or a release meets:
// held (2 seats), sold (1), released (4), never held, and other, held (3 seats) for the test to
// change in its transaction.
type stateBookings struct{ held, sold, released, never, other string }

// bookingsInEveryState seeds a 20-seat flight with stateBookings.
func bookingsInEveryState(t *testing.T) (*postgres.Inventory, int64, stateBookings) {
	t.Helper()
	ctx := context.Background()
	pool := newInventoryTestDB(t)
	inv := postgres.NewInventory(pool)
	f := seedFlight(t, pool, 20, time.Now().Add(48*time.Hour), "scheduled")
	hold := func(seats int) string {
		id := uuid.NewString()
		if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: id, FlightID: f, Seats: seats}); err != nil || !h.Held() {
			t.Fatalf("hold: %+v %v", h, err)
		}
		return id
	}
	b := stateBookings{held: hold(2), sold: hold(1), released: hold(4), never: uuid.NewString(), other: hold(3)}
	_, err := inv.Confirm(ctx, b.sold)
	testenv.Fatal(t, "confirm", err)
	_, err = inv.Release(ctx, b.released, f)
	testenv.Fatal(t, "release", err)
	return inv, f, b
}

// TestPreparedConfirms: the confirms PrepareConfirms sends with the inbox claim answer each
// booking's Confirm as ConfirmTx would have (sold, already sold, released, never held), and a
// release in between makes Confirm ask again rather than answer from before it. An id that is
// not a UUID is left out rather than failing the claim.
func TestPreparedConfirms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, f, b := bookingsInEveryState(t)
	held, sold, released, never, releasedBetween := b.held, b.sold, b.released, b.never, b.other

	runs := 0
	err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
		runs++
		tx.PrepareConfirms([]string{held, sold, released, never, releasedBetween, "not-a-uuid"})
		if _, err := tx.ClaimAll(ctx, "flight.seats-confirm", []string{uuid.NewString()}); err != nil {
			return err
		}
		for _, c := range []struct {
			name, booking string
			seats         int
			want          error
		}{
			{"held", held, 2, nil},
			{"sold", sold, 1, nil},
			{"released", released, 0, flight.ErrHoldReleased},
			{"never held", never, 0, flight.ErrHoldNotFound},
		} {
			h, err := tx.Confirm(ctx, c.booking)
			if !errors.Is(err, c.want) || (c.want == nil && (h.Status != flight.HoldSold || h.Seats != c.seats)) {
				t.Errorf("%s: confirm answered %+v, %v; want %d seats sold or %v", c.name, h, err, c.seats, c.want)
			}
		}
		if _, err := tx.Release(ctx, releasedBetween, f); err != nil {
			return err
		}
		if _, err := tx.Confirm(ctx, releasedBetween); !errors.Is(err, flight.ErrHoldReleased) {
			t.Errorf("a confirm after a release in the same transaction answered %v, want %v", err, flight.ErrHoldReleased)
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("transaction: %v after %d runs", err, runs)
	}
	if c := audit(t, inv, f); c.Sold != 3 || c.Held != 0 || c.Available != 17 {
		t.Errorf("counts %+v, want 3 sold and the rest available", c)
	}
}

// TestPreparedReleases: releases read by PrepareReleases with the inbox claim give back what
// ReleaseTx would (held seats, sold seats, nothing twice, a tombstone for a booking never
// held), and a confirm in between makes the release read again rather than give back seats
// from a hold that has changed.
func TestPreparedReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, f, b := bookingsInEveryState(t)
	held, sold, released, never, confirmedBetween := b.held, b.sold, b.released, b.never, b.other

	runs := 0
	err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
		runs++
		tx.PrepareReleases([]string{held, sold, released, never, confirmedBetween, "not-a-uuid"})
		if _, err := tx.ClaimAll(ctx, "flight.seat-release", []string{uuid.NewString()}); err != nil {
			return err
		}
		for _, c := range []struct {
			name, booking string
			seats         int
		}{
			{"held", held, 2},
			{"sold", sold, 1},
			{"released", released, 4}, // the first release's answer again
			{"never held", never, 0},
		} {
			h, err := tx.Release(ctx, c.booking, f)
			if err != nil || h.Status != flight.HoldReleased || h.Seats != c.seats {
				t.Errorf("%s: release answered %+v, %v; want %d seats released", c.name, h, err, c.seats)
			}
		}
		if _, err := tx.Confirm(ctx, confirmedBetween); err != nil {
			return err
		}
		if h, err := tx.Release(ctx, confirmedBetween, f); err != nil || h.Seats != 3 {
			t.Errorf("a release after a confirm in the same transaction answered %+v, %v", h, err)
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("transaction: %v after %d runs", err, runs)
	}
	if c := audit(t, inv, f); c.Available != 20 || c.Held != 0 || c.Sold != 0 {
		t.Errorf("counts %+v, want every seat available", c)
	}
	if h, ok, err := inv.HoldOf(ctx, never); err != nil || !ok || h.Status != flight.HoldReleased {
		t.Errorf("booking never held: %+v %v %v, want a tombstone", h, ok, err)
	}
}

// TestPreparedOutlivesALaterClaim: a second inbox claim that prepares nothing (a batch's
// second route) leaves the first one's reads in place, so the release after it still needs
// no round trip: the transaction is the two claims and the COMMIT.
func TestPreparedOutlivesALaterClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, trips := tracedTestDB(t)
	inv := postgres.NewInventory(pool)
	f := seedFlight(t, pool, 10, time.Now().Add(48*time.Hour), "scheduled")
	x := uuid.NewString()
	if h, err := inv.Hold(ctx, flight.HoldRequest{BookingID: x, FlightID: f, Seats: 2}); err != nil || !h.Held() {
		t.Fatalf("hold: %+v %v", h, err)
	}

	trips.n.Store(0)
	err := inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
		tx.PrepareReleases([]string{x})
		if _, err := tx.ClaimAll(ctx, "flight.seat-release", []string{uuid.NewString()}); err != nil {
			return err
		}
		if _, err := tx.ClaimAll(ctx, "flight.seats-confirm", []string{uuid.NewString()}); err != nil {
			return err
		}
		h, err := tx.Release(ctx, x, f)
		if err == nil && h.Seats != 2 {
			err = fmt.Errorf("release answered %+v", h)
		}
		return err
	})
	testenv.Fatal(t, "transaction", err)
	if n := trips.n.Load(); n != 3 {
		t.Errorf("%d round trips, want 3 (two claims and the COMMIT)", n)
	}
	if c := audit(t, inv, f); c.Available != 10 || c.Held != 0 {
		t.Errorf("counts %+v, want the 2 seats back", c)
	}
}
