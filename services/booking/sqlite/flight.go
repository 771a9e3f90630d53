package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flightbook/flightbook/services/booking"
)

// RecordFlight applies a catalogue event to the local copy of flight f.ID: f is the flight as
// the event states it, with AnnouncedAt its ce-time. Events may arrive twice, late or out of
// order (two durables, redelivery, replay), so the upsert is idempotent and order-tolerant:
// a cancellation is final, and a schedule older than the one recorded changes nothing.
func (s *Store) RecordFlight(ctx context.Context, f booking.Flight) error {
	// Every assignment of an upsert reads the row as it was (unlike MySQL's left-to-right
	// ON DUPLICATE KEY UPDATE), and the fixed-width time text compares in time order.
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO flights (id, flight_number, departure_time, cancelled, announced_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			departure_time = CASE WHEN excluded.announced_at >= announced_at AND excluded.departure_time IS NOT NULL
			                      THEN excluded.departure_time ELSE departure_time END,
			flight_number  = CASE WHEN excluded.announced_at >= announced_at THEN excluded.flight_number ELSE flight_number END,
			cancelled      = cancelled OR excluded.cancelled,
			announced_at   = max(announced_at, excluded.announced_at)`,
		f.ID, f.Number, nullText(f.DepartureTime), f.Cancelled, text(f.AnnouncedAt))
	if err != nil {
		return fmt.Errorf("record flight %d: %w", f.ID, err)
	}
	return nil
}

// Flight returns the local copy of a flight, or booking.ErrFlightNotFound.
func (s *Store) Flight(ctx context.Context, id int64) (booking.Flight, error) {
	f := booking.Flight{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT flight_number, departure_time, cancelled, announced_at FROM flights WHERE id = ?`, id).
		Scan(&f.Number, timeCol{&f.DepartureTime}, &f.Cancelled, timeCol{&f.AnnouncedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("flight %d: %w", id, booking.ErrFlightNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("flight %d: %w", id, err)
	}
	return f, nil
}
