-- +goose Up
-- The messages each consumer of the flight service has processed, as inbox.ClaimSQLite
-- expects it (see its doc comment).
CREATE TABLE inbox (
    consumer     TEXT NOT NULL,
    msg_id       TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (consumer, msg_id)
) WITHOUT ROWID;
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- +goose Down
DROP TABLE inbox;
