package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

// RecordFlight applies a catalogue event to the local copy of flight f.ID: f is the flight as
// the event states it, with AnnouncedAt its ce-time. Events may arrive twice, late or out of
// order (two durables, redelivery, replay), so the upsert is idempotent and order-tolerant:
// a cancellation is final, and a schedule older than the one recorded changes nothing.
func (s *Store) RecordFlight(ctx context.Context, f booking.Flight) error {
	// MySQL evaluates ON DUPLICATE KEY UPDATE assignments left to right, each seeing the ones
	// before it, so departure_time and flight_number are decided before announced_at moves.
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO flights (id, flight_number, departure_time, cancelled, announced_at) VALUES (?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE
			departure_time = IF(VALUES(announced_at) >= announced_at AND VALUES(departure_time) IS NOT NULL, VALUES(departure_time), departure_time),
			flight_number  = IF(VALUES(announced_at) >= announced_at, VALUES(flight_number), flight_number),
			cancelled      = cancelled OR VALUES(cancelled),
			announced_at   = GREATEST(announced_at, VALUES(announced_at))`,
		f.ID, f.Number, nullTime(f.DepartureTime.Truncate(time.Microsecond)), f.Cancelled, f.AnnouncedAt.UTC().Truncate(time.Microsecond))
	if err != nil {
		return fmt.Errorf("record flight %d: %w", f.ID, err)
	}
	return nil
}

// Flight returns the local copy of a flight, or booking.ErrFlightNotFound.
func (s *Store) Flight(ctx context.Context, id int64) (booking.Flight, error) {
	f := booking.Flight{ID: id}
	var dep sql.NullTime
	err := s.db.QueryRowContext(ctx, `SELECT flight_number, departure_time, cancelled, announced_at FROM flights WHERE id = ?`, id).
		Scan(&f.Number, &dep, &f.Cancelled, &f.AnnouncedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("flight %d: %w", id, booking.ErrFlightNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("flight %d: %w", id, err)
	}
	if dep.Valid {
		f.DepartureTime = dep.Time.UTC()
	}
	f.AnnouncedAt = f.AnnouncedAt.UTC()
	return f, nil
}
