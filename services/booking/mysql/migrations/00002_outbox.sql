-- +goose Up
-- outbox holds the booking service's events, written in the same transaction as the change they
-- describe and published to JetStream by the outbox relay (package outbox). Published rows are
-- kept for the relay's retention so an operator can republish them if the broker loses data.
-- Times are UTC (UTC_TIMESTAMP), whatever the server's or the session's time zone.
CREATE TABLE outbox (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- msg_id is the event id; the relay sends it as Nats-Msg-Id so JetStream drops re-sends.
    msg_id       VARCHAR(255) NOT NULL,
    subject      VARCHAR(255) NOT NULL,
    headers      JSON NOT NULL,
    payload      LONGBLOB NOT NULL,
    aggregate_id VARCHAR(255) NOT NULL DEFAULT '',
    created_at   DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    published_at DATETIME(6) NULL,
    UNIQUE KEY outbox_msg_id (msg_id),
    -- NULLs sort first: the relay reads the unpublished rows in id order from the front of this
    -- index, and retention cleanup reads the oldest published ones right after them.
    KEY outbox_published_at_id (published_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE outbox;
