package sqlite

import (
	"context"
	"database/sql"

	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// InventoryTx is one transaction of a saga handler: it claims the message in the inbox,
// changes the seats and queues the reply in the outbox, all committed together by
// Inventory.InTx. It implements messaging.Tx.
type InventoryTx struct {
	inv *Inventory
	tx  *sql.Tx
}

// InTx runs fn in one transaction, which holds the write lock from its start; it commits
// when fn returns nil and rolls back otherwise.
func (inv *Inventory) InTx(ctx context.Context, fn func(*InventoryTx) error) error {
	return inTx(ctx, inv.db, func(tx *sql.Tx) error {
		return fn(&InventoryTx{inv: inv, tx: tx})
	})
}

// ClaimAll claims each of msgIDs in order with inbox.ClaimSQLite: an id that appears twice
// finds its own first claim and is first only at its first appearance. SQLite runs in process, so a
// statement per id costs microseconds, not the round trip that makes package postgres claim
// a batch in one statement.
func (t *InventoryTx) ClaimAll(ctx context.Context, consumer string, msgIDs []string) ([]bool, error) {
	first := make([]bool, len(msgIDs))
	for i, id := range msgIDs {
		ok, err := inbox.ClaimSQLite(ctx, t.tx, consumer, id)
		if err != nil {
			return nil, err
		}
		first[i] = ok
	}
	return first, nil
}

// Hold holds req.Seats seats on req.FlightID for req.BookingID in this transaction, or
// records why not. It is idempotent by booking id: a repeated request returns the first
// outcome and changes nothing. A booking released before its hold arrived is refused.
func (t *InventoryTx) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	return t.inv.hold(ctx, t.tx, req)
}

// HoldBatch decides several hold requests in this transaction. The outcomes are those Hold
// would give the requests one after another in slice order, and out[i] answers reqs[i]; a
// booking that appears twice gets its first outcome twice.
func (t *InventoryTx) HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	return t.inv.holdBatch(ctx, t.tx, reqs)
}

// Release gives back the seats a booking holds or bought, in this transaction; see
// Inventory.Release.
func (t *InventoryTx) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	return t.inv.release(ctx, t.tx, bookingID, flightID)
}

// Confirm turns a booking's held seats into sold seats in this transaction; see
// Inventory.Confirm.
func (t *InventoryTx) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	return t.inv.confirm(ctx, t.tx, bookingID)
}

// Queue adds msgs to the outbox in this transaction (outbox.AddSQLite).
func (t *InventoryTx) Queue(ctx context.Context, msgs ...outbox.Message) error {
	return outbox.AddSQLite(ctx, t.tx, msgs...)
}
