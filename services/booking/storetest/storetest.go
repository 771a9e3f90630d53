// Package storetest is the contract suite of booking.Store: every adapter (mysql, sqlite)
// runs the same tests, so the dev mode's SQLite store behaves exactly as production's MySQL
// one. An adapter's test calls Run with a function that opens a fresh database:
//
//	func TestStore(t *testing.T) {
//		t.Parallel()
//		storetest.Run(t, func(t *testing.T) storetest.Adapter { ... })
//	}
package storetest

import (
	"context"
	"database/sql"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

// Emit is the hook a store calls inside every transaction that produces effects. Both
// adapters' Emit types have this signature, so the suite can give either its recorder.
type Emit = func(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error

// Config is how the suite wants a store opened.
type Config struct {
	Rules         booking.Rules
	Now           func() time.Time // the store's clock
	Emit          Emit
	KeyStaleAfter time.Duration // how long an idempotency key may stay in progress
}

// Adapter is one adapter on a fresh, migrated database. The suite keeps a table of the
// effects emitted in DB, written in the stores' own transactions, so effects of a change that
// rolled back are not there.
type Adapter struct {
	DB   *sql.DB
	Open func(Config) booking.Store
}

// Run runs the contract suite, each test in parallel on its own database from newAdapter.
func Run(t *testing.T, newAdapter func(t *testing.T) Adapter) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"CreateGetHistory", testCreateGetHistory},
		{"Saga", testSaga},
		{"BatchClaimAndLock", testBatchClaimAndLock},
		{"RejectedAndUnknown", testRejectedAndUnknown},
		{"EmitFailureRollsBack", testEmitFailureRollsBack},
		{"ListPages", testListPages},
		{"ExpireDue", testExpireDue},
		{"PayCancelExpireRace", testPayCancelExpireRace},
		{"LatePayment", testLatePayment},
		{"IdempotencyKeys", testIdempotencyKeys},
		{"KeyWithWork", testKeyWithWork},
		{"KeyedChangeReplays", testKeyedChangeReplays},
		{"KeysInOneTx", testKeysInOneTx},
		{"Repair", testRepair},
		{"ListByFlight", testListByFlight},
		{"RecordFlightOrder", testRecordFlightOrder},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, newAdapter(t)))
		})
	}
}

var rules = booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}

// env is a fresh database with the booking schema, a store whose effects land in the table
// emitted, and a clock the test moves.
type env struct {
	adapter Adapter
	store   booking.Store
	clock   *clock
}

// clock is a time the test sets and moves, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newEnv(t *testing.T, a Adapter) *env {
	t.Helper()
	// Portable SQL: both MySQL and SQLite accept it. An effect's order is the version of the
	// change that emitted it, then its place in the change.
	_, err := a.DB.ExecContext(context.Background(), `CREATE TABLE emitted (
		booking_id VARCHAR(36) NOT NULL, version BIGINT NOT NULL, i INT NOT NULL, status VARCHAR(16) NOT NULL,
		kind VARCHAR(32) NOT NULL, reason VARCHAR(32) NOT NULL, refund BIGINT NOT NULL, payment_id VARCHAR(36) NOT NULL)`)
	testenv.Fatal(t, "create table emitted", err)
	c := &clock{}
	c.Set(time.Now())
	return &env{adapter: a, clock: c, store: a.Open(Config{Rules: rules, Now: c.Now, Emit: record, KeyStaleAfter: time.Minute})}
}

// withClock opens another store on the same database reading the time from now.
func (e *env) withClock(now func() time.Time) booking.Store {
	return e.adapter.Open(Config{Rules: rules, Now: now, Emit: record, KeyStaleAfter: time.Minute})
}

// record is the suite's Emit: it writes each effect to the table emitted.
func record(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error {
	for i, e := range effects {
		reason := e.Reason
		if e.PreviousStatus != "" {
			reason = string(e.PreviousStatus)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO emitted (booking_id, version, i, status, kind, reason, refund, payment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.Version, i, b.Status, e.Kind, reason, e.Refund, e.PaymentID); err != nil {
			return err
		}
	}
	return nil
}

// emitted returns the booking's effects as "kind" or "kind:reason", in order.
func (e *env) emitted(t *testing.T, id string) []string {
	t.Helper()
	rows, err := e.adapter.DB.Query(`SELECT kind, reason FROM emitted WHERE booking_id = ? ORDER BY version, i`, id)
	testenv.Fatal(t, "read emitted", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, r string
		testenv.Fatal(t, "scan", rows.Scan(&k, &r))
		if r != "" {
			k += ":" + r
		}
		out = append(out, k)
	}
	testenv.Fatal(t, "read emitted", rows.Err())
	return out
}

// causes returns the causes of the booking's history, oldest first.
func (e *env) causes(t *testing.T, id string) []string {
	t.Helper()
	h, err := e.store.History(context.Background(), id)
	testenv.Fatal(t, "history", err)
	var out []string
	for _, l := range h {
		out = append(out, l.Cause)
	}
	return out
}

// held creates a booking of 2 seats on flight 7 for user and applies its SeatsHeld at 100.00 EUR.
func (e *env) held(t *testing.T, user string) booking.Booking {
	t.Helper()
	ctx := context.Background()
	b, err := e.store.Create(ctx, user, 7, 2)
	testenv.Fatal(t, "create", err)
	c, err := e.store.Apply(ctx, b.ID, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
	testenv.Fatal(t, "hold", err)
	return c.Booking
}

// confirm pays b in a transaction of s, as the api does after the gateway's charge.
func confirm(ctx context.Context, s booking.Store, p booking.Payment) (booking.Change, error) {
	var c booking.Change
	err := s.InTx(ctx, func(tx booking.Tx) error {
		var err error
		c, err = tx.ConfirmPayment(ctx, p)
		return err
	})
	return c, err
}

func payment(t *testing.T, bookingID, ref string) booking.Payment {
	t.Helper()
	p, err := booking.NewPayment(bookingID, booking.PaymentResult{Ref: ref, Amount: 10000, Currency: "EUR"})
	testenv.Fatal(t, "payment", err)
	return p
}
