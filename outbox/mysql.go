package outbox

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go/jetstream"
)

// mysqlInsertChunk bounds the rows of one multi-row INSERT, well under MySQL's 65,535
// placeholders per statement.
const mysqlInsertChunk = 1000

// Execer runs a statement in the caller's transaction: a *sql.Tx, or a store's writer that
// queues statements whose results nobody reads and sends them to the server together
// (services/booking/mysql). The Add functions never read the result.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// AddMySQL adds msgs to the outbox inside tx, the caller's MySQL/MariaDB transaction, so they
// are published if and only if tx commits. Call the relay's Notify after the commit to publish
// them at once rather than at the next poll.
func AddMySQL(ctx context.Context, tx Execer, msgs ...Message) error {
	for len(msgs) > 0 {
		n := min(len(msgs), mysqlInsertChunk)
		chunk := msgs[:n]
		msgs = msgs[n:]
		var q strings.Builder
		q.WriteString("INSERT INTO outbox (msg_id, subject, headers, payload, aggregate_id, created_at) VALUES ")
		args := make([]any, 0, 5*len(chunk))
		for i, m := range chunk {
			h, err := encodeHeaders(m)
			if err != nil {
				return err
			}
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, UTC_TIMESTAMP(6))")
			data := m.Data
			if data == nil {
				data = []byte{} // the column is NOT NULL; an empty body is still a body
			}
			args = append(args, m.ID, m.Subject, h, data, m.AggregateID)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("outbox: add %d messages (first %s): %w", len(chunk), chunk[0].ID, err)
		}
	}
	return nil
}

// NewMySQLRelay returns a relay for the outbox table in db, a MySQL/MariaDB database, publishing
// through js. MariaDB 10.6+ or MySQL 8 is needed for SKIP LOCKED. A nil log means slog.Default().
// Create js with jetstream.WithPublishAsyncTimeout, as NewPostgresRelay explains.
func NewMySQLRelay(db *sql.DB, js jetstream.JetStream, cfg RelayConfig, log *slog.Logger) *Relay {
	return newRelay(mysqlStore{db: db, multi: new(atomic.Int32)}, js, cfg, log)
}

// mysqlStore is the relay's storage on MySQL/MariaDB.
//
// Its transactions run at READ COMMITTED: under the default REPEATABLE READ, a locking read that
// reaches the end of the unpublished rows also locks the gap after them, which would block every
// producer's INSERT into the outbox until the relay commits.
type mysqlStore struct {
	db *sql.DB
	// multi says whether db's connections take several statements in one query (go-sql-driver's
	// multiStatements): multiUnknown until a claim has asked the server.
	multi *atomic.Int32
}

const (
	multiUnknown = iota
	multiYes
	multiNo
)

var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// mysqlClaim is a batch locked by an open transaction.
type mysqlClaim struct {
	tx   *sql.Tx
	rows []row
}

func (s mysqlStore) claim(ctx context.Context, after int64, limit int) (claim, error) {
	if s.multiStatements(ctx) {
		return s.claimPacked(ctx, after, limit)
	}
	// database/sql rolls a transaction back when the context it began with ends; this one
	// lives until markPublished or rollback, so only the claim query gets ctx.
	tx, err := s.db.BeginTx(context.WithoutCancel(ctx), readCommitted)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	// A locking read with SKIP LOCKED can see a transaction half committed: InnoDB checks each
	// row's lock as it scans, so the first rows of a commit in progress are skipped as locked
	// and its last ones taken, and they would be published out of order. So the next ids come
	// from a consistent read, which sees a commit whole, and only the prefix of them that locks
	// is kept. The integers are ours, written into the text so that the queries need no
	// server-side prepare (one round trip each instead of three with go-sql-driver's defaults).
	//
	// The locking read goes by the primary key. By the (published_at, id) index, which MariaDB
	// picks for it, it skipped every row of the next batch while the batch before was still in
	// flight, although no transaction held them (seen on MariaDB 10.11: 0 of 100 rows claimed,
	// and another session locked the first of them with NOWAIT); the relay then waited for the
	// next notification or poll instead of sending the next batch.
	ids, err := s.nextIDs(ctx, tx, after, limit)
	if err != nil || len(ids) == 0 {
		_ = tx.Rollback()
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		return &mysqlClaim{tx: tx}, nil
	}
	rs, err := tx.QueryContext(ctx, "SELECT id, msg_id, subject, headers, payload FROM outbox FORCE INDEX (PRIMARY)"+
		" WHERE id IN ("+idList(ids)+") AND published_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED")
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("claim: %w", err)
	}
	c := &mysqlClaim{tx: tx}
	c.rows, err = scanRows(rs)
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("claim: %w", err)
	}
	c.rows = lockedPrefix(c.rows, ids)
	return c, nil
}

// multiStatements reports whether db's connections take several statements in one query, asking
// the server once: with the option off it refuses two statements as one with a syntax error
// (1064). Until a definite answer (the database may be down) it says no.
func (s mysqlStore) multiStatements(ctx context.Context) bool {
	switch s.multi.Load() {
	case multiYes:
		return true
	case multiNo:
		return false
	}
	_, err := s.db.ExecContext(ctx, "DO 1; DO 1")
	var me *mysql.MySQLError
	switch {
	case err == nil:
		s.multi.Store(multiYes)
		return true
	case errors.As(err, &me) && me.Number == errParse:
		s.multi.Store(multiNo)
	}
	return false
}

// errParse is MySQL's error number for a syntax error.
const errParse = 1064

// claimPacked is claim in three round trips instead of six, for connections that take several
// statements in one query: the consistent read of the next ids on its own (an autocommit read
// sees each commit whole, as the transaction's did), then the isolation level, START
// TRANSACTION and the locking read together, and at the end the mark with COMMIT (see
// mysqlPackedClaim). A poll that finds nothing is one round trip.
func (s mysqlStore) claimPacked(ctx context.Context, after int64, limit int) (claim, error) {
	ids, err := s.nextIDs(ctx, s.db, after, limit)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if len(ids) == 0 {
		return &mysqlPackedClaim{}, nil
	}
	// The connection, like the transaction on it, lives until markPublished or rollback.
	conn, err := s.db.Conn(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	c := &mysqlPackedClaim{conn: conn}
	rs, err := conn.QueryContext(ctx, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION;\n"+
		"SELECT id, msg_id, subject, headers, payload FROM outbox FORCE INDEX (PRIMARY)"+
		" WHERE id IN ("+idList(ids)+") AND published_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED")
	if err == nil {
		c.rows, err = scanRows(rs)
	}
	if err != nil {
		c.rollback()
		return nil, fmt.Errorf("claim: %w", err)
	}
	c.rows = lockedPrefix(c.rows, ids)
	return c, nil
}

// lockedPrefix keeps the rows locked in the order of ids up to the first id not among them.
func lockedPrefix(rows []row, ids []int64) []row {
	k := 0
	for k < len(rows) && rows[k].id == ids[k] {
		k++
	}
	return rows[:k]
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// nextIDs reads, without locking, the ids of up to limit unpublished rows above after.
func (s mysqlStore) nextIDs(ctx context.Context, q querier, after int64, limit int) ([]int64, error) {
	rs, err := q.QueryContext(ctx, "SELECT id FROM outbox WHERE published_at IS NULL AND id > "+
		strconv.FormatInt(after, 10)+" ORDER BY id LIMIT "+strconv.Itoa(limit))
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rs.Err()
}

// idList writes ids as a comma-separated SQL list.
func idList(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

// scanRows reads every row of rs (id, msg_id, subject, headers, payload) and closes it.
func scanRows(rs *sql.Rows) ([]row, error) {
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.msgID, &r.subject, &r.headers, &r.payload); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

func (c *mysqlClaim) claimed() []row { return c.rows }

// markStatement marks rows published. Ids are integers read from the table, so writing them
// into the statement is safe, and it saves a prepare per batch of a different size.
func markStatement(rows []row) string {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	return "UPDATE outbox SET published_at = UTC_TIMESTAMP(6) WHERE id IN (" + idList(ids) + ")"
}

func (c *mysqlClaim) markPublished(ctx context.Context) error {
	if _, err := c.tx.ExecContext(ctx, markStatement(c.rows)); err != nil {
		_ = c.tx.Rollback()
		return fmt.Errorf("mark published: %w", err)
	}
	if err := c.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (c *mysqlClaim) rollback() { _ = c.tx.Rollback() }

// mysqlPackedClaim is a batch locked by a transaction open on conn, or an empty batch (conn
// nil).
type mysqlPackedClaim struct {
	conn *sql.Conn
	rows []row
}

func (c *mysqlPackedClaim) claimed() []row { return c.rows }

// markPublished sends the mark and COMMIT in one round trip. If the packet fails, the COMMIT
// did not take effect (the server stops at the first error), and the rollback undoes the mark.
func (c *mysqlPackedClaim) markPublished(ctx context.Context) error {
	if _, err := c.conn.ExecContext(ctx, markStatement(c.rows)+"; COMMIT"); err != nil {
		c.rollback()
		return fmt.Errorf("mark published: %w", err)
	}
	_ = c.conn.Close()
	return nil
}

// rollback ends the transaction, even when the caller's context has ended; a connection that
// cannot roll back is closed rather than handed to the pool inside a transaction.
func (c *mysqlPackedClaim) rollback() {
	if c.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		discard(c.conn)
		return
	}
	_ = c.conn.Close()
}

func (s mysqlStore) stats(ctx context.Context) (int64, time.Duration, error) {
	var pending, lagMicros int64
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)), 0)"+
		" FROM outbox WHERE published_at IS NULL").Scan(&pending, &lagMicros)
	if err != nil {
		return 0, 0, err
	}
	return pending, time.Duration(max(lagMicros, 0)) * time.Microsecond, nil
}

func (s mysqlStore) deletePublished(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	tx, err := s.db.BeginTx(ctx, readCommitted)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	res, err := tx.ExecContext(ctx, "DELETE FROM outbox WHERE published_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND ORDER BY published_at, id LIMIT ?",
		olderThan.Microseconds(), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

func (s mysqlStore) since(ctx context.Context, since time.Time, afterID int64, limit int) ([]row, error) {
	// created_at is a UTC DATETIME; a string parameter is compared as is, whatever time zone the
	// driver would convert a time.Time to.
	rs, err := s.db.QueryContext(ctx, "SELECT id, msg_id, subject, headers, payload FROM outbox"+
		" WHERE created_at >= ? AND id > ? ORDER BY id LIMIT ?",
		since.UTC().Format("2006-01-02 15:04:05.999999"), afterID, limit)
	if err != nil {
		return nil, err
	}
	return scanRows(rs)
}

// lock tries GET_LOCK on a connection of its own. MySQL lock names are per server, not per
// database, so the name includes the database: two services (or two test databases) on one
// server each get their own leader.
func (s mysqlStore) lock(ctx context.Context, name string) (leaderLock, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var dbName sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		discard(conn)
		return nil, err
	}
	full := mysqlLockName(dbName.String, name)
	var got sql.NullInt64
	var session int64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", full).Scan(&got, &session); err != nil {
		discard(conn)
		return nil, err
	}
	if got.Int64 != 1 {
		_ = conn.Close()
		return nil, nil
	}
	return &mysqlLock{conn: conn, name: full, id: session}, nil
}

// mysqlLockName is name qualified by the database, hashed down to MySQL's 64-character limit
// on lock names when it is longer.
func mysqlLockName(database, name string) string {
	full := database + "." + name
	if len(full) <= 64 {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	return "outbox." + hex.EncodeToString(sum[:20])
}

// discard closes conn's session rather than returning it to the pool: a session that may hold
// a lock, or that failed, must not be handed to someone else.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// mysqlLock is a held GET_LOCK and the session holding it.
type mysqlLock struct {
	conn *sql.Conn
	name string
	id   int64 // CONNECTION_ID() of the session
}

func (l *mysqlLock) check(ctx context.Context) error {
	var mine sql.NullBool
	if err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine); err != nil {
		return err
	}
	if !mine.Bool {
		return errors.New("lock " + l.name + " is no longer held by this session")
	}
	return nil
}

func (l *mysqlLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var released sql.NullInt64
	if err := l.conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", l.name).Scan(&released); err == nil && released.Int64 == 1 {
		_ = l.conn.Close()
		return
	}
	discard(l.conn)
}

func (l *mysqlLock) session() int64 { return l.id }
