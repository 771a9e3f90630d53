-- +goose Up
-- inbox records which messages each consumer of the booking service has processed, written in
-- the same transaction as the handler's changes (inbox.ClaimSQLite documents the table), so a
-- redelivered or replayed message changes nothing the second time.
CREATE TABLE inbox (
    consumer     TEXT NOT NULL,
    msg_id       TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (consumer, msg_id)
) WITHOUT ROWID;
-- Retention cleanup deletes the oldest entries first.
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- +goose Down
DROP TABLE inbox;
