package postgres

import (
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// InventoryTx is one transaction of a saga handler: it claims the message in the inbox,
// changes the seats and queues the reply in the outbox, all committed together by
// Inventory.InTx. It implements messaging.Tx.
type InventoryTx struct {
	inv *Inventory
	tx  pgx.Tx
}

// InTx runs fn in one transaction (see InTx for commit, rollback and retry).
func (inv *Inventory) InTx(ctx context.Context, fn func(*InventoryTx) error) error {
	return InTx(ctx, inv.pool, func(tx pgx.Tx) error {
		return fn(&InventoryTx{inv: inv, tx: tx})
	})
}

// ClaimAll is inbox.ClaimPostgres for many messages in one statement; an id that appears
// twice is first only at its first appearance. Claiming a batch's messages one statement each cost more than
// the rest of the batch together (about 80µs a round trip, 5 ms for 64 messages, measured with
// messaging's BenchmarkHoldHandler), which is why it does not call ClaimPostgres in a loop.
//
// It belongs in package inbox beside ClaimPostgres; until it moves there it checks ids against
// the same limits, so a message the inbox would refuse is refused here too, with
// inbox.ErrInvalid.
func (t *InventoryTx) ClaimAll(ctx context.Context, consumer string, msgIDs []string) ([]bool, error) {
	const maxMsgID = 255 // inbox's limit: the MySQL column's size, applied to every database
	for _, id := range msgIDs {
		if id == "" || utf8.RuneCountInString(id) > maxMsgID {
			return nil, fmt.Errorf("%w: message id %q: must be 1 to %d characters", inbox.ErrInvalid, id, maxMsgID)
		}
	}
	// Ids go in sorted order: two transactions (in two replicas) claiming overlapping sets
	// then wait for each other's rows in one direction only, and every transaction claims
	// before it locks the flight row, so no cycle of waits can form.
	sorted := slices.Clone(msgIDs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	rows, err := t.tx.Query(ctx, `
		INSERT INTO inbox (consumer, msg_id)
		SELECT $1, id FROM unnest($2::text[]) WITH ORDINALITY AS m(id, n) ORDER BY n
		ON CONFLICT (consumer, msg_id) DO NOTHING
		RETURNING msg_id`, consumer, sorted)
	if err != nil {
		return nil, fmt.Errorf("inbox: claim %d messages for %s: %w", len(sorted), consumer, err)
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("inbox: claim %d messages for %s: %w", len(sorted), consumer, err)
	}
	fresh := make(map[string]bool, len(claimed))
	for _, id := range claimed {
		fresh[id] = true
	}
	first := make([]bool, len(msgIDs))
	for i, id := range msgIDs {
		first[i] = fresh[id]
		delete(fresh, id) // a second appearance is a redelivery of the first
	}
	return first, nil
}

// Hold is Inventory.HoldTx in this transaction.
func (t *InventoryTx) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	return t.inv.HoldTx(ctx, t.tx, req)
}

// HoldBatch is Inventory.HoldBatchTx in this transaction.
func (t *InventoryTx) HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	return t.inv.HoldBatchTx(ctx, t.tx, reqs)
}

// Release is Inventory.ReleaseTx in this transaction.
func (t *InventoryTx) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	return t.inv.ReleaseTx(ctx, t.tx, bookingID, flightID)
}

// Confirm is Inventory.ConfirmTx in this transaction.
func (t *InventoryTx) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	return t.inv.ConfirmTx(ctx, t.tx, bookingID)
}

// Queue adds msgs to the outbox in this transaction (outbox.AddPostgres).
func (t *InventoryTx) Queue(ctx context.Context, msgs ...outbox.Message) error {
	return outbox.AddPostgres(ctx, t.tx, msgs...)
}
