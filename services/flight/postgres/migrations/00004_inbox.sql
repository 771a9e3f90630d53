-- +goose Up
-- inbox records which messages each consumer of the flight service has processed, written in
-- the same transaction as the handler's changes (package inbox), so a redelivered or replayed
-- message is recognised and changes nothing the second time.
CREATE TABLE inbox (
    -- consumer is the route (handler) name; msg_id the message's Nats-Msg-Id / ce-id.
    consumer     text NOT NULL,
    msg_id       text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, msg_id)
);

-- Retention cleanup deletes the oldest entries first.
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- +goose Down
DROP TABLE inbox;
