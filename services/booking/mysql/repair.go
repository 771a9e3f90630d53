package mysql

import (
	"context"
	"errors"
	"fmt"

	"github.com/flightbook/flightbook/services/booking"
)

// ListByFlight returns up to q.Limit bookings of any user in id (creation) order, and the
// cursor of the next page ("" on the last page). It pages by keyset on the primary key, so a
// page costs the same however deep it is; with a flight filter it reads the rows it skips,
// which an operator's occasional reconcile can afford.
func (s *Store) ListByFlight(ctx context.Context, q booking.FlightQuery) ([]booking.Booking, string, error) {
	where, args := ` WHERE id > ?`, []any{q.After}
	if q.FlightID != 0 {
		where += ` AND flight_id = ?`
		args = append(args, q.FlightID)
	}
	args = append(args, q.Limit+1)
	rows, err := s.db.QueryContext(ctx, selectBooking+where+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list bookings of flight %d: %w", q.FlightID, err)
	}
	defer rows.Close()
	var out []booking.Booking
	for rows.Next() {
		b, err := scanBooking(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list bookings of flight %d: %w", q.FlightID, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list bookings of flight %d: %w", q.FlightID, err)
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Repair re-sends the flight service the command r for the booking: in one transaction,
// under the booking's row lock, it writes the command to the outbox and a history line with
// cause "reconcile_<r>", leaving the status alone (booking.Repair.Apply). A repair that does
// not fit the booking's status fails with booking.ErrInvalidTransition; an unknown booking
// with booking.ErrNotFound.
func (s *Store) Repair(ctx context.Context, id string, r booking.Repair) (booking.Change, error) {
	var c booking.Change
	err := s.inTx(ctx, func(t *tx) error {
		b, err := t.lock(ctx, id)
		if err != nil {
			return err
		}
		if c, err = r.Apply(b, s.Now()); err != nil {
			return fmt.Errorf("booking %s: %w", id, err)
		}
		return t.save(ctx, b.Version, c)
	})
	return c, err
}

// ReleaseOrphan asks the flight service to give back seats it holds for a booking this
// service has no record of (late_hold: nobody can pay for them). It checks, under a lock on
// the missing row's place in the index, that the booking really does not exist, and fails
// with booking.ErrInvalidTransition when it does: then the booking's own status decides.
// There is no booking to write a history line for.
func (s *Store) ReleaseOrphan(ctx context.Context, id string, flightID int64, seats int) error {
	if err := booking.ValidateRequest(flightID, seats); err != nil {
		return err
	}
	return s.inTx(ctx, func(t *tx) error {
		_, err := t.lock(ctx, id)
		if err == nil {
			return fmt.Errorf("release orphan %s: the booking exists: %w", id, booking.ErrInvalidTransition)
		}
		if !errors.Is(err, booking.ErrNotFound) {
			return err
		}
		b := booking.Booking{ID: id, FlightID: flightID, Seats: seats}
		if err := s.emit(ctx, t, b, []booking.Effect{{Kind: booking.RequestRelease, Reason: booking.ReleaseLateHold}}); err != nil {
			return fmt.Errorf("release orphan %s: emit: %w", id, err)
		}
		return nil
	})
}
