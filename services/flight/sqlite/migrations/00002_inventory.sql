-- +goose Up
-- One row per booking that ever asked the flight service for seats: the idempotency record of
-- Hold, Release and Confirm, as in services/flight/postgres/migrations/00002_inventory.sql.
-- booking_id is the UUID's canonical text (lower case), so text order is PostgreSQL's uuid
-- order and the holds page in the same order on both.
CREATE TABLE holds (
    booking_id TEXT PRIMARY KEY CHECK (length(booking_id) = 36),
    flight_id  INTEGER NOT NULL,
    seats      INTEGER NOT NULL CHECK (seats BETWEEN 0 AND 9),
    status     TEXT NOT NULL CHECK (status IN ('held', 'sold', 'released', 'rejected')),
    reason     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    unit_price INTEGER NOT NULL DEFAULT 0 CHECK (unit_price >= 0),
    currency   TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now'))
);
CREATE INDEX holds_flight_status ON holds (flight_id, status);

-- +goose Down
DROP TABLE holds;
