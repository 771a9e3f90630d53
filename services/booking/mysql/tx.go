package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

// tx is booking.Tx over one MySQL transaction on a connection of its own.
//
// It sends as few packets as the transaction's reads allow, because each round trip costs the
// booking process and MariaDB a write and a read system call and a wake-up each, which is
// where both spent most of their time under load (docs/performance.md):
//
//   - Writes whose results nothing reads (a new booking, a history line, outbox rows, a
//     payment, a refund owed, an idempotency key) are not sent one at a time: they queue and
//     go to the server together, as one multi-statement packet, with the next statement whose
//     result is read, or with the commit.
//   - START TRANSACTION is not sent on its own: it goes in front of the transaction's first
//     packet, and COMMIT at the end of its last one.
//
// So a booking POST, all of whose writes are queued, is one round trip
// (START TRANSACTION; INSERT ...; COMMIT) where it was seven; a reply in a batch is two (its
// lock, then its row, history line and events) plus the batch's inbox claims.
//
// The server runs a packet's statements in order and stops at the first error, which the
// packet returns with the server's error number intact (a deadlock is still retried by
// Store.inTx); what ran before it is undone by the ROLLBACK that follows any error, so a
// failed packet leaves nothing behind. Queued statements need Open's MultiStatements and
// InterpolateParams: a multi-statement string cannot be a server-side prepared statement.
type tx struct {
	s      *Store
	conn   *sql.Conn
	begun  bool // START TRANSACTION has been sent (perhaps in a packet that failed)
	queued []string
	args   []any

	// claim is an idempotency key claimed optimistically and not yet queued (see ClaimKey);
	// claimQueued says its INSERT is in the queue, and keysChecked that this attempt claims
	// keys the slow way, after an earlier attempt found the key taken.
	claim       *booking.Key
	claimQueued bool
	keysChecked bool
}

// errCheckKey ends an attempt whose optimistic key claim met an existing key, or that failed
// before its claim was sent (the error might have been the answer to a request the key had
// already answered): Store.inTx runs the transaction again, claiming the key the slow way.
var errCheckKey = errors.New("mysql: idempotency key to be checked")

// inTx runs fn in a transaction of s and commits it, running it again as retry says. An
// attempt that ended with errCheckKey is run again at once, claiming keys the slow way.
func (s *Store) inTx(ctx context.Context, fn func(t *tx) error) error {
	keysChecked := false
	return retry(ctx, func() error {
		err := s.runTx(ctx, fn, keysChecked)
		if errors.Is(err, errCheckKey) && !keysChecked {
			keysChecked = true
			err = s.runTx(ctx, fn, true)
		}
		return err
	})
}

func (s *Store) runTx(ctx context.Context, fn func(t *tx) error, keysChecked bool) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	defer conn.Close()
	t := &tx{s: s, conn: conn, keysChecked: keysChecked}
	committed := false
	defer func() {
		// Also on panic: the connection goes back to the pool without an open transaction.
		if !committed {
			t.rollback(ctx)
		}
	}()
	if err := fn(t); err != nil {
		if t.claim != nil {
			return fmt.Errorf("%w: %w", errCheckKey, err)
		}
		return err
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	committed = true
	return nil
}

// commit sends what is queued and COMMIT in one packet. A transaction that read nothing and
// wrote nothing sends nothing.
func (t *tx) commit(ctx context.Context) error {
	t.materialiseClaim()
	if !t.begun && len(t.queued) == 0 {
		return nil
	}
	t.later("COMMIT")
	if err := t.flush(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rollback ends a transaction that failed. It runs even when ctx is cancelled, since the
// connection must not go back to the pool inside a transaction; a connection that cannot
// roll back is discarded instead.
func (t *tx) rollback(ctx context.Context) {
	if !t.begun {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := t.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// later queues a write whose result nothing reads.
func (t *tx) later(query string, args ...any) {
	t.queued = append(t.queued, strings.TrimSpace(query))
	t.args = append(t.args, args...)
}

// queueClaim queues an idempotency key's row in front of the other writes, so that the key's
// lock is the transaction's first.
func (t *tx) queueClaim(query string, args ...any) {
	t.queued = append([]string{strings.TrimSpace(query)}, t.queued...)
	t.args = append(args, t.args...)
	t.claimQueued = true
}

// packet takes the queued statements, with START TRANSACTION in front if the transaction has
// not begun, as one multi-statement string. claimed says it carries an optimistic key claim.
func (t *tx) packet() (query string, args []any, n int, claimed bool) {
	t.materialiseClaim()
	if !t.begun {
		t.queued = append([]string{"START TRANSACTION"}, t.queued...)
		t.begun = true
	}
	query, args, n, claimed = strings.Join(t.queued, ";\n"), t.args, len(t.queued), t.claimQueued
	t.queued, t.args, t.claimQueued = nil, nil, false
	return query, args, n, claimed
}

// flush sends the queued writes (and START TRANSACTION, if not yet sent) in one round trip.
func (t *tx) flush(ctx context.Context) error {
	t.materialiseClaim()
	if len(t.queued) == 0 && t.begun {
		return nil
	}
	query, args, n, claimed := t.packet()
	if _, err := t.conn.ExecContext(ctx, query, args...); err != nil {
		return t.packetErr(claimed, n, err)
	}
	return nil
}

// packetErr names a failed packet's error; a duplicate key in the packet that carried an
// optimistic key claim is taken to be the key (booking ids and event ids are fresh UUIDs), and
// if it was something else the slow attempt meets it again.
func (t *tx) packetErr(claimed bool, n int, err error) error {
	if claimed && mysqlErr(err) == errDupEntry {
		return fmt.Errorf("%w: %w", errCheckKey, err)
	}
	return fmt.Errorf("write %d statements: %w", n, err)
}

// ExecContext queues the statement (see later), so that the Emit hook's outbox rows go with
// the change's other writes: it makes t an outbox.Execer. The result it returns cannot be
// read, since the statement has not run yet.
func (t *tx) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	t.later(query, args...)
	return queuedResult{}, nil
}

// exec runs a statement whose error number is read (a duplicate key), in a packet of its own
// after the queued writes.
func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.conn.ExecContext(ctx, query, args...)
}

// execAfterQueued runs a statement whose result is read in the same round trip as the queued
// writes, sent before it: the result is the statement's own (the driver reports the last
// statement's), and an error may come from any of them. Only for a caller that reads no
// particular error number in the result; ClaimKey, which tells a duplicate key apart, uses
// exec.
func (t *tx) execAfterQueued(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.later(query, args...)
	query, args, n, claimed := t.packet()
	res, err := t.conn.ExecContext(ctx, query, args...)
	if err != nil {
		return nil, t.packetErr(claimed, n, err)
	}
	return res, nil
}

// queryRow runs a query after the queued writes, so it sees them. A query cannot share a
// packet with other statements (the driver would answer with the first statement's result),
// so the queued writes go first in a packet of their own.
func (t *tx) queryRow(ctx context.Context, query string, args ...any) scanner {
	if err := t.flush(ctx); err != nil {
		return failedRow{err}
	}
	return t.conn.QueryRowContext(ctx, query, args...)
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
