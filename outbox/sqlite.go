package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
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
func AddSQLite(ctx context.Context, tx *sql.Tx, msgs ...Message) error {
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
