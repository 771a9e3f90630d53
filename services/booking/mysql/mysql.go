// Package mysql stores the booking service's bookings, payments and idempotency keys in
// MySQL or MariaDB through database/sql and go-sql-driver/mysql: the production
// implementation of booking.Store.
//
// Every change of a booking locks its row (SELECT ... FOR UPDATE), applies the domain's pure
// transition (booking.Rules.Apply) and writes the row, a history line and the outgoing effects
// (through the Emit hook, into the outbox) in one transaction.
package mysql

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"

	"github.com/flightbook/flightbook/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the booking service's schema migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// MySQL error numbers this package reacts to.
const (
	errDupEntry        = 1062
	errUnknownDatabase = 1049
	errLockWaitTimeout = 1205
	errDeadlock        = 1213
)

// Open connects to the database at dsn (a go-sql-driver DSN), creating the database when it
// does not exist yet (a convenience for a fresh developer machine; production databases are
// provisioned), and applies the migrations under goose's lock. Times are read and written
// in UTC whatever the DSN says, because every column holds UTC.
func Open(ctx context.Context, dsn string, maxConns int, log *slog.Logger) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: parse dsn: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// Without it the driver prepares, executes and closes a server-side statement for every
	// query with arguments: three round trips instead of one. Measured in docs/performance.md
	// (hot, 64 clients: about 1,040-1,150 -> 1,600 bookings/s). Safe with utf8mb4; the driver
	// refuses it for the multibyte charsets where escaping is not.
	cfg.InterpolateParams = true
	// A transaction's writes that nobody reads the result of go to the server together as one
	// multi-statement round trip (see tx). Every statement's text is a constant of this
	// package and every value a placeholder, so no request data can add a statement.
	cfg.MultiStatements = true
	db, err := openDB(ctx, cfg, maxConns)
	if err != nil {
		if mysqlErr(err) != errUnknownDatabase {
			return nil, err
		}
		if err := createDatabase(ctx, cfg); err != nil {
			return nil, err
		}
		log.Warn("created database", "database", cfg.DBName)
		if db, err = openDB(ctx, cfg, maxConns); err != nil {
			return nil, err
		}
	}
	if err := migrate.Up(ctx, goose.DialectMySQL, db, Migrations(), log); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func openDB(ctx context.Context, cfg *mysql.Config, maxConns int) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	if maxConns > 0 {
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(maxConns)
	}
	// Servers close idle connections after wait_timeout; recycle ours well before.
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("mysql: ping %s: %w", cfg.Addr, err)
	}
	return db, nil
}

func createDatabase(ctx context.Context, cfg *mysql.Config) error {
	server := cfg.Clone()
	server.DBName = ""
	db, err := sql.Open("mysql", server.FormatDSN())
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	defer db.Close()
	q := "CREATE DATABASE IF NOT EXISTS `" + cfg.DBName + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("mysql: create database %s: %w", cfg.DBName, err)
	}
	return nil
}

// retry runs attempt, and again (up to five times in all, with a short growing pause) when
// the server aborted its transaction for a deadlock (1213) or a lock wait timeout (1205): the
// rollback has undone everything it did, so the retry is safe as long as the transaction does
// nothing outside the database (no gateway calls, no publishing).
func retry(ctx context.Context, attempt func() error) error {
	const attempts = 5
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if code := mysqlErr(err); n == attempts || (code != errDeadlock && code != errLockWaitTimeout) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (retrying after: %w)", ctx.Err(), err)
		case <-time.After(time.Duration(n) * 5 * time.Millisecond):
		}
	}
}

// mysqlErr returns the server's error number of err, or 0.
func mysqlErr(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t.UTC(), Valid: !t.IsZero()}
}
