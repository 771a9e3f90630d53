package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flightbook/flightbook/services/booking"
)

// FlightQuery selects a page of every user's bookings, oldest first, for reconciliation.
type FlightQuery struct {
	FlightID int64  // 0 for every flight
	After    string // cursor: only bookings with an id above this one
	Limit    int
}

// ListByFlight returns up to q.Limit bookings of any user in id (creation) order, and the
// cursor of the next page ("" on the last page). It pages by keyset on the primary key, so a
// page costs the same however deep it is; with a flight filter it reads the rows it skips,
// which an operator's occasional reconcile can afford.
func (s *Store) ListByFlight(ctx context.Context, q FlightQuery) ([]booking.Booking, string, error) {
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

// Repair is a command to the flight service that reconciliation sends again, because the
// flight service's record of a booking's seats disagrees with the booking.
type Repair string

// Repairs, each one of the saga's commands.
const (
	RepairRelease     Repair = "release"      // SeatReleaseRequested: the booking ended but its seats are still taken
	RepairRequestHold Repair = "request_hold" // SeatHoldRequested: the booking waits for seats the flight service never recorded
	RepairConfirm     Repair = "confirm"      // SeatsConfirmRequested: the booking is paid but its seats are only held
)

// Valid reports whether r is a known repair.
func (r Repair) Valid() bool {
	return r == RepairRelease || r == RepairRequestHold || r == RepairConfirm
}

// effect returns the command r sends for b, or booking.ErrInvalidTransition when it does not
// fit b's status: a repair only re-sends what the saga would have sent for a booking in that
// status, so it can never take the saga somewhere the state machine would not.
func (r Repair) effect(b booking.Booking) (booking.Effect, error) {
	switch {
	case r == RepairRelease && b.Status == booking.Cancelled:
		return booking.Effect{Kind: booking.RequestRelease, Reason: booking.ReleaseCancelled}, nil
	case r == RepairRelease && b.Status == booking.Expired:
		return booking.Effect{Kind: booking.RequestRelease, Reason: booking.ReleaseExpired}, nil
	case r == RepairRelease && b.Status == booking.Rejected:
		// A rejected booking never had seats; any it has were held after the rejection.
		return booking.Effect{Kind: booking.RequestRelease, Reason: booking.ReleaseLateHold}, nil
	case r == RepairRequestHold && (b.Status == booking.Pending || b.Status == booking.Held):
		return booking.Effect{Kind: booking.RequestHold}, nil
	case r == RepairConfirm && b.Status == booking.Confirmed:
		return booking.Effect{Kind: booking.RequestConfirm}, nil
	}
	return booking.Effect{}, fmt.Errorf("%s for a %s booking: %w", r, b.Status, booking.ErrInvalidTransition)
}

// Repair re-sends the flight service the command r for the booking: in one transaction,
// under the booking's row lock, it writes the command to the outbox and a history line with
// cause "reconcile_<r>", leaving the status alone. The flight service's handlers are
// idempotent by booking id, so a repair that turns out not to have been needed changes
// nothing there. A repair that does not fit the booking's status fails with
// booking.ErrInvalidTransition; an unknown booking with booking.ErrNotFound.
func (s *Store) Repair(ctx context.Context, id string, r Repair) (booking.Change, error) {
	var c booking.Change
	err := InTx(ctx, s.db, func(tx *sql.Tx) error {
		b, err := lock(ctx, tx, id)
		if err != nil {
			return err
		}
		e, err := r.effect(b)
		if err != nil {
			return fmt.Errorf("booking %s: %w", id, err)
		}
		nb := b
		nb.Version++
		nb.UpdatedAt = s.Now()
		c = booking.Change{From: b.Status, Booking: nb, Effects: []booking.Effect{e},
			Cause: "reconcile_" + string(r), Detail: fmt.Sprintf("reconcile sent the flight service %s again", e.Kind)}
		return s.save(ctx, tx, b.Version, c)
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
	return InTx(ctx, s.db, func(tx *sql.Tx) error {
		_, err := lock(ctx, tx, id)
		if err == nil {
			return fmt.Errorf("release orphan %s: the booking exists: %w", id, booking.ErrInvalidTransition)
		}
		if !errors.Is(err, booking.ErrNotFound) {
			return err
		}
		b := booking.Booking{ID: id, FlightID: flightID, Seats: seats}
		if err := s.emit(ctx, tx, b, []booking.Effect{{Kind: booking.RequestRelease, Reason: booking.ReleaseLateHold}}); err != nil {
			return fmt.Errorf("release orphan %s: emit: %w", id, err)
		}
		return nil
	})
}
