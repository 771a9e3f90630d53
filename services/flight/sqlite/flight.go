package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

const flightColumns = `id, flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
	fare_amount, currency, boarding_gate, status, total_seats, available_seats, held_seats, sold_seats, created_at, updated_at`

func scanFlight(row scanner) (flight.Flight, error) {
	var f flight.Flight
	err := row.Scan(&f.ID, &f.FlightNumber, &f.AirplaneID, &f.DepartureAirport, &f.ArrivalAirport, tm(&f.DepartureTime), tm(&f.ArrivalTime),
		&f.FareAmount, &f.Currency, &f.BoardingGate, &f.Status, &f.Total, &f.Available, &f.Held, &f.Sold, tm(&f.CreatedAt), tm(&f.UpdatedAt))
	return f, err
}

func oneFlight(row scanner, id any) (flight.Flight, error) {
	f, err := scanFlight(row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return f, notFound("flight", id)
	case err != nil:
		return f, fmt.Errorf("flight %v: %w", id, err)
	}
	return f, nil
}

// CreateFlight schedules a flight. The airplane and airports must exist, and the seats fit
// the airplane; every problem is reported together, by field.
//
// It reads the airplane and airports in the transaction that inserts the flight, which holds
// the write lock from its start (where package postgres reads them FOR SHARE and FOR KEY
// SHARE): an UpdateAirplane shrinking the capacity, or a delete of an airport, runs wholly
// before or wholly after it, so a flight never ends up with more seats than its airplane.
func (c *Catalog) CreateFlight(ctx context.Context, in flight.NewFlight) (flight.Flight, error) {
	var out flight.Flight
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		var v validation.Errors
		capacity := 0
		if in.AirplaneID > 0 {
			err := tx.QueryRowContext(ctx, `SELECT capacity FROM airplanes WHERE id = $1`, in.AirplaneID).Scan(&capacity)
			if errors.Is(err, sql.ErrNoRows) {
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
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM airports WHERE code = $1`, ap.code).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
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
		var err error
		out, err = oneFlight(tx.QueryRowContext(ctx, `
			INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
			                     fare_amount, currency, boarding_gate, total_seats, available_seats)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
			RETURNING `+flightColumns,
			in.FlightNumber, in.AirplaneID, in.DepartureAirport, in.ArrivalAirport, sqlTime(in.DepartureTime), sqlTime(in.ArrivalTime),
			in.FareAmount, in.Currency, in.BoardingGate, seats), in.FlightNumber)
		if err != nil {
			return err
		}
		return c.announced(ctx, tx, out)
	})
	return out, err
}

// Flight returns one flight with its seat counts.
func (c *Catalog) Flight(ctx context.Context, id int64) (flight.Flight, error) {
	return oneFlight(c.db.QueryRowContext(ctx, `SELECT `+flightColumns+` FROM flights WHERE id = $1`, id), id)
}

// Reschedule changes a flight's times or gate. Its transaction holds the write lock from the
// start (where package postgres locks the flight row), so a schedule change and a hold never
// interleave.
func (c *Catalog) Reschedule(ctx context.Context, id int64, s flight.Schedule) (flight.Flight, error) {
	var out flight.Flight
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		f, err := oneFlight(tx.QueryRowContext(ctx, `SELECT `+flightColumns+` FROM flights WHERE id = $1`, id), id)
		if err != nil {
			return err
		}
		if f.Status == flight.StatusCancelled {
			return fmt.Errorf("flight %d is cancelled: %w", id, flight.ErrConflict)
		}
		if f, err = s.Apply(f); err != nil {
			return err
		}
		out, err = oneFlight(tx.QueryRowContext(ctx, `UPDATE flights SET departure_time = $2, arrival_time = $3, boarding_gate = $4,
			version = version + 1, updated_at = `+nowSQL+` WHERE id = $1 RETURNING `+flightColumns,
			id, sqlTime(f.DepartureTime), sqlTime(f.ArrivalTime), f.BoardingGate), id)
		if err != nil {
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
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		var err error
		out, err = oneFlight(tx.QueryRowContext(ctx, `UPDATE flights SET status = 'cancelled', version = version + 1, updated_at = `+nowSQL+`
			WHERE id = $1 RETURNING `+flightColumns, id), id)
		if err != nil {
			return err
		}
		return c.announced(ctx, tx, out)
	})
	return out, err
}

// Search returns one page of scheduled, future flights matching s, and the cursor of the next
// page ("" on the last page). Order is s.Sort then id, so pages never overlap or skip.
func (c *Catalog) Search(ctx context.Context, s flight.Search, now time.Time) ([]flight.Flight, string, error) {
	query, args := searchQuery(s, now)
	fs, err := list(ctx, c.db, "search flights", query, args, scanFlight)
	if err != nil {
		return nil, "", err
	}
	if len(fs) <= s.Limit {
		return fs, "", nil
	}
	fs = fs[:s.Limit]
	last := fs[len(fs)-1]
	cur := flight.Cursor{Sort: s.SortString(), ID: last.ID}
	for _, k := range s.Sort {
		cur.Values = append(cur.Values, sortValue(last, k.Field))
	}
	return fs, cur.Encode(), nil
}

// searchQuery builds the SQL of a search and its arguments, as package postgres does (see
// its searchQuery and keyset for the reasoning); times are compared as stored text. It asks
// for one row more than a page, so Search knows whether another page follows.
func searchQuery(s flight.Search, now time.Time) (string, []any) {
	where := []string{"status = 'scheduled'", "departure_time > $1", "available_seats >= $2"}
	args := []any{sqlTime(now), s.Travellers}
	arg := func(v any) string {
		if t, ok := v.(time.Time); ok {
			v = sqlTime(t)
		}
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if s.From != "" {
		where = append(where, "departure_airport = "+arg(s.From))
	}
	if s.To != "" {
		where = append(where, "arrival_airport = "+arg(s.To))
	}
	if !s.Date.IsZero() {
		where = append(where, "departure_time >= "+arg(s.Date), "departure_time < "+arg(s.Date.AddDate(0, 0, 1)))
	}
	if s.MinPrice > 0 {
		where = append(where, "fare_amount >= "+arg(s.MinPrice))
	}
	if s.MaxPrice > 0 {
		where = append(where, "fare_amount <= "+arg(s.MaxPrice))
	}
	order := make([]string, 0, len(s.Sort)+1)
	for _, k := range s.Sort {
		dir := "ASC"
		if k.Desc {
			dir = "DESC"
		}
		order = append(order, sortColumn(k.Field)+" "+dir)
	}
	order = append(order, "id ASC")
	if s.After != nil {
		where = append(where, keyset(s, arg)...)
	}
	return `SELECT ` + flightColumns + ` FROM flights WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ` + arg(s.Limit+1), args
}

func sortColumn(field string) string {
	switch field {
	case "price":
		return "fare_amount"
	case "arrival_time":
		return "arrival_time"
	default:
		return "departure_time"
	}
}

func sortValue(f flight.Flight, field string) int64 {
	switch field {
	case "price":
		return f.FareAmount
	case "arrival_time":
		return f.ArrivalTime.UnixMicro()
	default:
		return f.DepartureTime.UnixMicro()
	}
}

// keyset returns the conditions "after the cursor" for a mixed-direction order:
//
//	(k1 >= v1) AND ((k1 > v1) OR (k1 = v1 AND k2 < v2) OR ... OR (all equal AND id > last id))
//
// The first key's bound is implied by the disjunction; it lets SQLite start its index scan
// at the cursor.
func keyset(s flight.Search, arg func(any) string) []string {
	vals := make([]string, len(s.Sort))
	for i, k := range s.Sort {
		if k.Field == "price" {
			vals[i] = arg(s.After.Values[i])
		} else {
			vals[i] = arg(time.UnixMicro(s.After.Values[i]))
		}
	}
	var conds []string
	if len(s.Sort) > 0 {
		op := ">="
		if s.Sort[0].Desc {
			op = "<="
		}
		conds = append(conds, sortColumn(s.Sort[0].Field)+" "+op+" "+vals[0])
	}
	var ors []string
	for i := 0; i <= len(s.Sort); i++ {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, sortColumn(s.Sort[j].Field)+" = "+vals[j])
		}
		if i == len(s.Sort) {
			ands = append(ands, "id > "+arg(s.After.ID))
		} else {
			op := ">"
			if s.Sort[i].Desc {
				op = "<"
			}
			ands = append(ands, sortColumn(s.Sort[i].Field)+" "+op+" "+vals[i])
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return append(conds, "("+strings.Join(ors, " OR ")+")")
}
