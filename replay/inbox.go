package replay

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// InboxConsumer is the consumer name a route's handler claims messages under in its inbox:
// "<service>.<route>", as both services' messaging packages name it.
func InboxConsumer(service, route string) string { return service + "." + route }

// PostgresInbox reports whether the inbox of pool's database holds msgID for consumer (see
// InboxConsumer): the flight service's handlers.
func PostgresInbox(pool *pgxpool.Pool, consumer string) Processed {
	return func(ctx context.Context, msgID string) (bool, error) {
		var done bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND msg_id = $2)`,
			consumer, msgID).Scan(&done)
		if err != nil {
			return false, fmt.Errorf("inbox: look up %s for %s: %w", msgID, consumer, err)
		}
		return done, nil
	}
}

// SQLInbox reports whether the inbox of db holds msgID for consumer (see InboxConsumer), for
// the services' MySQL and SQLite databases: both inbox tables are keyed (consumer, msg_id) and
// both drivers take ? placeholders. SQLite answers EXISTS with 0 or 1, which database/sql
// scans into a bool as it does MySQL's.
func SQLInbox(db *sql.DB, consumer string) Processed {
	return func(ctx context.Context, msgID string) (bool, error) {
		var done bool
		err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = ? AND msg_id = ?)`,
			consumer, msgID).Scan(&done)
		if err != nil {
			return false, fmt.Errorf("inbox: look up %s for %s: %w", msgID, consumer, err)
		}
		return done, nil
	}
}
