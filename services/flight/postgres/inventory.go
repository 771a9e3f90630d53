package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/services/flight"
)

// Inventory holds, releases and confirms seats. Every operation locks the flight row
// (SELECT ... FOR UPDATE) before it reads or writes the booking's hold, in that order, so two
// operations on one flight never interleave and never deadlock on each other.
type Inventory struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewInventory returns the seat inventory stored in pool.
func NewInventory(pool *pgxpool.Pool) *Inventory {
	return &Inventory{pool: pool, now: time.Now}
}

// Hold holds seats for a booking in its own transaction. See HoldTx.
func (inv *Inventory) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	var h flight.Hold
	err := retryTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.HoldTx(ctx, tx, req)
		return err
	})
	return h, err
}

// Release gives a booking's seats back in its own transaction. See ReleaseTx.
func (inv *Inventory) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	var h flight.Hold
	err := retryTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.ReleaseTx(ctx, tx, bookingID, flightID)
		return err
	})
	return h, err
}

// Confirm turns a booking's held seats into sold seats in its own transaction. See ConfirmTx.
func (inv *Inventory) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	var h flight.Hold
	err := retryTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.ConfirmTx(ctx, tx, bookingID)
		return err
	})
	return h, err
}

// HoldTx holds req.Seats seats on req.FlightID for req.BookingID inside tx, or records why not.
// It is idempotent by booking id: a repeated request returns the first outcome and changes
// nothing. A booking released before its hold arrived is refused.
func (inv *Inventory) HoldTx(ctx context.Context, tx pgx.Tx, req flight.HoldRequest) (flight.Hold, error) {
	if reason := req.Check(); reason != "" {
		// Nothing to record: the booking id may not even be a UUID, and the answer is the
		// same however often it is asked.
		return flight.Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats,
			Status: flight.HoldRejected, Reason: reason, Detail: "seats must be 1 to 9 and ids valid"}, nil
	}
	var s flight.Seating
	err := tx.QueryRow(ctx, `
		SELECT status, departure_time, available_seats, fare_amount, currency
		FROM flights WHERE id = $1 FOR UPDATE`, req.FlightID).
		Scan(&s.Status, &s.Departure, &s.Available, &s.Fare, &s.Currency)
	found := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return flight.Hold{}, fmt.Errorf("hold %s: lock flight %d: %w", req.BookingID, req.FlightID, err)
	}

	if prev, ok, err := getHold(ctx, tx, req.BookingID); err != nil {
		return flight.Hold{}, fmt.Errorf("hold %s: %w", req.BookingID, err)
	} else if ok {
		if prev.Status == flight.HoldReleased {
			prev.Reason, prev.Detail = flight.ReasonInvalidRequest, "the booking was released before or after this hold"
		}
		return prev, nil
	}

	h := flight.Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats,
		Status: flight.HoldRejected, Reason: flight.ReasonFlightNotFound, Detail: "no such flight"}
	if found {
		h = flight.Decide(req, s, inv.now())
	}
	inserted, err := insertHold(ctx, tx, h)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("hold %s: %w", req.BookingID, err)
	}
	if !inserted {
		// A concurrent request for the same booking but another flight won the insert;
		// its outcome is the booking's outcome.
		prev, _, err := getHold(ctx, tx, req.BookingID)
		return prev, err
	}
	if h.Status == flight.HoldHeld {
		_, err := tx.Exec(ctx, `
			UPDATE flights SET available_seats = available_seats - $2, held_seats = held_seats + $2,
			       version = version + 1, updated_at = now()
			WHERE id = $1`, req.FlightID, req.Seats)
		if err != nil {
			return flight.Hold{}, fmt.Errorf("hold %s: take %d seats of flight %d: %w", req.BookingID, req.Seats, req.FlightID, err)
		}
	}
	return h, nil
}

// ReleaseTx gives back the seats a booking holds or bought, inside tx. A release for a
// booking with no hold leaves a tombstone so that a hold arriving later is refused. Releasing
// twice changes nothing the second time. The returned hold's Seats is what was given back by
// the release that took effect (0 for a tombstone or a rejected hold).
func (inv *Inventory) ReleaseTx(ctx context.Context, tx pgx.Tx, bookingID string, flightID int64) (flight.Hold, error) {
	if known, ok, err := holdFlight(ctx, tx, bookingID); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	} else if ok {
		flightID = known
	}
	if err := lockFlight(ctx, tx, flightID); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	}
	h, ok, err := getHold(ctx, tx, bookingID)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	}
	if !ok {
		tomb := flight.Hold{BookingID: bookingID, FlightID: flightID, Status: flight.HoldReleased,
			Reason: flight.ReasonInvalidRequest, Detail: "released before the hold arrived"}
		inserted, err := insertHold(ctx, tx, tomb)
		if err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: tombstone: %w", bookingID, err)
		}
		if !inserted {
			return flight.Hold{}, fmt.Errorf("release %s: hold appeared concurrently; retry", bookingID)
		}
		return tomb, nil
	}
	var column string
	switch h.Status {
	case flight.HoldHeld:
		column = "held_seats"
	case flight.HoldSold:
		column = "sold_seats"
	case flight.HoldRejected:
		h.Seats = 0
		return h, nil
	default: // already released
		return h, nil
	}
	if _, err := tx.Exec(ctx, `
		UPDATE flights SET available_seats = available_seats + $2, `+column+` = `+column+` - $2,
		       version = version + 1, updated_at = now()
		WHERE id = $1`, h.FlightID, h.Seats); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: return %d seats to flight %d: %w", bookingID, h.Seats, h.FlightID, err)
	}
	if err := setHoldStatus(ctx, tx, bookingID, flight.HoldReleased); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	}
	h.Status = flight.HoldReleased
	return h, nil
}

// ConfirmTx turns a booking's held seats into sold seats inside tx. Confirming twice returns
// the sold hold again; confirming a hold that is not there (never held, rejected, released)
// fails with flight.ErrHoldNotFound and changes nothing.
func (inv *Inventory) ConfirmTx(ctx context.Context, tx pgx.Tx, bookingID string) (flight.Hold, error) {
	flightID, ok, err := holdFlight(ctx, tx, bookingID)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	if !ok {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, flight.ErrHoldNotFound)
	}
	if err := lockFlight(ctx, tx, flightID); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	h, _, err := getHold(ctx, tx, bookingID)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	switch h.Status {
	case flight.HoldSold:
		return h, nil
	case flight.HoldHeld:
	default:
		return flight.Hold{}, fmt.Errorf("confirm %s: hold is %s: %w", bookingID, h.Status, flight.ErrHoldNotFound)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE flights SET held_seats = held_seats - $2, sold_seats = sold_seats + $2,
		       version = version + 1, updated_at = now()
		WHERE id = $1`, h.FlightID, h.Seats); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: sell %d seats of flight %d: %w", bookingID, h.Seats, h.FlightID, err)
	}
	if err := setHoldStatus(ctx, tx, bookingID, flight.HoldSold); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	h.Status = flight.HoldSold
	return h, nil
}

// Holds lists every hold recorded for a flight, oldest first.
func (inv *Inventory) Holds(ctx context.Context, flightID int64) ([]flight.Hold, error) {
	rows, err := inv.pool.Query(ctx, `SELECT `+holdColumns+` FROM holds WHERE flight_id = $1 ORDER BY created_at, booking_id`, flightID)
	if err != nil {
		return nil, fmt.Errorf("list holds of flight %d: %w", flightID, err)
	}
	hs, err := pgx.CollectRows(rows, scanHold)
	if err != nil {
		return nil, fmt.Errorf("list holds of flight %d: %w", flightID, err)
	}
	return hs, nil
}

// HoldOf returns the hold recorded for a booking.
func (inv *Inventory) HoldOf(ctx context.Context, bookingID string) (flight.Hold, bool, error) {
	return getHold(ctx, inv.pool, bookingID)
}

// SeatCounts returns a flight's seat counts.
func (inv *Inventory) SeatCounts(ctx context.Context, flightID int64) (flight.SeatCounts, error) {
	var c flight.SeatCounts
	err := inv.pool.QueryRow(ctx, `SELECT total_seats, available_seats, held_seats, sold_seats FROM flights WHERE id = $1`, flightID).
		Scan(&c.Total, &c.Available, &c.Held, &c.Sold)
	if err != nil {
		return c, fmt.Errorf("seat counts of flight %d: %w", flightID, err)
	}
	return c, nil
}

const holdColumns = `booking_id::text, flight_id, seats, status, reason, detail, unit_price, currency, created_at, updated_at`

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func scanHold(row pgx.CollectableRow) (flight.Hold, error) {
	var h flight.Hold
	var status string
	err := row.Scan(&h.BookingID, &h.FlightID, &h.Seats, &status, &h.Reason, &h.Detail, &h.UnitPrice, &h.Currency, &h.CreatedAt, &h.UpdatedAt)
	h.Status = flight.HoldStatus(status)
	if h.Status == flight.HoldHeld || h.Status == flight.HoldSold || (h.Status == flight.HoldReleased && h.Seats > 0) {
		h.Total = h.UnitPrice * int64(h.Seats)
	}
	return h, err
}

func getHold(ctx context.Context, q querier, bookingID string) (flight.Hold, bool, error) {
	rows, err := q.Query(ctx, `SELECT `+holdColumns+` FROM holds WHERE booking_id = $1 FOR UPDATE`, bookingID)
	if err != nil {
		return flight.Hold{}, false, fmt.Errorf("read hold: %w", err)
	}
	h, err := pgx.CollectExactlyOneRow(rows, scanHold)
	if errors.Is(err, pgx.ErrNoRows) {
		return flight.Hold{}, false, nil
	}
	if err != nil {
		return flight.Hold{}, false, fmt.Errorf("read hold: %w", err)
	}
	return h, true, nil
}

func holdFlight(ctx context.Context, tx pgx.Tx, bookingID string) (int64, bool, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT flight_id FROM holds WHERE booking_id = $1`, bookingID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("find hold: %w", err)
	}
	return id, true, nil
}

func lockFlight(ctx context.Context, tx pgx.Tx, flightID int64) error {
	// A missing flight is fine here: the hold row is then the only thing to lock.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM flights WHERE id = $1 FOR UPDATE`, flightID); err != nil {
		return fmt.Errorf("lock flight %d: %w", flightID, err)
	}
	return nil
}

func insertHold(ctx context.Context, tx pgx.Tx, h flight.Hold) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO holds (booking_id, flight_id, seats, status, reason, detail, unit_price, currency)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (booking_id) DO NOTHING`,
		h.BookingID, h.FlightID, h.Seats, string(h.Status), h.Reason, h.Detail, h.UnitPrice, h.Currency)
	if err != nil {
		return false, fmt.Errorf("record hold: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

func setHoldStatus(ctx context.Context, tx pgx.Tx, bookingID string, s flight.HoldStatus) error {
	if _, err := tx.Exec(ctx, `UPDATE holds SET status = $2, updated_at = now() WHERE booking_id = $1`, bookingID, string(s)); err != nil {
		return fmt.Errorf("set hold %s: %w", s, err)
	}
	return nil
}

// retryTx runs fn in a transaction and runs it again when PostgreSQL aborted it for a
// deadlock or a serialization failure; both leave nothing behind, so a retry is safe.
func retryTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, pool, fn)
		var pgErr *pgconn.PgError
		if err == nil || attempt == 5 || !errors.As(err, &pgErr) || (pgErr.Code != "40001" && pgErr.Code != "40P01") {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}
