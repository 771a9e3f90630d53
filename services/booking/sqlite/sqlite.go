// Package sqlite stores the booking service's bookings, payments and idempotency keys in one
// SQLite file through database/sql and modernc.org/sqlite (pure Go, no cgo): the dev mode's
// implementation of booking.Store, held to the same contract suite as the mysql package.
//
// SQLite has no row locks. Instead every transaction is BEGIN IMMEDIATE (the DSN's
// _txlock=immediate): it takes the database's single write lock when it begins, so write
// transactions run one at a time, and "read the booking, decide with booking.Rules.Apply,
// write" is still decided by exactly one of payment, cancel and expiry, as under MySQL's
// SELECT ... FOR UPDATE. Taking the lock at BEGIN rather than at the first write also means
// two writers never deadlock on a lock upgrade, which busy_timeout cannot resolve. Reads
// outside a transaction never wait for it (write-ahead log).
//
// Times are stored as UTC text with six fractional digits (timeFormat): it sorts in time
// order, is readable in the sqlite3 shell, and keeps the microseconds MySQL's DATETIME(6)
// keeps, so both adapters round-trip the same values.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/flightbook/flightbook/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the booking service's SQLite schema migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Open opens the SQLite database in the file at path, creating it when it does not exist, and
// applies the migrations. Every transaction on the returned database begins IMMEDIATE (see
// the package comment).
//
// The pool has one connection. Writers then queue in database/sql's pool, first come first
// served, instead of in SQLite's busy handler, whose sleeping waiters keep losing the lock to
// newcomers under load until busy_timeout fails them (measured: the contract suite's 450-way
// payment/cancel/expiry race ran 3.5 times slower with an unbounded pool). Reads queue too,
// which the dev mode can afford. The price: code must never use the database while it holds
// a transaction or an open result set on it, or it waits for itself; the stores never do. A
// writer on another connection (another *sql.DB on the same file) still waits up to ten
// seconds (busy_timeout) for the lock.
func Open(ctx context.Context, path string, log *slog.Logger) (*sql.DB, error) {
	// The name is a URI (file:...), in which SQLite decodes %-escapes and would end the path
	// at '?' or '#'.
	name := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	dsn := "file:" + name + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate.Up(ctx, goose.DialectSQLite3, db, Migrations(), log); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// inTx runs fn in a transaction on db, committing when fn returns nil and rolling back
// otherwise. The transaction holds the write lock from its BEGIN, so there are no deadlocks to
// retry: a writer that cannot get the lock within the busy timeout fails.
func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		// Also on panic: the connection goes back to the pool without an open transaction.
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// timeFormat is how every time column of the booking tables holds its time: UTC with exactly
// six fractional digits, so that text order is time order (ORDER BY, <= and max() on the
// column are correct) and the microseconds Store.Now keeps survive the round trip.
const timeFormat = "2006-01-02 15:04:05.000000"

// text formats t for a time column.
func text(t time.Time) string { return t.UTC().Format(timeFormat) }

// nullText formats t for a nullable time column: NULL for the zero time.
func nullText(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return text(t)
}

// timeCol scans a time column into *t; NULL becomes the zero time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("sqlite: time column holds %T, want text", src)
	}
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return fmt.Errorf("sqlite: time column: %w", err)
	}
	*c.t = t
	return nil
}
