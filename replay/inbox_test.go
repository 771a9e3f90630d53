package replay_test

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/replay"
	bookingmysql "github.com/flightbook/flightbook/services/booking/mysql"
	bookingsqlite "github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/services/flight/postgres"
	flightsqlite "github.com/flightbook/flightbook/services/flight/sqlite"
	"github.com/flightbook/flightbook/testenv"
)

// inboxDB is a service database as the inbox test needs it: the replay's inbox check, and a
// way to claim a message as a handler does.
type inboxDB struct {
	processed func(consumer string) replay.Processed
	claim     func(ctx context.Context, consumer, msgID string) error
}

// TestInboxLookups claims a message in each service database's inbox as a handler does, and
// asks the replay's inbox check about it: only that message, for that consumer, is processed.
// SQLInbox serves MySQL and the SQLite files, so it is checked on each of them.
func TestInboxLookups(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) inboxDB{
		"postgres": func(t *testing.T) inboxDB {
			pool, err := postgres.Open(context.Background(), testenv.Postgres(t), 2, discard)
			testenv.Fatal(t, "postgres", err)
			t.Cleanup(pool.Close)
			return inboxDB{
				processed: func(consumer string) replay.Processed { return replay.PostgresInbox(pool, consumer) },
				claim: func(ctx context.Context, consumer, msgID string) error {
					return postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
						_, err := inbox.ClaimPostgres(ctx, tx, consumer, msgID)
						return err
					})
				},
			}
		},
		"mysql": func(t *testing.T) inboxDB {
			db, err := bookingmysql.Open(context.Background(), testenv.MySQL(t), 2, discard)
			testenv.Fatal(t, "mysql", err)
			t.Cleanup(func() { _ = db.Close() })
			return sqlInboxDB(db, inbox.ClaimMySQL)
		},
		"sqlite flight":  func(t *testing.T) inboxDB { return sqlInboxDB(openSQLite(t, flightsqlite.Open), inbox.ClaimSQLite) },
		"sqlite booking": func(t *testing.T) inboxDB { return sqlInboxDB(openSQLite(t, bookingsqlite.Open), inbox.ClaimSQLite) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := open(t)
			const consumer = "flight.seat-hold"
			claimed, unseen := uuid.NewString(), uuid.NewString()
			testenv.Fatal(t, "claim", db.claim(ctx, consumer, claimed))
			for _, c := range []struct {
				what     string
				consumer string
				msgID    string
				want     bool
			}{
				{"the claimed message", consumer, claimed, true},
				{"a message never claimed", consumer, unseen, false},
				{"the claimed message, for another consumer", "booking.seats-held", claimed, false},
			} {
				got, err := db.processed(c.consumer)(ctx, c.msgID)
				testenv.Fatal(t, c.what, err)
				if got != c.want {
					t.Errorf("%s: processed %v, want %v", c.what, got, c.want)
				}
			}
		})
	}
}

// sqlInboxDB is a MySQL or SQLite database whose handlers claim messages with claim.
func sqlInboxDB(db *sql.DB, claim func(context.Context, inbox.Execer, string, string) (bool, error)) inboxDB {
	return inboxDB{
		processed: func(consumer string) replay.Processed { return replay.SQLInbox(db, consumer) },
		claim: func(ctx context.Context, consumer, msgID string) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := claim(ctx, tx, consumer, msgID); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
	}
}

// openSQLite opens a new, migrated SQLite file with a service's Open.
func openSQLite(t *testing.T, open func(context.Context, string, *slog.Logger) (*sql.DB, error)) *sql.DB {
	t.Helper()
	db, err := open(context.Background(), testenv.SQLite(t), discard)
	testenv.Fatal(t, "sqlite", err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
