-- +goose Up
-- flights is the booking service's copy of the flight service's catalogue, kept from its
-- FlightScheduled and FlightCancelled events (package messaging), so POST /bookings refuses an
-- unknown, cancelled or departed flight without calling the flight service. announced_at is the
-- ce-time of the newest event applied: an older event redelivered late changes nothing.
-- departure_time is NULL for a flight only ever seen cancelled. Times are UTC.
CREATE TABLE flights (
    id             BIGINT NOT NULL PRIMARY KEY,
    flight_number  VARCHAR(16) NOT NULL,
    departure_time DATETIME(6) NULL,
    cancelled      BOOLEAN NOT NULL DEFAULT FALSE,
    announced_at   DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE flights;
