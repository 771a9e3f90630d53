package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sqliteInsertChunk bounds the rows of one multi-row INSERT, under SQLite's default limit of
// 32,766 host parameters per statement.
const sqliteInsertChunk = 1000

// SQLiteTimeFormat is how the SQLite outbox and inbox tables store times: UTC text that sorts
// in time order, written by the database's own clock with
// strftime('%Y-%m-%d %H:%M:%f', 'now').
const SQLiteTimeFormat = "2006-01-02 15:04:05.000"

// AddSQLite adds msgs to the outbox inside tx, the caller's SQLite transaction, so they are
// published if and only if tx commits. The table is the one in the services' SQLite
// migrations:
//
//	CREATE TABLE outbox (
//	    id           INTEGER PRIMARY KEY AUTOINCREMENT,
//	    msg_id       TEXT NOT NULL UNIQUE,
//	    subject      TEXT NOT NULL,
//	    headers      TEXT NOT NULL DEFAULT '{}',
//	    payload      BLOB NOT NULL,
//	    aggregate_id TEXT NOT NULL DEFAULT '',
//	    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
//	    published_at TEXT
//	);
//	CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
//
// AUTOINCREMENT keeps ids from being reused after the newest rows are deleted, which the
// relay's "id above the last one sent" reading relies on.
func AddSQLite(ctx context.Context, tx Execer, msgs ...Message) error {
	for len(msgs) > 0 {
		n := min(len(msgs), sqliteInsertChunk)
		chunk := msgs[:n]
		msgs = msgs[n:]
		var q strings.Builder
		q.WriteString("INSERT INTO outbox (msg_id, subject, headers, payload, aggregate_id) VALUES ")
		args := make([]any, 0, 5*len(chunk))
		for i, m := range chunk {
			h, err := encodeHeaders(m)
			if err != nil {
				return err
			}
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?)")
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

// NewSQLiteRelay returns a relay for the outbox table in db, a SQLite database, publishing
// through js. A nil log means slog.Default(). Connect js as NewPostgresRelay explains.
//
// Open db in WAL mode, so that the relay's reads never wait for a writer, and with a
// busy_timeout, so that its writes queue for the write lock rather than fail at once. The
// relay keeps its leader lock in a table of its own, which it creates when it first needs it:
//
//	CREATE TABLE IF NOT EXISTS outbox_lock (
//	    name       TEXT PRIMARY KEY,
//	    owner      INTEGER NOT NULL,
//	    expires_at TEXT NOT NULL
//	) WITHOUT ROWID;
//
// Publishing on SQLite differs from the other databases in two ways. It takes no write lock
// while it waits for JetStream: SQLite has one write lock for the whole database, and holding
// it across a publish would stop every writer of the service for as long as the broker takes
// to ack. The relay reads a batch with a plain read and marks it published afterwards, in one
// short UPDATE. And with no advisory locks, the leader holds a lease: a row in outbox_lock
// that it renews every LockInterval and deletes when it steps down. A leader that dies without
// deleting it is replaced once the lease expires (6s with the default LockInterval; see
// sqliteLease).
//
// While a service transaction holds the write lock, the relay goes on sending but cannot mark
// a batch, renew its lease or take it: a transaction that holds the lock for longer than the
// lease renewal may wait (2 LockIntervals, at least 2s) makes the leader step down until it
// ends. A service should keep its SQLite transactions short for its own writers' sake anyway.
func NewSQLiteRelay(db *sql.DB, js jetstream.JetStream, cfg RelayConfig, log *slog.Logger) *Relay {
	return newRelay(&sqliteStore{db: db, lease: sqliteLease(cfg.withDefaults())}, js, cfg, log)
}

// sqliteLease is how long a leader's lock stays valid after its last renewal. The leader renews
// it every LockInterval and steps down when a renewal fails or takes longer than the watchdog's
// timeout (2 LockIntervals, at least 2s); the lease is twice that, so a leader that cannot renew
// has stopped sending before another relay may take over. Lease expiry only matters when a
// leader dies or hangs: one that steps down deletes its row and the next takes over at once.
func sqliteLease(cfg RelayConfig) time.Duration {
	return 2 * (cfg.LockInterval + max(2*cfg.LockInterval, 2*time.Second))
}

// sqliteStore is the relay's storage on SQLite.
//
// Its claims lock nothing, and need not. SQLite runs one write transaction at a time and
// AUTOINCREMENT hands out ids in that order, so rows become visible in id order: a reader sees
// every remaining row below the highest id it sees, and no commit can later land below it (the gap that
// SKIP LOCKED and the cursor resets guard against elsewhere). Claimed rows are kept from a
// second sender by the leader lock alone: only the leader claims, and its pipeline claims
// above the rows still in flight, or from the start only once none are. A leader that lost its
// lease without noticing could send a batch the new leader sends too; Nats-Msg-Id makes
// JetStream store it once, and both send in id order, so each message's first copy still
// arrives in id order. Marking is never wrong: a row is marked only after JetStream acked it.
type sqliteStore struct {
	db    *sql.DB
	lease time.Duration

	lockTable atomic.Bool // outbox_lock is known to exist
}

// sqliteNow is the database's clock in SQLiteTimeFormat, so every process on the machine
// compares times on one clock.
const sqliteNow = `strftime('%Y-%m-%d %H:%M:%f', 'now')`

// sqliteClaim is a batch read for sending. It holds no lock and no transaction.
type sqliteClaim struct {
	db   *sql.DB
	rows []row
}

func (s *sqliteStore) claim(ctx context.Context, after int64, limit int) (claim, error) {
	// A plain query, not a transaction: the service's DSN may make every transaction take the
	// write lock at BEGIN (_txlock=immediate), and this read needs none.
	rs, err := s.db.QueryContext(ctx, `SELECT id, msg_id, subject, headers, payload FROM outbox
		WHERE published_at IS NULL AND id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	rows, err := scanRows(rs)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return &sqliteClaim{db: s.db, rows: rows}, nil
}

func (c *sqliteClaim) claimed() []row { return c.rows }

// markPublished marks the batch in one autocommit statement, which holds the write lock only
// for the UPDATE itself. A row already marked (by a deposed leader that sent it too) keeps its
// first published_at, from which its retention counts.
func (c *sqliteClaim) markPublished(ctx context.Context) error {
	ids := make([]int64, len(c.rows))
	for i, r := range c.rows {
		ids[i] = r.id
	}
	// Ids are integers read from the table, so writing them into the statement is safe, and it
	// keeps a batch of any size within one statement's parameter limit.
	if _, err := c.db.ExecContext(ctx, "UPDATE outbox SET published_at = "+sqliteNow+
		" WHERE id IN ("+idList(ids)+") AND published_at IS NULL"); err != nil {
		return fmt.Errorf("mark published: %w", err)
	}
	return nil
}

// rollback has nothing to undo: the rows were never locked or changed.
func (c *sqliteClaim) rollback() {}

func (s *sqliteStore) stats(ctx context.Context) (int64, time.Duration, error) {
	var pending, lagMicros int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*),
		COALESCE(CAST((julianday('now') - julianday(MIN(created_at))) * 86400000000 AS INTEGER), 0)
		FROM outbox WHERE published_at IS NULL`).Scan(&pending, &lagMicros)
	if err != nil {
		return 0, 0, err
	}
	return pending, time.Duration(max(lagMicros, 0)) * time.Microsecond, nil
}

// sqliteAgo is the SQLite date modifier that moves a time d into the past.
func sqliteAgo(d time.Duration) string {
	return fmt.Sprintf("-%.3f seconds", d.Seconds())
}

func (s *sqliteStore) deletePublished(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	// As on PostgreSQL, walking the primary key finds the old published rows first. One
	// autocommit statement of at most limit rows keeps the write lock short.
	res, err := s.db.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE published_at < strftime('%Y-%m-%d %H:%M:%f', 'now', ?)
		ORDER BY id LIMIT ?)`, sqliteAgo(olderThan), limit)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *sqliteStore) since(ctx context.Context, since time.Time, afterID int64, limit int) ([]row, error) {
	// Format truncates to the millisecond, so the bound errs towards including a row created in
	// the same millisecond as since.
	rs, err := s.db.QueryContext(ctx, `SELECT id, msg_id, subject, headers, payload FROM outbox
		WHERE created_at >= ? AND id > ? ORDER BY id LIMIT ?`, since.UTC().Format(SQLiteTimeFormat), afterID, limit)
	if err != nil {
		return nil, err
	}
	return scanRows(rs)
}

// lock takes the lease named name if nobody holds it or its holder's lease has expired.
//
// The lease is a row rather than a lock held by a connection, because SQLite has no lock that
// outlives a statement without blocking writers: an open write transaction would stop the
// whole service. A process-local mutex would not do either: two processes on one machine can
// share the file (a second replica, or an operator's command), and they must elect one leader
// too. Each statement is an autocommit statement, so it works whether or not the service's
// DSN begins its transactions IMMEDIATE, and waits for the write lock through busy_timeout.
func (s *sqliteStore) lock(ctx context.Context, name string) (leaderLock, error) {
	if err := s.ensureLockTable(ctx); err != nil {
		return nil, err
	}
	// A standby asks with a read first, so that it does not take the write lock every
	// LockInterval while the leader is alive.
	var free bool
	err := s.db.QueryRowContext(ctx, "SELECT expires_at < "+sqliteNow+" FROM outbox_lock WHERE name = ?", name).Scan(&free)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read lease %s: %w", name, err)
	case !free:
		return nil, nil
	}
	// The owner is random: it only has to differ from every other relay's, and it must not be
	// reused by this relay's next term, so that a renewal of a lease lost meanwhile fails.
	owner := rand.Int64()
	res, err := s.db.ExecContext(ctx, `INSERT INTO outbox_lock (name, owner, expires_at)
		VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now', ?))
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE outbox_lock.expires_at < `+sqliteNow, name, owner, sqliteAfter(s.lease))
	if err != nil {
		return nil, fmt.Errorf("take lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("take lease %s: %w", name, err)
	}
	if n != 1 {
		return nil, nil // another relay took it between the read and the write
	}
	return &sqliteLock{db: s.db, name: name, owner: owner, lease: s.lease}, nil
}

// sqliteAfter is the SQLite date modifier that moves a time d into the future.
func sqliteAfter(d time.Duration) string {
	return fmt.Sprintf("+%.3f seconds", d.Seconds())
}

// ensureLockTable creates outbox_lock once per store. It is the relay's own state, not the
// service's data, so the relay keeps it rather than every service's migrations.
func (s *sqliteStore) ensureLockTable(ctx context.Context) error {
	if s.lockTable.Load() {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS outbox_lock (
		name       TEXT PRIMARY KEY,
		owner      INTEGER NOT NULL,
		expires_at TEXT NOT NULL
	) WITHOUT ROWID`); err != nil {
		return fmt.Errorf("create outbox_lock: %w", err)
	}
	s.lockTable.Store(true)
	return nil
}

// sqliteLock is a held lease.
type sqliteLock struct {
	db    *sql.DB
	name  string
	owner int64
	lease time.Duration
}

// check renews the lease. It fails if the row no longer names this owner: the lease expired
// and another relay took it, or someone deleted it. A lease that expired but that nobody took
// is renewed, since no other relay has led in between.
func (l *sqliteLock) check(ctx context.Context) error {
	res, err := l.db.ExecContext(ctx, `UPDATE outbox_lock SET expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now', ?)
		WHERE name = ? AND owner = ?`, sqliteAfter(l.lease), l.name, l.owner)
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.name, err)
	}
	if n != 1 {
		return fmt.Errorf("lease %s is no longer held by this relay (owner %d)", l.name, l.owner)
	}
	return nil
}

// release deletes the lease, so that a standby takes over at its next attempt rather than
// when the lease expires. If the delete fails the lease simply runs out.
func (l *sqliteLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = l.db.ExecContext(ctx, "DELETE FROM outbox_lock WHERE name = ? AND owner = ?", l.name, l.owner)
}

// session is the lease's owner token, which tests use to take the lease away.
func (l *sqliteLock) session() int64 { return l.owner }
