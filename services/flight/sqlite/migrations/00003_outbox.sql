-- +goose Up
-- The flight service's outbox, as outbox.AddSQLite expects it (see its doc comment).
-- AUTOINCREMENT keeps ids from being reused after the newest rows are deleted, which the
-- relay's "id above the last one sent" reading relies on.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id       TEXT NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    headers      TEXT NOT NULL DEFAULT '{}',
    payload      BLOB NOT NULL,
    aggregate_id TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    published_at TEXT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
