package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

// Catalog stores cities, airports, airplanes and flights.
type Catalog struct {
	pool *pgxpool.Pool
}

// NewCatalog returns the catalogue stored in pool.
func NewCatalog(pool *pgxpool.Pool) *Catalog { return &Catalog{pool: pool} }

// Ping checks the database answers; it backs /readyz.
func (c *Catalog) Ping(ctx context.Context) error { return c.pool.Ping(ctx) }

// notFound wraps flight.ErrNotFound with what was looked for.
func notFound(what string, id any) error {
	return fmt.Errorf("%s %v: %w", what, id, flight.ErrNotFound)
}

// inUse explains a foreign-key refusal to delete: which rows still point at the target.
func (c *Catalog) inUse(ctx context.Context, what string, id any, countSQL, by string) error {
	var n int
	if err := c.pool.QueryRow(ctx, countSQL, id).Scan(&n); err != nil {
		return fmt.Errorf("%s %v is still in use: %w", what, id, flight.ErrInUse)
	}
	if n == 1 {
		by = strings.TrimSuffix(by, "s")
	}
	return fmt.Errorf("%s %v is used by %d %s; delete or change those first: %w", what, id, n, by, flight.ErrInUse)
}

// ---- cities

const cityColumns = `id, name, country, created_at, updated_at`

func scanCity(row pgx.CollectableRow) (flight.City, error) {
	var c flight.City
	err := row.Scan(&c.ID, &c.Name, &c.Country, &c.CreatedAt, &c.UpdatedAt)
	return c, err
}

func oneCity(rows pgx.Rows, err error, id any) (flight.City, error) {
	if err != nil {
		return flight.City{}, fmt.Errorf("city %v: %w", id, err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanCity)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, notFound("city", id)
	}
	if pgCode(err) == "23505" {
		return c, fmt.Errorf("a city with that name and country already exists: %w", flight.ErrConflict)
	}
	if err != nil {
		return c, fmt.Errorf("city %v: %w", id, err)
	}
	return c, nil
}

// CreateCity adds a city.
func (c *Catalog) CreateCity(ctx context.Context, in flight.City) (flight.City, error) {
	rows, err := c.pool.Query(ctx, `INSERT INTO cities (name, country) VALUES ($1, $2) RETURNING `+cityColumns, strings.TrimSpace(in.Name), strings.TrimSpace(in.Country))
	return oneCity(rows, err, in.Name)
}

// City returns one city.
func (c *Catalog) City(ctx context.Context, id int64) (flight.City, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+cityColumns+` FROM cities WHERE id = $1`, id)
	return oneCity(rows, err, id)
}

// Cities lists every city by name.
func (c *Catalog) Cities(ctx context.Context) ([]flight.City, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+cityColumns+` FROM cities ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("list cities: %w", err)
	}
	return pgx.CollectRows(rows, scanCity)
}

// UpdateCity replaces a city's name and country.
func (c *Catalog) UpdateCity(ctx context.Context, in flight.City) (flight.City, error) {
	rows, err := c.pool.Query(ctx, `UPDATE cities SET name = $2, country = $3, updated_at = now() WHERE id = $1 RETURNING `+cityColumns, in.ID, strings.TrimSpace(in.Name), strings.TrimSpace(in.Country))
	return oneCity(rows, err, in.ID)
}

// DeleteCity removes a city no airport is in.
func (c *Catalog) DeleteCity(ctx context.Context, id int64) error {
	return c.delete(ctx, "city", id, `DELETE FROM cities WHERE id = $1`, `SELECT count(*) FROM airports WHERE city_id = $1`, "airports")
}

func (c *Catalog) delete(ctx context.Context, what string, id any, deleteSQL, countSQL, by string) error {
	tag, err := c.pool.Exec(ctx, deleteSQL, id)
	if pgCode(err) == "23503" {
		return c.inUse(ctx, what, id, countSQL, by)
	}
	if err != nil {
		return fmt.Errorf("delete %s %v: %w", what, id, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(what, id)
	}
	return nil
}

// ---- airports

const airportColumns = `code, name, city_id, address, created_at, updated_at`

func scanAirport(row pgx.CollectableRow) (flight.Airport, error) {
	var a flight.Airport
	err := row.Scan(&a.Code, &a.Name, &a.CityID, &a.Address, &a.CreatedAt, &a.UpdatedAt)
	return a, err
}

func oneAirport(rows pgx.Rows, err error, code string) (flight.Airport, error) {
	if err != nil {
		return flight.Airport{}, fmt.Errorf("airport %s: %w", code, err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, scanAirport)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return a, notFound("airport", code)
	case pgCode(err) == "23505":
		return a, fmt.Errorf("airport %s already exists: %w", code, flight.ErrConflict)
	case pgCode(err) == "23503":
		return a, validation.Field("city_id", "no such city")
	case err != nil:
		return a, fmt.Errorf("airport %s: %w", code, err)
	}
	return a, nil
}

// CreateAirport adds an airport.
func (c *Catalog) CreateAirport(ctx context.Context, in flight.Airport) (flight.Airport, error) {
	rows, err := c.pool.Query(ctx, `INSERT INTO airports (code, name, city_id, address) VALUES ($1, $2, $3, $4) RETURNING `+airportColumns,
		in.Code, strings.TrimSpace(in.Name), in.CityID, in.Address)
	return oneAirport(rows, err, in.Code)
}

// Airport returns one airport by IATA code.
func (c *Catalog) Airport(ctx context.Context, code string) (flight.Airport, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+airportColumns+` FROM airports WHERE code = $1`, code)
	return oneAirport(rows, err, code)
}

// Airports lists every airport by code.
func (c *Catalog) Airports(ctx context.Context) ([]flight.Airport, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+airportColumns+` FROM airports ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("list airports: %w", err)
	}
	return pgx.CollectRows(rows, scanAirport)
}

// UpdateAirport replaces an airport's name, city and address; the code is its identity.
func (c *Catalog) UpdateAirport(ctx context.Context, in flight.Airport) (flight.Airport, error) {
	rows, err := c.pool.Query(ctx, `UPDATE airports SET name = $2, city_id = $3, address = $4, updated_at = now() WHERE code = $1 RETURNING `+airportColumns,
		in.Code, strings.TrimSpace(in.Name), in.CityID, in.Address)
	return oneAirport(rows, err, in.Code)
}

// DeleteAirport removes an airport no flight uses.
func (c *Catalog) DeleteAirport(ctx context.Context, code string) error {
	return c.delete(ctx, "airport", code, `DELETE FROM airports WHERE code = $1`,
		`SELECT count(*) FROM flights WHERE departure_airport = $1 OR arrival_airport = $1`, "flights")
}

// ---- airplanes

const airplaneColumns = `id, model, capacity, cabins, created_at, updated_at`

func scanAirplane(row pgx.CollectableRow) (flight.Airplane, error) {
	var a flight.Airplane
	var cabins []byte
	if err := row.Scan(&a.ID, &a.Model, &a.Capacity, &cabins, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return a, err
	}
	a.Cabins = []flight.Cabin{}
	if err := json.Unmarshal(cabins, &a.Cabins); err != nil {
		return a, fmt.Errorf("airplane %d cabins: %w", a.ID, err)
	}
	return a, nil
}

func oneAirplane(rows pgx.Rows, err error, id any) (flight.Airplane, error) {
	if err != nil {
		return flight.Airplane{}, fmt.Errorf("airplane %v: %w", id, err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, scanAirplane)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, notFound("airplane", id)
	}
	if err != nil {
		return a, fmt.Errorf("airplane %v: %w", id, err)
	}
	return a, nil
}

func cabinsJSON(cs []flight.Cabin) []byte {
	if cs == nil {
		cs = []flight.Cabin{}
	}
	b, _ := json.Marshal(cs)
	return b
}

// CreateAirplane adds an airplane.
func (c *Catalog) CreateAirplane(ctx context.Context, in flight.Airplane) (flight.Airplane, error) {
	rows, err := c.pool.Query(ctx, `INSERT INTO airplanes (model, capacity, cabins) VALUES ($1, $2, $3) RETURNING `+airplaneColumns,
		strings.TrimSpace(in.Model), in.Capacity, cabinsJSON(in.Cabins))
	return oneAirplane(rows, err, in.Model)
}

// Airplane returns one airplane.
func (c *Catalog) Airplane(ctx context.Context, id int64) (flight.Airplane, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+airplaneColumns+` FROM airplanes WHERE id = $1`, id)
	return oneAirplane(rows, err, id)
}

// Airplanes lists every airplane.
func (c *Catalog) Airplanes(ctx context.Context) ([]flight.Airplane, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+airplaneColumns+` FROM airplanes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list airplanes: %w", err)
	}
	return pgx.CollectRows(rows, scanAirplane)
}

// UpdateAirplane replaces an airplane's model and layout. Shrinking it below the seats of a
// flight that uses it is refused, since those seats may already be sold.
func (c *Catalog) UpdateAirplane(ctx context.Context, in flight.Airplane) (flight.Airplane, error) {
	var out flight.Airplane
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		var biggest int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(total_seats), 0) FROM flights WHERE airplane_id = $1`, in.ID).Scan(&biggest); err != nil {
			return fmt.Errorf("airplane %d flights: %w", in.ID, err)
		}
		if in.Capacity < biggest {
			return validation.Field("capacity", fmt.Sprintf("a flight on this airplane has %d seats; capacity cannot go below that", biggest))
		}
		rows, err := tx.Query(ctx, `UPDATE airplanes SET model = $2, capacity = $3, cabins = $4, updated_at = now() WHERE id = $1 RETURNING `+airplaneColumns,
			in.ID, strings.TrimSpace(in.Model), in.Capacity, cabinsJSON(in.Cabins))
		out, err = oneAirplane(rows, err, in.ID)
		return err
	})
	return out, err
}

// DeleteAirplane removes an airplane no flight uses.
func (c *Catalog) DeleteAirplane(ctx context.Context, id int64) error {
	return c.delete(ctx, "airplane", id, `DELETE FROM airplanes WHERE id = $1`, `SELECT count(*) FROM flights WHERE airplane_id = $1`, "flights")
}

// ---- flights

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
	if errors.Is(err, pgx.ErrNoRows) {
		return f, notFound("flight", id)
	}
	if err != nil {
		return f, fmt.Errorf("flight %v: %w", id, err)
	}
	return f, nil
}

// CreateFlight schedules a flight. The airplane and airports must exist, and the seats fit
// the airplane; every problem is reported together, by field.
func (c *Catalog) CreateFlight(ctx context.Context, in flight.NewFlight) (flight.Flight, error) {
	var v validation.Errors
	capacity := 0
	if in.AirplaneID > 0 {
		err := c.pool.QueryRow(ctx, `SELECT capacity FROM airplanes WHERE id = $1`, in.AirplaneID).Scan(&capacity)
		if errors.Is(err, pgx.ErrNoRows) {
			v.Add("airplane_id", fmt.Sprintf("no airplane with id %d", in.AirplaneID))
		} else if err != nil {
			return flight.Flight{}, fmt.Errorf("create flight: airplane: %w", err)
		}
	}
	for _, ap := range []struct{ code, field string }{{in.DepartureAirport, "departure_airport"}, {in.ArrivalAirport, "arrival_airport"}} {
		if ap.code == "" {
			continue
		}
		var one int
		err := c.pool.QueryRow(ctx, `SELECT 1 FROM airports WHERE code = $1`, ap.code).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			v.Add(ap.field, fmt.Sprintf("no airport with code %s", ap.code))
		} else if err != nil {
			return flight.Flight{}, fmt.Errorf("create flight: airport: %w", err)
		}
	}
	if err := in.Validate(capacity); err != nil {
		fe, _ := validation.As(err)
		v = append(fe, v...)
	}
	if err := v.Err(); err != nil {
		return flight.Flight{}, err
	}
	seats := capacity
	if in.Seats != nil {
		seats = *in.Seats
	}
	rows, err := c.pool.Query(ctx, `
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport, departure_time, arrival_time,
		                     fare_amount, currency, boarding_gate, total_seats, available_seats)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
		RETURNING `+flightColumns,
		in.FlightNumber, in.AirplaneID, in.DepartureAirport, in.ArrivalAirport, in.DepartureTime.UTC(), in.ArrivalTime.UTC(),
		in.FareAmount, in.Currency, in.BoardingGate, seats)
	return oneFlight(rows, err, in.FlightNumber)
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
		out, err = oneFlight(rows, err, id)
		return err
	})
	return out, err
}

// Cancel cancels a flight: it disappears from search and refuses new holds. Seats already
// held or sold stay recorded until the bookings are released.
func (c *Catalog) Cancel(ctx context.Context, id int64) (flight.Flight, error) {
	rows, err := c.pool.Query(ctx, `UPDATE flights SET status = 'cancelled', version = version + 1, updated_at = now()
		WHERE id = $1 RETURNING `+flightColumns, id)
	return oneFlight(rows, err, id)
}
