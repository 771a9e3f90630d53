// Package sqlite stores the flight service's catalogue and seat inventory in one SQLite file
// through modernc.org/sqlite (pure Go), so that the service runs with no database server
// (flightbook dev). It keeps the contract of package postgres, checked by the same suite
// (services/flight/storetest): the same saga, the same invariants, the same answers.
//
// SQLite has no row locks. Every transaction here begins with BEGIN IMMEDIATE (the _txlock
// setting of Open's DSN), which takes the database's single write lock at once, so write
// transactions run one at a time. Where package postgres locks a flight row (SELECT ... FOR
// UPDATE) before it decides and writes, this package holds the whole database's write lock
// from the start of the transaction, which gives the same guarantee: nothing changes the
// flight between the decision and the write. Taking the lock at BEGIN, not at the first
// write, also means two transactions never deadlock upgrading a read lock, so no transaction
// here needs to be retried.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/flightbook/flightbook/migrate"
	"github.com/flightbook/flightbook/services/flight"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the flight service's SQLite schema migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// maxConns bounds the connections to the file. Writers queue for the write lock anyway; a few
// connections let reads (search, the admin pages) go on in WAL mode while a write runs, and
// keep the writers polling the lock few, so that none waits out the busy timeout.
const maxConns = 4

// Open opens the database file at path, creating it if it does not exist, and applies the
// migrations. The file is in WAL mode, with foreign keys on, and every transaction begins
// IMMEDIATE (see the package comment); a writer waits up to ten seconds for the lock.
func Open(ctx context.Context, path string, log *slog.Logger) (*sql.DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate.Up(ctx, goose.DialectSQLite3, db, Migrations(), log); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// inTx runs fn in a transaction on db, committing when fn returns nil and rolling back
// otherwise. The transaction holds the write lock from its start (see the package comment),
// so there is no deadlock or serialization failure to retry, unlike postgres.InTx.
func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		// fn's error is the one to report; a rollback that fails as well still ends the
		// transaction, since database/sql then discards the connection.
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// timeFormat is how times are stored: UTC text with microseconds at fixed width, so that text
// order is time order and a time round-trips at PostgreSQL's precision. nowSQL is the database
// clock's now in that form (strftime's %f gives milliseconds; the zeros pad it to microseconds).
const (
	timeFormat = "2006-01-02 15:04:05.000000"
	nowSQL     = `strftime('%Y-%m-%d %H:%M:%f000', 'now')`
)

// sqlTime is t as stored.
func sqlTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// timeScan scans a stored time into *t; NULL is the zero time.
type timeScan struct{ t *time.Time }

func tm(t *time.Time) timeScan { return timeScan{t} }

// Scan implements sql.Scanner.
func (s timeScan) Scan(v any) error {
	var text string
	switch x := v.(type) {
	case nil:
		*s.t = time.Time{}
		return nil
	case string:
		text = x
	case []byte:
		text = string(x)
	default:
		return fmt.Errorf("sqlite: time stored as %T", v)
	}
	// Parsing accepts any number of fractional digits, so the millisecond times of the
	// outbox and inbox tables read as well.
	t, err := time.ParseInLocation(time.DateTime, text, time.UTC)
	if err != nil {
		return fmt.Errorf("sqlite: time %q: %w", text, err)
	}
	*s.t = t
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// code returns SQLite's extended result code of err, or 0.
func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func isUnique(err error) bool {
	c := code(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// isForeignKey reports a foreign key's refusal. SQLite reports an ON DELETE RESTRICT refusal
// as SQLITE_CONSTRAINT_TRIGGER, since it enforces RESTRICT with an internal trigger.
func isForeignKey(err error) bool {
	switch code(err) {
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		return true
	}
	return false
}

// notFound wraps flight.ErrNotFound with what was looked for.
func notFound(what string, id any) error {
	return fmt.Errorf("%s %v: %w", what, id, flight.ErrNotFound)
}
