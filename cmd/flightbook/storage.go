package main

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/replay"
)

// outboxDB is what the relay and the operator commands (flightbook replay, outbox republish
// --dry-run) need of a service's database, whichever kind it is, so that they work on it as
// the service does.
type outboxDB struct {
	relay       func(js jetstream.JetStream, cfg outbox.RelayConfig, log *slog.Logger) *outbox.Relay
	processed   func(consumer string) replay.Processed
	countOutbox func(ctx context.Context, since time.Time) (int64, error)
}

func sqliteOutboxDB(db *sql.DB) outboxDB {
	return outboxDB{
		relay: func(js jetstream.JetStream, c outbox.RelayConfig, l *slog.Logger) *outbox.Relay {
			return outbox.NewSQLiteRelay(db, js, c, l)
		},
		processed: func(consumer string) replay.Processed { return replay.SQLInbox(db, consumer) },
		countOutbox: func(ctx context.Context, since time.Time) (int64, error) {
			return countSQLOutbox(ctx, db, since, outbox.SQLiteTimeFormat)
		},
	}
}

func mysqlOutboxDB(db *sql.DB) outboxDB {
	return outboxDB{
		relay: func(js jetstream.JetStream, c outbox.RelayConfig, l *slog.Logger) *outbox.Relay {
			return outbox.NewMySQLRelay(db, js, c, l)
		},
		processed: func(consumer string) replay.Processed { return replay.SQLInbox(db, consumer) },
		countOutbox: func(ctx context.Context, since time.Time) (int64, error) {
			return countSQLOutbox(ctx, db, since, mysqlOutboxTime)
		},
	}
}

func postgresOutboxDB(pool *pgxpool.Pool) outboxDB {
	return outboxDB{
		relay: func(js jetstream.JetStream, c outbox.RelayConfig, l *slog.Logger) *outbox.Relay {
			return outbox.NewPostgresRelay(pool, js, c, l)
		},
		processed: func(consumer string) replay.Processed { return replay.PostgresInbox(pool, consumer) },
		countOutbox: func(ctx context.Context, since time.Time) (int64, error) {
			return countPostgresOutbox(ctx, pool, since)
		},
	}
}
