package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/flightbook/flightbook/services/booking"
)

// tx is booking.Tx over one MySQL transaction.
//
// Writes whose results nothing reads (a new booking, a history line, outbox rows, a payment,
// a refund owed, a completed idempotency key) are not sent one at a time: they queue in the
// transaction and go to the server together, as one multi-statement round trip, just before
// the next statement that reads or whose result is read, and before the commit. A booking
// POST was seven round trips (begin, key claim, booking, history, outbox, key completion,
// commit) and is four; a payment's transaction went from eight to five; a reply in a batch
// takes three (its inbox claim, its lock, and one for its row, history line and events: save
// sends the row last, with the queued writes) where it took five. Each round trip costs a
// write and a read system call on both sides, which is where the booking process and MariaDB
// spent most of their time under load (docs/performance.md).
//
// The server runs the queued statements in order and stops at the first error, which the
// flush returns with the server's error number intact (a deadlock is still retried by inTx);
// the transaction then rolls back as if that statement had failed on its own. Queued writes
// need Open's MultiStatements and InterpolateParams: a multi-statement string cannot be a
// server-side prepared statement.
type tx struct {
	s      *Store
	tx     *sql.Tx
	queued []string
	args   []any
}

// inTx runs fn in a transaction of s (retrying deadlocks, see inTx) and sends fn's queued
// writes before the commit.
func (s *Store) inTx(ctx context.Context, fn func(t *tx) error) error {
	return inTx(ctx, s.db, func(sqlTx *sql.Tx) error {
		t := &tx{s: s, tx: sqlTx}
		if err := fn(t); err != nil {
			return err
		}
		return t.flush(ctx)
	})
}

// later queues a write whose result nothing reads.
func (t *tx) later(query string, args ...any) {
	t.queued = append(t.queued, strings.TrimSpace(query))
	t.args = append(t.args, args...)
}

// flush sends the queued writes in one round trip.
func (t *tx) flush(ctx context.Context) error {
	if len(t.queued) == 0 {
		return nil
	}
	query, args, n := strings.Join(t.queued, ";\n"), t.args, len(t.queued)
	t.queued, t.args = t.queued[:0], nil
	if _, err := t.tx.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("write %d queued statements: %w", n, err)
	}
	return nil
}

// ExecContext queues the statement (see later), so that the Emit hook's outbox rows go with
// the change's other writes: it makes t an outbox.Execer. The result it returns cannot be
// read, since the statement has not run yet.
func (t *tx) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	t.later(query, args...)
	return queuedResult{}, nil
}

// exec runs a statement whose result is read, after the queued writes.
func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// execAfterQueued runs a statement whose result is read in the same round trip as the queued
// writes, sent before it: the result is the statement's own (the driver reports the last
// statement's), and an error may come from any of them. Only for a caller that reads no
// particular error number in the result; ClaimKey, which tells a duplicate key apart, uses
// exec.
func (t *tx) execAfterQueued(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.later(query, args...)
	query, args = strings.Join(t.queued, ";\n"), t.args
	t.queued, t.args = t.queued[:0], nil
	return t.tx.ExecContext(ctx, query, args...)
}

// queryRow runs a query, after the queued writes, so it sees them.
func (t *tx) queryRow(ctx context.Context, query string, args ...any) scanner {
	if err := t.flush(ctx); err != nil {
		return failedRow{err}
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// errQueued is what a queued statement's result answers.
var errQueued = errors.New("mysql: the statement is queued and has not run yet")

type queuedResult struct{}

func (queuedResult) LastInsertId() (int64, error) { return 0, errQueued }
func (queuedResult) RowsAffected() (int64, error) { return 0, errQueued }

// failedRow is a row whose query could not be sent.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }

var _ booking.Tx = (*tx)(nil)
