-- +goose Up
-- One row per booking that ever asked the flight service for seats. It is the idempotency
-- record of Hold, Release and Confirm: a repeated command finds the row and returns its
-- outcome instead of touching the flight again. A release that arrives before its hold writes
-- a released row with no seats (a tombstone), so the late hold is refused. There is no
-- foreign key to flights: a rejection for an unknown flight is recorded too. A released row
-- keeps the seats it gave back, so a repeated release reports the same.
CREATE TABLE holds (
    booking_id uuid PRIMARY KEY,
    flight_id  bigint NOT NULL,
    seats      integer NOT NULL CHECK (seats BETWEEN 0 AND 9),
    status     text NOT NULL CHECK (status IN ('held', 'sold', 'released', 'rejected')),
    reason     text NOT NULL DEFAULT '',
    detail     text NOT NULL DEFAULT '',
    unit_price bigint NOT NULL DEFAULT 0 CHECK (unit_price >= 0),
    currency   text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX holds_flight_status ON holds (flight_id, status);

-- +goose Down
DROP TABLE holds;
