-- +goose Up
-- announced_at is when the flight's current state was last queued in the outbox as a catalogue
-- event (FlightScheduled or FlightCancelled). The flight service announces open flights again
-- before the FLIGHT stream's age limit forgets them (Catalog.AnnounceDue), so the stream always
-- holds every open flight and a booking database rebuilt from it knows them all. NULL, as for
-- every flight created before this column existed, means "announce at the next run".
ALTER TABLE flights ADD COLUMN announced_at timestamptz;
CREATE INDEX flights_open_announced ON flights (announced_at NULLS FIRST, id) WHERE status = 'scheduled';

-- +goose Down
DROP INDEX flights_open_announced;
ALTER TABLE flights DROP COLUMN announced_at;
