package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// InventoryTx is one transaction of a saga handler: it claims the message in the inbox,
// changes the seats and queues the reply in the outbox, all committed together by
// Inventory.InTx. It implements messaging.Tx.
//
// It sends a handler's statements in as few round trips as their results allow: BEGIN goes to
// the server with the transaction's first statement, and a batch of holds' writes and the
// outbox's rows with COMMIT, and what a batch of holds or releases reads first, or a batch of
// confirms whole, with its inbox claim (PrepareHolds, PrepareReleases, PrepareConfirms). A
// batch of holds then takes two round trips where it took seven, and holds its flights' row
// locks from the end of the first to the end of the second; a batch of confirms or of
// releases takes two, where a lone confirm took six and a lone release eight
// (BenchmarkSagaTx). Each round trip costs the flight process and PostgreSQL a write, a read
// and a wake-up, which is most of what a short statement costs them here, and every one under
// a flight's lock keeps that flight's other bookings waiting (docs/performance.md).
type InventoryTx struct {
	inv  *Inventory
	conn *pgxpool.Conn
	tx   pgx.Tx // nil until the transaction's first statement
	open bool   // BEGIN has been sent, perhaps in a batch that failed
	// later holds writes whose results nothing reads, to go with COMMIT; any other statement
	// sends them first, so that it sees them.
	later pgx.Batch
	out   []outbox.Message
	// holds are the hold requests the next inbox claim reads for (PrepareHolds), and read
	// is what it read, for the HoldBatch that follows; any other statement drops it.
	holds []flight.HoldRequest
	read  *holdRead
	// confirms are the bookings the next inbox claim confirms (PrepareConfirms), and sold
	// their holds as they were before, for Confirm to answer from; a hold, a release or a
	// batch of holds drops them.
	confirms []string
	sold     map[string]*prepared
	// releases are the bookings the next inbox claim reads for a release (PrepareReleases),
	// and released what it read; a hold, a confirm or a batch of holds drops them.
	releases []string
	released map[string]*releaseRead
}

// prepared is a booking's hold before PrepareConfirms sold it; ok is false when there was none.
type prepared struct {
	h  flight.Hold
	ok bool
}

// InTx runs fn in one transaction, and retries it as InTx does.
func (inv *Inventory) InTx(ctx context.Context, fn func(*InventoryTx) error) error {
	return retry(ctx, func() error { return inv.runTx(ctx, fn) })
}

func (inv *Inventory) runTx(ctx context.Context, fn func(*InventoryTx) error) error {
	conn, err := inv.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release()
	t := &InventoryTx{inv: inv, conn: conn}
	committed := false
	defer func() {
		// Also on panic, and before the connection goes back to the pool.
		if !committed {
			t.rollback()
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	committed = true
	return nil
}

// begun returns the transaction for a statement to run in, beginning it if no statement has
// been sent yet, and sending the writes queued for the COMMIT if there are any.
func (t *InventoryTx) begun(ctx context.Context) (pgx.Tx, error) {
	t.read = nil
	if t.tx == nil {
		t.open = true
		tx, err := t.conn.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("begin: %w", err)
		}
		t.tx = tx
	}
	if t.later.Len() > 0 {
		later := t.later
		t.later = pgx.Batch{}
		if err := t.tx.SendBatch(ctx, &later).Close(); err != nil {
			return nil, err
		}
	}
	return t.tx, nil
}

// commit sends the queued writes, the outbox rows and COMMIT in one round trip (and BEGIN in
// front of them if nothing else was sent). The transaction is ended here, not through t.tx,
// which is left behind with the connection.
func (t *InventoryTx) commit(ctx context.Context) error {
	if !t.open && len(t.out) == 0 {
		return nil
	}
	var b pgx.Batch
	if !t.open {
		t.open = true
		b.Queue("BEGIN")
	}
	b.QueuedQueries = append(b.QueuedQueries, t.later.QueuedQueries...)
	if err := outbox.QueuePostgres(&b, t.out...); err != nil {
		return err
	}
	var tag pgconn.CommandTag
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	if err := t.conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// COMMIT of a transaction an earlier error aborted rolls it back and says so only here.
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback)
	}
	return nil
}

// rollback ends a transaction that failed, even when the caller's context is done: the
// connection must not go back to the pool inside a transaction. If ROLLBACK fails too, the
// pool closes the connection rather than reuse it (pgxpool drops a connection that is not
// idle).
func (t *InventoryTx) rollback() {
	if !t.open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
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
	claimed, err := t.claim(ctx, consumer, sorted)
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

// claim inserts msgIDs into the inbox and returns the ones that were not there. As a
// transaction's first statement it goes in one round trip with BEGIN; what PrepareHolds,
// PrepareConfirms and PrepareReleases asked for goes in the same round trip, after it.
func (t *InventoryTx) claim(ctx context.Context, consumer string, msgIDs []string) ([]string, error) {
	const insert = `
		INSERT INTO inbox (consumer, msg_id)
		SELECT $1, id FROM unnest($2::text[]) WITH ORDINALITY AS m(id, n) ORDER BY n
		ON CONFLICT (consumer, msg_id) DO NOTHING
		RETURNING msg_id`
	var b pgx.Batch
	if t.tx == nil {
		b.BeginTx(pgx.TxOptions{})
	}
	var claimed []string
	b.Queue(insert, consumer, msgIDs).Query(func(rows pgx.Rows) error {
		var err error
		claimed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	// The claim goes first: every transaction claims before it locks a flight, so two
	// cannot wait for each other's rows in a cycle.
	read := queueHoldRead(&b, t.holds)
	t.holds = nil
	sold := make(map[string]*prepared, len(t.confirms))
	for _, id := range t.confirms {
		p := &prepared{}
		queueConfirm(&b, id, &p.h, &p.ok)
		sold[id] = p
	}
	t.confirms = nil
	released := make(map[string]*releaseRead, len(t.releases))
	for _, id := range t.releases {
		released[id] = queueReleaseRead(&b, id)
	}
	t.releases = nil
	if t.tx != nil {
		tx, err := t.begun(ctx) // sends the writes queued so far first
		if err != nil {
			return nil, err
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return nil, err
		}
	} else {
		t.open = true
		br := t.conn.SendBatch(ctx, &b)
		t.tx = br.Tx()
		if err := br.Close(); err != nil {
			return nil, err
		}
	}
	// A claim that prepared nothing leaves what an earlier one prepared: an inbox insert
	// changes no hold.
	if read != nil {
		t.read = read
	}
	if len(sold) > 0 {
		t.sold = sold
	}
	if len(released) > 0 {
		t.released = released
	}
	return claimed, nil
}

// PrepareHolds asks the transaction's next inbox claim to take, in its round trip, what a
// HoldBatch of reqs (or of some of them) reads first: the flights' row locks and the
// bookings' recorded outcomes. A batch of holds then takes two round trips instead of three,
// and holds its flights' locks for one. If anything but that HoldBatch comes between, the
// HoldBatch reads again.
func (t *InventoryTx) PrepareHolds(reqs []flight.HoldRequest) {
	t.holds = reqs
}

// PrepareConfirms asks the transaction's next inbox claim to confirm bookingIDs in its round
// trip, for Confirm to answer from: a batch of confirms then takes two round trips instead of
// two plus one a confirm. Ids that are not UUIDs, or that appear twice, are left to Confirm.
//
// The claim confirms them before it knows which of its messages are new. That is safe only
// because a confirm is idempotent and final: a message the inbox has seen was confirmed
// (or found released, or rolled back with its claim), so confirming its booking again changes
// nothing. It also moves the confirms ahead of whatever else the transaction does, so the
// caller prepares only when nothing else in it touches those bookings' holds.
func (t *InventoryTx) PrepareConfirms(bookingIDs []string) {
	seen := make(map[string]int, len(bookingIDs))
	for _, id := range bookingIDs {
		seen[id]++
	}
	t.confirms = t.confirms[:0]
	for _, id := range bookingIDs {
		if _, err := uuid.Parse(id); err == nil && seen[id] == 1 {
			t.confirms = append(t.confirms, id)
		}
	}
}

// PrepareReleases asks the transaction's next inbox claim to read, in its round trip, what a
// Release of each of bookingIDs reads first: the hold's flight, locked, and the hold. A
// Release that finds its read then queues its writes for the COMMIT, and a batch of releases
// takes two round trips where it took two plus two a release. Ids that are not UUIDs are left
// to Release. A hold, a confirm or a batch of holds in between makes the reads stale, and the
// Releases after it read again.
func (t *InventoryTx) PrepareReleases(bookingIDs []string) {
	t.releases = t.releases[:0]
	for _, id := range bookingIDs {
		if _, err := uuid.Parse(id); err == nil {
			t.releases = append(t.releases, id)
		}
	}
}

// stale drops what the claim read or did for later calls, once a statement that may change
// the holds it covered has been sent.
func (t *InventoryTx) stale() {
	t.sold, t.released = nil, nil
}

// Hold is Inventory.HoldTx in this transaction.
func (t *InventoryTx) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	t.stale()
	tx, err := t.begun(ctx)
	if err != nil {
		return flight.Hold{}, err
	}
	return t.inv.HoldTx(ctx, tx, req)
}

// HoldBatch is Inventory.HoldBatchTx in this transaction, except that the holds are written
// with the COMMIT (or before the transaction's next statement). If another transaction
// recorded one of the bookings first, the COMMIT fails with the serialization failure
// HoldBatchTx would have returned, and InTx runs the transaction again.
func (t *InventoryTx) HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	read := t.read
	t.stale()
	tx, err := t.begun(ctx)
	if err != nil {
		return nil, err
	}
	hs, err := t.inv.holdTx(ctx, tx, reqs, &t.later, read)
	if err != nil {
		return nil, fmt.Errorf("hold %d bookings: %w", len(reqs), err)
	}
	return hs, nil
}

// Release is Inventory.ReleaseTx in this transaction.
//
// A release read by the claim, and still current, needs no round trip: its writes go with the
// COMMIT (or before the transaction's next statement). A release changes only its own hold
// and adds to its flight's counters, so it leaves the other bookings' reads current.
func (t *InventoryTx) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	t.sold = nil
	r := t.released[bookingID]
	delete(t.released, bookingID)
	if r != nil && r.locked && r.ok {
		return queueGiveBack(&t.later, r.h), nil
	}
	tx, err := t.begun(ctx)
	if err != nil {
		return flight.Hold{}, err
	}
	return t.inv.ReleaseTx(ctx, tx, bookingID, flightID)
}

// Confirm is Inventory.ConfirmTx in this transaction, answered without a round trip when the
// claim confirmed the booking (PrepareConfirms).
func (t *InventoryTx) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	t.released = nil
	if p, ok := t.sold[bookingID]; ok {
		delete(t.sold, bookingID) // the answer to the first Confirm only
		return confirmed(bookingID, p.h, p.ok)
	}
	tx, err := t.begun(ctx)
	if err != nil {
		return flight.Hold{}, err
	}
	return t.inv.ConfirmTx(ctx, tx, bookingID)
}

// Queue adds msgs to the outbox in this transaction. They are sent with the COMMIT.
func (t *InventoryTx) Queue(_ context.Context, msgs ...outbox.Message) error {
	t.out = append(t.out, msgs...)
	return nil
}
