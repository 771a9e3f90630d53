-- +goose Up
-- The booking service's tables for the dev mode's embedded database, the same as the MySQL
-- ones (services/booking/mysql/migrations) in SQLite's terms. Every time column holds UTC
-- text with six fractional digits, 'YYYY-MM-DD HH:MM:SS.ffffff', which sorts in time order
-- (see timeFormat in sqlite.go). Tables are STRICT, so a value of the wrong type is refused
-- as MySQL would refuse it.

-- bookings is one row per booking; the row is the saga's single point of decision: payment,
-- cancel, expiry and the flight service's replies all change it only inside a write
-- transaction (BEGIN IMMEDIATE), which SQLite runs one at a time. Amounts are in minor units.
CREATE TABLE bookings (
    id              TEXT NOT NULL PRIMARY KEY, -- UUIDv7: sorts by creation time
    user_id         TEXT NOT NULL,
    flight_id       INTEGER NOT NULL,
    seats           INTEGER NOT NULL,
    status          TEXT NOT NULL,
    unit_price      INTEGER NOT NULL DEFAULT 0,
    total           INTEGER NOT NULL DEFAULT 0,
    currency        TEXT NOT NULL DEFAULT '',
    hold_expires_at TEXT,
    reject_reason   TEXT NOT NULL DEFAULT '',
    payment_id      TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL,
    CONSTRAINT bookings_seats CHECK (seats BETWEEN 1 AND 9),
    CONSTRAINT bookings_status CHECK (status IN ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'EXPIRED', 'CANCELLED'))
) STRICT;
-- A traveller's bookings, newest first, by keyset on id (UUIDv7 order is creation order),
-- with or without a status filter.
CREATE INDEX bookings_user ON bookings (user_id, id);
CREATE INDEX bookings_user_status ON bookings (user_id, status, id);
-- The expiry scheduler's claims: HELD past hold_expires_at, PENDING past created_at + timeout.
CREATE INDEX bookings_expiry ON bookings (status, hold_expires_at);
CREATE INDEX bookings_pending ON bookings (status, created_at);
-- The admin listing of a flight's bookings (reconcile) pages by id within a flight.
CREATE INDEX bookings_flight ON bookings (flight_id, id);

-- booking_history is every recorded change of a booking. seq is the booking's version after
-- the change.
CREATE TABLE booking_history (
    booking_id  TEXT NOT NULL REFERENCES bookings (id),
    seq         INTEGER NOT NULL,
    from_status TEXT NOT NULL DEFAULT '', -- '' for the creation
    to_status   TEXT NOT NULL,
    cause       TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    at          TEXT NOT NULL,
    PRIMARY KEY (booking_id, seq)
) STRICT, WITHOUT ROWID;

-- payments records every charge the gateway made for a booking. status: succeeded (it paid
-- the booking) or refund_due / refunded (the booking had ended by the time the charge came
-- back, so the money goes back).
CREATE TABLE payments (
    id          TEXT NOT NULL PRIMARY KEY,
    booking_id  TEXT NOT NULL REFERENCES bookings (id),
    amount      INTEGER NOT NULL,
    currency    TEXT NOT NULL,
    status      TEXT NOT NULL,
    gateway_ref TEXT NOT NULL UNIQUE, -- the gateway answers a repeated charge with the same charge
    created_at  TEXT NOT NULL,
    CONSTRAINT payments_status CHECK (status IN ('succeeded', 'refund_due', 'refunded'))
) STRICT;
-- At most one successful payment per booking (MySQL needs a generated column for this).
CREATE UNIQUE INDEX payments_one_success ON payments (booking_id) WHERE status = 'succeeded';
CREATE INDEX payments_booking ON payments (booking_id);

-- refunds owed and made: a confirmed booking cancelled, or a charge that lost the race to
-- expiry. Written in the transaction that decides it (pending), sent to the gateway after the
-- commit (done).
CREATE TABLE refunds (
    id          TEXT NOT NULL PRIMARY KEY,
    booking_id  TEXT NOT NULL REFERENCES bookings (id),
    payment_id  TEXT NOT NULL UNIQUE REFERENCES payments (id), -- a payment is refunded in full or not at all
    amount      INTEGER NOT NULL,
    currency    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    refunded_at TEXT,
    CONSTRAINT refunds_status CHECK (status IN ('pending', 'done'))
) STRICT;
CREATE INDEX refunds_booking ON refunds (booking_id, status);

-- idempotency_keys remembers each Idempotency-Key a user sent on a POST, with a SHA-256 of
-- the request, so a retry gets the first response and a reused key with another request is
-- refused. in_progress rows belong to a request still running (or one that crashed: they are
-- taken over once stale).
CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    "key"           TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    status          TEXT NOT NULL,
    response_status INTEGER NOT NULL DEFAULT 0,
    response_body   BLOB,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (user_id, "key"),
    CONSTRAINT idempotency_keys_status CHECK (status IN ('in_progress', 'done'))
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE booking_history;
DROP TABLE bookings;
