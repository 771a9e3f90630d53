// Package inbox makes message handlers idempotent when their change has no natural
// idempotency: it records each (consumer, message id) it processed in the consumer's own
// database, in the same transaction as the handler's change.
//
// A handler begins its transaction, claims the message, and applies its change only if the
// claim is the first:
//
//	first, err := inbox.ClaimPostgres(ctx, tx, route, d.ID)
//	if err != nil || !first {
//		return err // already processed: commit nothing new, ack
//	}
//	// ... change, then commit
//
// If the transaction rolls back, the claim goes with it, so a message is either processed and
// recorded, or neither. Two deliveries of one message racing each other serialise on the
// primary key (on SQLite, on the database's single write lock): the second waits for the first
// to commit and then finds the claim taken.
//
// Entries are kept for a retention longer than the streams' maximum age, so that a replay of
// anything still in a stream is recognised; CleanupPostgres, CleanupMySQL and CleanupSQLite
// delete older ones.
package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultRetention is how long processed ids are kept by default: longer than the streams'
// default maximum age (7 days), so a replay within a stream's life is absorbed.
const DefaultRetention = 30 * 24 * time.Hour

// cleanupBatch is how many entries one cleanup statement deletes, so that cleanup never holds
// many row locks or writes a large undo log at once.
const cleanupBatch = 1000

// Column sizes of the MySQL table (PostgreSQL's are unbounded but the same limits apply, so
// both databases accept the same ids).
const (
	maxConsumer = 150
	maxMsgID    = 255
)

// ErrInvalid is returned for an empty or too long consumer name or message id.
var ErrInvalid = errors.New("inbox: invalid consumer or message id")

func validate(consumer, msgID string) error {
	switch {
	case consumer == "" || msgID == "":
		return fmt.Errorf("%w: consumer %q, message id %q: both are required", ErrInvalid, consumer, msgID)
	case utf8.RuneCountInString(consumer) > maxConsumer:
		return fmt.Errorf("%w: consumer %q longer than %d characters", ErrInvalid, consumer, maxConsumer)
	case utf8.RuneCountInString(msgID) > maxMsgID:
		return fmt.Errorf("%w: message id %q longer than %d characters", ErrInvalid, msgID, maxMsgID)
	}
	return nil
}

// ClaimPostgres records in tx that consumer processed msgID. It returns true the first time,
// and false if the message was already processed (by a committed transaction).
func ClaimPostgres(ctx context.Context, tx pgx.Tx, consumer, msgID string) (first bool, err error) {
	if err := validate(consumer, msgID); err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx,
		`INSERT INTO inbox (consumer, msg_id) VALUES ($1, $2) ON CONFLICT (consumer, msg_id) DO NOTHING`,
		consumer, msgID)
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s for %s: %w", msgID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Execer runs a statement in a database/sql transaction (a *sql.Tx, or a store's own
// transaction type).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ClaimMySQL records in tx that consumer processed msgID. It returns true the first time, and
// false if the message was already processed (by a committed transaction).
func ClaimMySQL(ctx context.Context, tx Execer, consumer, msgID string) (first bool, err error) {
	query, args, err := ClaimMySQLStatement(consumer, msgID)
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s for %s: %w", msgID, consumer, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s for %s: %w", msgID, consumer, err)
	}
	return n == 1, nil
}

// ClaimMySQLStatement returns ClaimMySQL's statement, for a caller that sends it together with
// others: it affects one row the first time and none when the message was already processed.
func ClaimMySQLStatement(consumer, msgID string) (query string, args []any, err error) {
	return ClaimAllMySQLStatement([2]string{consumer, msgID})
}

// ClaimAllMySQLStatement is ClaimMySQLStatement for several messages, given as consumer and
// message id pairs, in one statement: cheaper for the server than one statement each, but its
// count of affected rows says only how many were first, not which. A caller whose count falls
// short claims them again one by one (services/booking/mysql does, in a new transaction).
func ClaimAllMySQLStatement(pairs ...[2]string) (query string, args []any, err error) {
	if len(pairs) == 0 {
		return "", nil, fmt.Errorf("%w: no messages to claim", ErrInvalid)
	}
	// INSERT IGNORE rather than ON DUPLICATE KEY UPDATE: the latter reports one affected row
	// for an existing key when the DSN sets clientFoundRows. IGNORE would also hide a
	// truncation, which validate rules out by checking the lengths first.
	var q strings.Builder
	q.WriteString(`INSERT IGNORE INTO inbox (consumer, msg_id) VALUES (?, ?)`)
	args = make([]any, 0, 2*len(pairs))
	for i, p := range pairs {
		if err := validate(p[0], p[1]); err != nil {
			return "", nil, err
		}
		if i > 0 {
			q.WriteString(", (?, ?)")
		}
		args = append(args, p[0], p[1])
	}
	return q.String(), args, nil
}

// ClaimSQLite records in tx that consumer processed msgID. It returns true the first time, and
// false if the message was already processed (by a committed transaction). The table is the one
// in the services' SQLite migrations:
//
//	CREATE TABLE inbox (
//	    consumer     TEXT NOT NULL,
//	    msg_id       TEXT NOT NULL,
//	    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
//	    PRIMARY KEY (consumer, msg_id)
//	) WITHOUT ROWID;
//	CREATE INDEX inbox_processed_at ON inbox (processed_at);
func ClaimSQLite(ctx context.Context, tx Execer, consumer, msgID string) (first bool, err error) {
	if err := validate(consumer, msgID); err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO inbox (consumer, msg_id) VALUES (?, ?) ON CONFLICT (consumer, msg_id) DO NOTHING`, consumer, msgID)
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s for %s: %w", msgID, consumer, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s for %s: %w", msgID, consumer, err)
	}
	return n == 1, nil
}

// CleanupPostgres deletes entries processed longer than retention ago (DefaultRetention if
// zero), in small batches, and returns how many it deleted.
func CleanupPostgres(ctx context.Context, db *pgxpool.Pool, retention time.Duration) (int64, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	var total int64
	for {
		tag, err := db.Exec(ctx, `
			DELETE FROM inbox WHERE ctid IN (
				SELECT ctid FROM inbox
				WHERE processed_at < now() - make_interval(secs => $1)
				LIMIT $2)`,
			retention.Seconds(), cleanupBatch)
		if err != nil {
			return total, fmt.Errorf("inbox: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < cleanupBatch {
			return total, nil
		}
	}
}

// CleanupMySQL deletes entries processed longer than retention ago (DefaultRetention if zero),
// in small batches, and returns how many it deleted.
func CleanupMySQL(ctx context.Context, db *sql.DB, retention time.Duration) (int64, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	var total int64
	for {
		res, err := db.ExecContext(ctx,
			`DELETE FROM inbox WHERE processed_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND LIMIT ?`,
			retention.Microseconds(), cleanupBatch)
		if err != nil {
			return total, fmt.Errorf("inbox: cleanup: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("inbox: cleanup: %w", err)
		}
		total += n
		if n < cleanupBatch {
			return total, nil
		}
	}
}

// CleanupSQLite deletes entries processed longer than retention ago (DefaultRetention if zero),
// in small batches, and returns how many it deleted.
func CleanupSQLite(ctx context.Context, db *sql.DB, retention time.Duration) (int64, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	cutoff := time.Now().UTC().Add(-retention).Format("2006-01-02 15:04:05.000")
	var total int64
	for {
		res, err := db.ExecContext(ctx, `
			DELETE FROM inbox WHERE (consumer, msg_id) IN (
				SELECT consumer, msg_id FROM inbox WHERE processed_at < ? LIMIT ?)`, cutoff, cleanupBatch)
		if err != nil {
			return total, fmt.Errorf("inbox: cleanup: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("inbox: cleanup: %w", err)
		}
		total += n
		if n < cleanupBatch {
			return total, nil
		}
	}
}
