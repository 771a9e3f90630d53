-- +goose Up
-- outbox holds the flight service's events, written in the same transaction as the change they
-- describe and published to JetStream by the outbox relay (package outbox). Published rows are
-- kept for the relay's retention so an operator can republish them if the broker loses data.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- msg_id is the event id; the relay sends it as Nats-Msg-Id so JetStream drops re-sends.
    msg_id       text NOT NULL UNIQUE,
    subject      text NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    payload      bytea NOT NULL,
    aggregate_id text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay claims unpublished rows in id order; a partial index keeps that lookup as small as
-- the backlog, however many published rows are retained.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
