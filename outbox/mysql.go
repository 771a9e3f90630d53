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
	"time"

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
	return newRelay(mysqlStore{db: db}, js, cfg, log)
}

// mysqlStore is the relay's storage on MySQL/MariaDB.
//
// Its transactions run at READ COMMITTED: under the default REPEATABLE READ, a locking read that
// reaches the end of the unpublished rows also locks the gap after them, which would block every
// producer's INSERT into the outbox until the relay commits.
type mysqlStore struct {
	db *sql.DB
}

var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// mysqlClaim is a batch locked by an open transaction.
type mysqlClaim struct {
	tx   *sql.Tx
	rows []row
}

func (s mysqlStore) claim(ctx context.Context, after int64, limit int) (claim, error) {
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
	k := 0
	for k < len(c.rows) && c.rows[k].id == ids[k] {
		k++
	}
	c.rows = c.rows[:k]
	return c, nil
}

// nextIDs reads, without locking, the ids of up to limit unpublished rows above after.
func (s mysqlStore) nextIDs(ctx context.Context, tx *sql.Tx, after int64, limit int) ([]int64, error) {
	rs, err := tx.QueryContext(ctx, "SELECT id FROM outbox WHERE published_at IS NULL AND id > "+
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

func (c *mysqlClaim) markPublished(ctx context.Context) error {
	// Ids are integers read from the table, so writing them into the statement is safe, and it
	// saves a prepare per batch of a different size.
	ids := make([]int64, len(c.rows))
	for i, r := range c.rows {
		ids[i] = r.id
	}
	if _, err := c.tx.ExecContext(ctx, "UPDATE outbox SET published_at = UTC_TIMESTAMP(6) WHERE id IN ("+idList(ids)+")"); err != nil {
		_ = c.tx.Rollback()
		return fmt.Errorf("mark published: %w", err)
	}
	if err := c.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (c *mysqlClaim) rollback() { _ = c.tx.Rollback() }

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
