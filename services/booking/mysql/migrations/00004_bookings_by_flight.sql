-- +goose Up
-- The admin listing of a flight's bookings (reconcile) pages by id within a flight; without
-- this index it scanned every booking.
CREATE INDEX bookings_flight ON bookings (flight_id, id);

-- +goose Down
DROP INDEX bookings_flight ON bookings;
