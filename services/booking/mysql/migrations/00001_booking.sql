-- +goose Up
-- bookings is one row per booking; the row is the saga's single point of decision: payment,
-- cancel, expiry and the flight service's replies all lock it (SELECT ... FOR UPDATE) before
-- changing it. Amounts are in minor units; times are UTC. Ids are VARCHAR, not CHAR: MariaDB
-- refuses a generated column (payments.paid_booking_id) that reads a CHAR, whose value
-- depends on sql_mode.
CREATE TABLE bookings (
    id              VARCHAR(36) NOT NULL PRIMARY KEY, -- UUIDv7: sorts by creation time
    user_id         VARCHAR(255) NOT NULL,
    flight_id       BIGINT NOT NULL,
    seats           SMALLINT NOT NULL,
    status          VARCHAR(16) NOT NULL,
    unit_price      BIGINT NOT NULL DEFAULT 0,
    total           BIGINT NOT NULL DEFAULT 0,
    currency        CHAR(3) NOT NULL DEFAULT '',
    hold_expires_at DATETIME(6) NULL,
    reject_reason   VARCHAR(64) NOT NULL DEFAULT '',
    payment_id      VARCHAR(36) NOT NULL DEFAULT '',
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    version         BIGINT NOT NULL,
    CONSTRAINT bookings_seats CHECK (seats BETWEEN 1 AND 9),
    CONSTRAINT bookings_status CHECK (status IN ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'EXPIRED', 'CANCELLED')),
    -- A traveller's bookings, newest first, by keyset on id (UUIDv7 order is creation order),
    -- with or without a status filter.
    KEY bookings_user (user_id, id),
    KEY bookings_user_status (user_id, status, id),
    -- The expiry scheduler's claims: HELD past hold_expires_at, PENDING past created_at + timeout.
    KEY bookings_expiry (status, hold_expires_at),
    KEY bookings_pending (status, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- booking_history is every recorded change of a booking, so support can see where its saga
-- stands and why. seq is the booking's version after the change.
CREATE TABLE booking_history (
    booking_id  VARCHAR(36) NOT NULL,
    seq         BIGINT NOT NULL,
    from_status VARCHAR(16) NOT NULL DEFAULT '', -- '' for the creation
    to_status   VARCHAR(16) NOT NULL,
    cause       VARCHAR(32) NOT NULL,
    detail      VARCHAR(512) NOT NULL DEFAULT '',
    at          DATETIME(6) NOT NULL,
    PRIMARY KEY (booking_id, seq),
    CONSTRAINT booking_history_booking FOREIGN KEY (booking_id) REFERENCES bookings (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- payments records every charge the gateway made for a booking. status: succeeded (it paid
-- the booking) or refund_due / refunded (the booking had expired or been cancelled by the time
-- the charge came back, so the money goes back).
CREATE TABLE payments (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    booking_id  VARCHAR(36) NOT NULL,
    amount      BIGINT NOT NULL,
    currency    CHAR(3) NOT NULL,
    status      VARCHAR(16) NOT NULL,
    gateway_ref VARCHAR(255) NOT NULL,
    created_at  DATETIME(6) NOT NULL,
    -- At most one successful payment per booking: NULL for any other status, and a unique
    -- index ignores NULLs (MariaDB and MySQL have no partial indexes).
    paid_booking_id VARCHAR(36) AS (IF(status = 'succeeded', booking_id, NULL)) STORED,
    CONSTRAINT payments_status CHECK (status IN ('succeeded', 'refund_due', 'refunded')),
    UNIQUE KEY payments_one_success (paid_booking_id),
    -- The gateway answers a repeated charge for a booking with the same charge.
    UNIQUE KEY payments_gateway_ref (gateway_ref),
    KEY payments_booking (booking_id),
    CONSTRAINT payments_booking FOREIGN KEY (booking_id) REFERENCES bookings (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- refunds owed and made: a confirmed booking cancelled, or a charge that lost the race to
-- expiry. Written in the transaction that decides it (pending), sent to the gateway after the
-- commit (done).
CREATE TABLE refunds (
    id          VARCHAR(36) NOT NULL PRIMARY KEY,
    booking_id  VARCHAR(36) NOT NULL,
    payment_id  VARCHAR(36) NOT NULL,
    amount      BIGINT NOT NULL,
    currency    CHAR(3) NOT NULL,
    reason      VARCHAR(32) NOT NULL,
    status      VARCHAR(16) NOT NULL,
    created_at  DATETIME(6) NOT NULL,
    refunded_at DATETIME(6) NULL,
    CONSTRAINT refunds_status CHECK (status IN ('pending', 'done')),
    -- One refund per payment: a payment is refunded in full or not at all.
    UNIQUE KEY refunds_payment (payment_id),
    KEY refunds_status (status, created_at),
    CONSTRAINT refunds_booking FOREIGN KEY (booking_id) REFERENCES bookings (id),
    CONSTRAINT refunds_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- idempotency_keys remembers each Idempotency-Key a user sent on a POST, with a SHA-256 of
-- the request, so a retry gets the first response and a reused key with another request is
-- refused. in_progress rows belong to a request still running (or one that crashed: they are
-- taken over once stale).
CREATE TABLE idempotency_keys (
    user_id         VARCHAR(255) NOT NULL,
    `key`           VARCHAR(255) NOT NULL,
    request_hash    CHAR(64) NOT NULL,
    status          VARCHAR(16) NOT NULL,
    response_status SMALLINT NOT NULL DEFAULT 0,
    response_body   MEDIUMBLOB NULL,
    created_at      DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, `key`),
    CONSTRAINT idempotency_keys_status CHECK (status IN ('in_progress', 'done')),
    KEY idempotency_keys_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE booking_history;
DROP TABLE bookings;
