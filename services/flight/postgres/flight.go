package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

const flightColumns = `id, flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
	fare_amount, currency, boarding_gate, status, total_seats, available_seats, held_seats, sold_seats, created_at, updated_at`

func scanFlight(row pgx.CollectableRow) (flight.Flight, error) {
	var f flight.Flight
	err := row.Scan(&f.ID, &f.FlightNumber, &f.AirplaneID, &f.DepartureAirport, &f.ArrivalAirport, &f.DepartureTime, &f.ArrivalTime,
		&f.FareAmount, &f.Currency, &f.BoardingGate, &f.Status, &f.Total, &f.Available, &f.Held, &f.Sold, &f.CreatedAt, &f.UpdatedAt)
	f.DepartureTime, f.ArrivalTime = f.DepartureTime.UTC(), f.ArrivalTime.UTC()
	return f, err
}

func oneFlight(rows pgx.Rows, err error, id any) (flight.Flight, error) {
	if err != nil {
		return flight.Flight{}, fmt.Errorf("flight %v: %w", id, err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, scanFlight)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return f, notFound("flight", id)
	case err != nil:
		return f, fmt.Errorf("flight %v: %w", id, err)
	}
	return f, nil
}

// CreateFlight schedules a flight. The airplane and airports must exist, and the seats fit
// the airplane; every problem is reported together, by field.
//
// It reads the airplane FOR SHARE in the transaction that inserts the flight, so an
// UpdateAirplane shrinking the capacity (which locks the row for update, then checks the
// flights) either waits for this flight and sees it, or commits first and this reads the new
// capacity: a flight never ends up with more seats than its airplane. The airports are read
// FOR KEY SHARE, as the foreign key would, so one deleted meanwhile is a field error here,
// not a constraint violation at the insert.
func (c *Catalog) CreateFlight(ctx context.Context, in flight.NewFlight) (flight.Flight, error) {
	var out flight.Flight
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		var v validation.Errors
		capacity := 0
		if in.AirplaneID > 0 {
			err := tx.QueryRow(ctx, `SELECT capacity FROM airplanes WHERE id = $1 FOR SHARE`, in.AirplaneID).Scan(&capacity)
			if errors.Is(err, pgx.ErrNoRows) {
				v.Add("airplane_id", fmt.Sprintf("no airplane with id %d", in.AirplaneID))
			} else if err != nil {
				return fmt.Errorf("create flight: airplane: %w", err)
			}
		}
		for _, ap := range []struct{ code, field string }{{in.DepartureAirport, "departure_airport"}, {in.ArrivalAirport, "arrival_airport"}} {
			if ap.code == "" {
				continue
			}
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM airports WHERE code = $1 FOR KEY SHARE`, ap.code).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				v.Add(ap.field, fmt.Sprintf("no airport with code %s", ap.code))
			} else if err != nil {
				return fmt.Errorf("create flight: airport: %w", err)
			}
		}
		if err := in.Validate(capacity); err != nil {
			fe, _ := validation.As(err)
			v = append(fe, v...)
		}
		if err := v.Err(); err != nil {
			return err
		}
		seats := capacity
		if in.Seats != nil {
			seats = *in.Seats
		}
		rows, err := tx.Query(ctx, `
			INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
			                     fare_amount, currency, boarding_gate, total_seats, available_seats)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
			RETURNING `+flightColumns,
			in.FlightNumber, in.AirplaneID, in.DepartureAirport, in.ArrivalAirport, in.DepartureTime.UTC(), in.ArrivalTime.UTC(),
			in.FareAmount, in.Currency, in.BoardingGate, seats)
		if out, err = oneFlight(rows, err, in.FlightNumber); err != nil {
			return err
		}
		return c.announced(ctx, tx, out)
	})
	return out, err
}

// Flight returns one flight with its seat counts.
func (c *Catalog) Flight(ctx context.Context, id int64) (flight.Flight, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+flightColumns+` FROM flights WHERE id = $1`, id)
	return oneFlight(rows, err, id)
}

// Reschedule changes a flight's times or gate. It locks the flight row, as seat holds do, so
// a schedule change and a hold never interleave.
func (c *Catalog) Reschedule(ctx context.Context, id int64, s flight.Schedule) (flight.Flight, error) {
	var out flight.Flight
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+flightColumns+` FROM flights WHERE id = $1 FOR UPDATE`, id)
		f, err := oneFlight(rows, err, id)
		if err != nil {
			return err
		}
		if f.Status == flight.StatusCancelled {
			return fmt.Errorf("flight %d is cancelled: %w", id, flight.ErrConflict)
		}
		if f, err = s.Apply(f); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `UPDATE flights SET departure_time = $2, arrival_time = $3, boarding_gate = $4, version = version + 1, updated_at = now()
			WHERE id = $1 RETURNING `+flightColumns, id, f.DepartureTime, f.ArrivalTime, f.BoardingGate)
		if out, err = oneFlight(rows, err, id); err != nil {
			return err
		}
		return c.announced(ctx, tx, out)
	})
	return out, err
}

// Cancel cancels a flight: it disappears from search and refuses new holds. Seats already
// held or sold stay recorded until the bookings are released.
func (c *Catalog) Cancel(ctx context.Context, id int64) (flight.Flight, error) {
	var out flight.Flight
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE flights SET status = 'cancelled', version = version + 1, updated_at = now()
			WHERE id = $1 RETURNING `+flightColumns, id)
		if out, err = oneFlight(rows, err, id); err != nil {
			return err
		}
		return c.announced(ctx, tx, out)
	})
	return out, err
}
