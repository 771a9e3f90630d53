-- +goose Up
-- flights is the booking service's copy of the flight service's catalogue, kept from its
-- FlightScheduled and FlightCancelled events, so POST /bookings refuses an unknown, cancelled or
-- departed flight without calling the flight service. announced_at is the ce-time of the newest
-- event applied: an older event redelivered late changes nothing. departure_time is NULL for a
-- flight only ever seen cancelled.
CREATE TABLE flights (
    id             INTEGER NOT NULL PRIMARY KEY,
    flight_number  TEXT NOT NULL,
    departure_time TEXT,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    announced_at   TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE flights;
