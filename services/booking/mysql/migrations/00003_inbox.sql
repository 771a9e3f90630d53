-- +goose Up
-- inbox records which messages each consumer of the booking service has processed, written in
-- the same transaction as the handler's changes (package inbox), so a redelivered or replayed
-- message is recognised and changes nothing the second time. Times are UTC.
CREATE TABLE inbox (
    -- consumer is the route (handler) name; msg_id the message's Nats-Msg-Id / ce-id.
    consumer     VARCHAR(150) NOT NULL,
    msg_id       VARCHAR(255) NOT NULL,
    processed_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (consumer, msg_id),
    -- Retention cleanup deletes the oldest entries first.
    KEY inbox_processed_at (processed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE inbox;
