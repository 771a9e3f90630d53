// Package migrate applies a service's embedded SQL migrations at start-up with goose.
//
// Migrations run under a database lock, so several replicas starting at once apply each
// migration exactly once and the others wait for it.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Up applies every migration in fsys (files named NNNNN_name.sql at its root) that db has not
// seen yet. dialect is goose.DialectPostgres, goose.DialectMySQL or goose.DialectSQLite3.
func Up(ctx context.Context, dialect goose.Dialect, db *sql.DB, fsys fs.FS, log *slog.Logger) error {
	var opts []goose.ProviderOption
	switch dialect {
	case goose.DialectPostgres:
		l, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migrate: postgres locker: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(l))
	case goose.DialectMySQL:
		l, err := lock.NewMySQLTableLocker()
		if err != nil {
			return fmt.Errorf("migrate: mysql locker: %w", err)
		}
		opts = append(opts, goose.WithLocker(l))
	}
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration_ms", r.Duration.Milliseconds())
	}
	return nil
}
