-- +goose Up
-- announced_at is when the flight's current state was last queued in the outbox as a catalogue
-- event (see services/flight/postgres/migrations/00005_announced.sql); NULL means "announce at
-- the next run". SQLite sorts NULL first in ascending order, as the announcer wants.
ALTER TABLE flights ADD COLUMN announced_at TEXT;
CREATE INDEX flights_open_announced ON flights (announced_at, id) WHERE status = 'scheduled';

-- +goose Down
DROP INDEX flights_open_announced;
ALTER TABLE flights DROP COLUMN announced_at;
