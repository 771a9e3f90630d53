package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flightbook/flightbook/services/booking"
)

// tx is booking.Tx over one MySQL transaction on a connection of its own.
//
// It sends as few packets as the transaction's reads allow, because each round trip costs the
// booking process and MariaDB a write and a read system call and a wake-up each, which is
// where both spent most of their time under load (docs/performance.md):
//
//   - Writes are not sent one at a time: they queue and go to the server together, in one
//     multi-statement packet with the next query, or with the commit. A write whose result
//     matters (an inbox claim) queues with a check that reads its own count of affected rows
//     when the packet returns.
//   - START TRANSACTION is not sent on its own: it goes in front of the transaction's first
//     packet, and COMMIT at the end of its last one, unless that packet has checks to pass
//     first.
//
// So a booking POST, all of whose writes are queued, is one round trip
// (START TRANSACTION; INSERT ...; COMMIT) where it was seven, and a payment's confirmation or
// a batch of replies, however many it holds, three: the row locks (with the inbox claims), the
// writes, whose version guards are checked before the commit, and COMMIT.
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
	queued []stmt
	// leaves are queued rows that nothing in the transaction reads or refers to (history
	// lines, outbox events): they go after the other queued writes, so that a batch's rows of
	// one table are next to each other and coalesce into one INSERT.
	leaves []stmt
	// locked holds the bookings Lock read under their row locks, as they stand in this
	// transaction.
	locked map[string]booking.Booking

	// claims are idempotency keys claimed optimistically and not yet queued (see ClaimKey),
	// and careful says this attempt claims keys and messages the slow way, after an earlier
	// attempt's optimistic claim found one taken.
	claims  []booking.Key
	careful bool
}

// stmt is a queued statement. check, when set, is given the rows the statement affected once
// its packet has run; an error fails the transaction.
type stmt struct {
	query string
	args  []any
	check func(affected int64) error
	claim bool // the optimistic claim of an idempotency key
}

// errCheckKey ends an attempt whose optimistic key claim met an existing key, or that failed
// before its claim was sent (the error might have been the answer to a request the key had
// already answered), and errCheckInbox one whose optimistic claim of several messages found
// one of them processed: Store.inTx runs the transaction again, claiming the slow way.
var (
	errCheckKey   = errors.New("mysql: idempotency key to be checked")
	errCheckInbox = errors.New("mysql: a message already processed is among those claimed")
)

// inTx runs fn in a transaction of s and commits it, running it again as retry says. An
// attempt that ended with errCheckKey or errCheckInbox is run again at once, carefully.
func (s *Store) inTx(ctx context.Context, fn func(t *tx) error) error {
	careful := false
	return retry(ctx, func() error {
		err := s.runTx(ctx, fn, careful)
		if (errors.Is(err, errCheckKey) || errors.Is(err, errCheckInbox)) && !careful {
			careful = true
			err = s.runTx(ctx, fn, true)
		}
		return err
	})
}

func (s *Store) runTx(ctx context.Context, fn func(t *tx) error, careful bool) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	defer conn.Close()
	t := &tx{s: s, conn: conn, careful: careful}
	committed := false
	defer func() {
		// Also on panic: the connection goes back to the pool without an open transaction.
		if !committed {
			t.rollback(ctx)
		}
	}()
	if err := fn(t); err != nil {
		if len(t.claims) > 0 {
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

// commit sends what is queued and COMMIT, in one packet unless the queued writes have checks
// to pass first. A transaction that read nothing and wrote nothing sends nothing.
func (t *tx) commit(ctx context.Context) error {
	t.materialiseClaims()
	t.queueLeaves()
	if !t.begun && len(t.queued) == 0 {
		return nil
	}
	if slices.ContainsFunc(t.queued, func(s stmt) bool { return s.check != nil }) {
		if err := t.flush(ctx); err != nil {
			return err
		}
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
	t.queued = append(t.queued, stmt{query: strings.TrimSpace(query), args: args})
}

// laterLeaf queues a row that nothing else in the transaction reads or refers to (see
// tx.leaves).
func (t *tx) laterLeaf(query string, args ...any) {
	t.leaves = append(t.leaves, stmt{query: strings.TrimSpace(query), args: args})
}

// queueLeaves moves the leaves behind the queued writes.
func (t *tx) queueLeaves() {
	t.queued = append(t.queued, t.leaves...)
	t.leaves = nil
}

// laterChecked queues a write whose count of affected rows check reads.
func (t *tx) laterChecked(check func(affected int64) error, query string, args ...any) {
	t.queued = append(t.queued, stmt{query: strings.TrimSpace(query), args: args, check: check})
}

// queueClaim queues an idempotency key's row in front of the other writes, so that the key's
// lock is the transaction's first.
func (t *tx) queueClaim(query string, args ...any) {
	t.queued = append([]stmt{{query: strings.TrimSpace(query), args: args, claim: true}}, t.queued...)
}

// flush sends the queued writes (and START TRANSACTION, if not yet sent) in one round trip
// and runs their checks.
func (t *tx) flush(ctx context.Context) error {
	packet, claimed := t.take()
	if len(packet) == 0 {
		return nil
	}
	query, args := packetText(packet, false)
	affected, err := t.send(ctx, query, args)
	if err != nil {
		return packetError(err, claimed, len(packet))
	}
	if len(affected) != len(packet) {
		return fmt.Errorf("write %d statements: the server answered %d", len(packet), len(affected))
	}
	for i, s := range packet {
		if s.check != nil {
			if err := s.check(affected[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// take returns what is queued, with START TRANSACTION in front if it has not been sent yet,
// as the statements of the next packet, and whether they carry an optimistic key claim.
func (t *tx) take() (packet []stmt, claimed bool) {
	t.materialiseClaims()
	t.queueLeaves()
	if len(t.queued) == 0 && t.begun {
		return nil, false
	}
	if !t.begun {
		t.queued = append([]stmt{{query: "START TRANSACTION"}}, t.queued...)
		t.begun = true
	}
	packet = coalesce(t.queued)
	t.queued = nil
	for _, s := range packet {
		claimed = claimed || s.claim
	}
	return packet, claimed
}

// packetText joins a packet's statements into one multi-statement string. With rowCounts,
// each checked statement is followed by SELECT ROW_COUNT(), so that a packet ending in a
// query, whose result is the only one the driver's Exec would not return, still answers each
// check with a result set of its own.
func packetText(packet []stmt, rowCounts bool) (string, []any) {
	query := make([]string, 0, len(packet))
	var args []any
	for _, s := range packet {
		query = append(query, s.query)
		args = append(args, s.args...)
		if rowCounts && s.check != nil {
			query = append(query, "SELECT ROW_COUNT()")
		}
	}
	return strings.Join(query, ";\n"), args
}

// packetError is the error of a packet of n statements that failed with err.
func packetError(err error, claimed bool, n int) error {
	// A duplicate key in the packet that carried an optimistic key claim is taken to be the
	// key (booking ids and event ids are fresh UUIDs); if it was something else, the slow
	// attempt meets it again.
	if claimed && mysqlErr(err) == errDupEntry {
		return fmt.Errorf("%w: %w", errCheckKey, err)
	}
	return fmt.Errorf("write %d statements: %w", n, err)
}

// coalesce merges the single-row INSERTs of a packet that have the same text, and no check,
// into one multi-row INSERT each, at the place of the first: the same rows for a fraction of
// the server's work per row. So a batch of booking POSTs writes four INSERTs, not four per
// booking, and a batch of replies its history lines and events with two. Rows keep their
// order within a table. Only a run of such INSERTs is merged: any other statement (a START,
// an UPDATE, a checked INSERT) ends the run, so no row moves past a statement that could see
// it. Rows of one table move ahead of another table's rows of the same run; the packets that
// have such runs repeat one shape per item (key, booking, then the leaves: history, outbox),
// so a row never moves ahead of the row it refers to.
func coalesce(packet []stmt) []stmt {
	out := make([]stmt, 0, len(packet))
	run := map[string]int{} // the INSERT text of the current run -> its index in out
	for _, s := range packet {
		head, row, ok := splitInsert(s)
		if !ok {
			out = append(out, s)
			clear(run)
			continue
		}
		i, seen := run[head+row]
		if !seen {
			run[head+row] = len(out)
			out = append(out, s)
			continue
		}
		m := &out[i]
		m.query += ", " + row
		m.args = append(slices.Clip(m.args), s.args...)
		m.claim = m.claim || s.claim
	}
	return out
}

// splitInsert splits an unchecked single-row "INSERT INTO ... VALUES (...)" into the part up
// to VALUES and the row.
func splitInsert(s stmt) (head, row string, ok bool) {
	if s.check != nil || !strings.HasPrefix(s.query, "INSERT INTO ") {
		return "", "", false
	}
	i := strings.LastIndex(s.query, "VALUES")
	if i < 0 {
		return "", "", false
	}
	head, row = s.query[:i+len("VALUES")], strings.TrimSpace(s.query[i+len("VALUES"):])
	if !oneRow(row) {
		return "", "", false
	}
	return head, row, true
}

// oneRow reports whether row is one parenthesised row, "(...)", and nothing after it (no
// second row, no ON DUPLICATE KEY clause).
func oneRow(row string) bool {
	if !strings.HasPrefix(row, "(") {
		return false
	}
	depth, quoted := 0, false
	for i := 0; i < len(row); i++ {
		switch c := row[i]; {
		case quoted:
			quoted = c != '\''
		case c == '\'':
			quoted = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i == len(row)-1
			}
		}
	}
	return false
}

// send runs query, one or more statements, on the transaction's connection and returns the
// rows each statement affected, which only the driver's own result tells (database/sql's
// reports the last statement's).
func (t *tx) send(ctx context.Context, query string, args []any) ([]int64, error) {
	var affected []int64
	err := t.conn.Raw(func(dc any) error {
		conn, ok := dc.(interface {
			driver.ExecerContext
			driver.NamedValueChecker
		})
		if !ok {
			return fmt.Errorf("mysql: driver connection %T cannot execute", dc)
		}
		values := make([]driver.NamedValue, len(args))
		for i, a := range args {
			values[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
			if err := conn.CheckNamedValue(&values[i]); err != nil {
				return fmt.Errorf("argument %d: %w", i+1, err)
			}
		}
		res, err := conn.ExecContext(ctx, query, values)
		if err != nil {
			return err
		}
		all, ok := res.(mysql.Result)
		if !ok {
			return fmt.Errorf("mysql: driver result %T has no per-statement counts", res)
		}
		affected = all.AllRowsAffected()
		return nil
	})
	return affected, err
}

// ExecContext queues the statement as a leaf (see laterLeaf), so that the Emit hook's outbox
// rows go with the change's other writes: it makes t an outbox.Execer. The result it returns
// cannot be read, since the statement has not run yet.
func (t *tx) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	t.laterLeaf(query, args...)
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

// queryRow runs a query after the queued writes, so it sees them; see query.
func (t *tx) queryRow(ctx context.Context, query string, args ...any) scanner {
	rows, err := t.query(ctx, query, args...)
	return firstRow{rows: rows, err: err}
}

// query runs a query after the queued writes, in the same packet: START TRANSACTION, the
// writes and the query are one round trip. The driver answers a multi-statement query with
// its first result set and skips the statements that have none, so each checked write is
// followed by SELECT ROW_COUNT(), whose result set is read and checked here before the
// query's own is handed back.
func (t *tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	packet, claimed := t.take()
	text, all := packetText(append(packet, stmt{query: query, args: args}), true)
	rows, err := t.conn.QueryContext(ctx, text, all...)
	if err != nil {
		if len(packet) == 0 {
			return nil, err
		}
		return nil, packetError(err, claimed, len(packet)+1)
	}
	for _, s := range packet {
		if s.check == nil {
			continue
		}
		n, err := rowCount(rows)
		if err != nil {
			_ = rows.Close()
			return nil, packetError(err, claimed, len(packet)+1)
		}
		if err := s.check(n); err != nil {
			_ = rows.Close()
			return nil, err
		}
	}
	return rows, nil
}

// rowCount reads the current result set of rows, a SELECT ROW_COUNT(), and moves to the next.
func rowCount(rows *sql.Rows) (int64, error) {
	var n int64
	if !rows.Next() {
		return 0, cmp.Or(rows.Err(), errors.New("mysql: a ROW_COUNT() answered no row"))
	}
	if err := rows.Scan(&n); err != nil {
		return 0, err
	}
	if !rows.NextResultSet() {
		return 0, cmp.Or(rows.Err(), errors.New("mysql: the packet ended before its query"))
	}
	return n, nil
}

// errQueued is what a queued statement's result answers.
var errQueued = errors.New("mysql: the statement is queued and has not run yet")

type queuedResult struct{}

func (queuedResult) LastInsertId() (int64, error) { return 0, errQueued }
func (queuedResult) RowsAffected() (int64, error) { return 0, errQueued }

// firstRow is the first row of a query's result, like *sql.Row.
type firstRow struct {
	rows *sql.Rows
	err  error
}

func (r firstRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		return cmp.Or(r.rows.Err(), sql.ErrNoRows)
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

var _ booking.Tx = (*tx)(nil)
