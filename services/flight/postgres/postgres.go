// Package postgres stores the flight service's catalogue and seat inventory in PostgreSQL
// through pgx.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/flightbook/flightbook/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the flight service's schema migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Open connects to the database at dsn, creating the database when it does not exist yet (a
// convenience for a fresh developer machine; production databases are provisioned), and
// applies the migrations under goose's advisory lock.
func Open(ctx context.Context, dsn string, maxConns int32, log *slog.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
			return nil, fmt.Errorf("postgres: ping: %w", err)
		}
		if err := createDatabase(ctx, dsn, cfg.ConnConfig.Database); err != nil {
			return nil, err
		}
		log.Warn("created database", "database", cfg.ConnConfig.Database)
		if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrate.Up(ctx, goose.DialectPostgres, db, Migrations(), log); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func createDatabase(ctx context.Context, dsn, name string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("postgres: parse url: %w", err)
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("postgres: connect to create %s: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")) { // created meanwhile
		return fmt.Errorf("postgres: create database %s: %w", name, err)
	}
	return nil
}

// InTx runs fn in a transaction on pool, committing when fn returns nil and rolling back
// otherwise. When PostgreSQL aborts the transaction for a serialization failure (40001) or a
// deadlock (40P01) it runs fn again, up to five times with a short growing pause: such an
// abort has undone everything fn did, so the retry is safe as long as fn does nothing
// outside the transaction. Catalogue writes use it; the saga's handlers use Inventory.InTx,
// which ends its transactions itself (see InventoryTx) and retries as this does.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return retry(ctx, func() error { return pgx.BeginFunc(ctx, pool, fn) })
}

// retry runs attempt again, as InTx says, while it fails with a serialization failure or a
// deadlock.
func retry(ctx context.Context, attempt func() error) error {
	const attempts = 5
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if code := pgCode(err); n == attempts || (code != "40001" && code != "40P01") {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (retrying after: %w)", ctx.Err(), err)
		case <-time.After(time.Duration(n) * 5 * time.Millisecond):
		}
	}
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
