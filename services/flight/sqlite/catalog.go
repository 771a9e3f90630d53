package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

// The adapters implement the domain's ports.
var (
	_ flight.Catalog   = (*Catalog)(nil)
	_ flight.Inventory = (*Inventory)(nil)
)

// Catalog stores cities, airports, airplanes and flights. It implements flight.Catalog.
type Catalog struct {
	db       *sql.DB
	announce Announce
}

// NewCatalog returns the catalogue stored in db, a database opened with Open.
func NewCatalog(db *sql.DB) *Catalog { return &Catalog{db: db} }

// Ping checks the database answers; it backs /readyz.
func (c *Catalog) Ping(ctx context.Context) error { return c.db.PingContext(ctx) }

// inUse explains a foreign-key refusal to delete: which rows still point at the target.
func (c *Catalog) inUse(ctx context.Context, what string, id any, countSQL, by string) error {
	var n int
	if err := c.db.QueryRowContext(ctx, countSQL, id).Scan(&n); err != nil {
		return fmt.Errorf("%s %v is still in use: %w", what, id, flight.ErrInUse)
	}
	if n == 1 {
		by = strings.TrimSuffix(by, "s")
	}
	return fmt.Errorf("%s %v is used by %d %s; delete or change those first: %w", what, id, n, by, flight.ErrInUse)
}

// delete runs deleteSQL for id, explaining a foreign-key refusal with countSQL: the rows of
// by that still point at it.
func (c *Catalog) delete(ctx context.Context, what string, id any, deleteSQL, countSQL, by string) error {
	res, err := c.db.ExecContext(ctx, deleteSQL, id)
	if isForeignKey(err) {
		return c.inUse(ctx, what, id, countSQL, by)
	}
	if err != nil {
		return fmt.Errorf("delete %s %v: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete %s %v: %w", what, id, err)
	} else if n == 0 {
		return notFound(what, id)
	}
	return nil
}

// Cities.

const cityColumns = `id, name, country, created_at, updated_at`

func oneCity(row scanner, id any) (flight.City, error) {
	var c flight.City
	err := row.Scan(&c.ID, &c.Name, &c.Country, tm(&c.CreatedAt), tm(&c.UpdatedAt))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return c, notFound("city", id)
	case isUnique(err):
		return c, fmt.Errorf("a city with that name and country already exists: %w", flight.ErrConflict)
	case err != nil:
		return c, fmt.Errorf("city %v: %w", id, err)
	}
	return c, nil
}

// CreateCity adds a city.
func (c *Catalog) CreateCity(ctx context.Context, in flight.City) (flight.City, error) {
	return oneCity(c.db.QueryRowContext(ctx, `INSERT INTO cities (name, country) VALUES ($1, $2) RETURNING `+cityColumns,
		strings.TrimSpace(in.Name), strings.TrimSpace(in.Country)), in.Name)
}

// City returns one city.
func (c *Catalog) City(ctx context.Context, id int64) (flight.City, error) {
	return oneCity(c.db.QueryRowContext(ctx, `SELECT `+cityColumns+` FROM cities WHERE id = $1`, id), id)
}

// Cities lists every city by name.
func (c *Catalog) Cities(ctx context.Context) ([]flight.City, error) {
	return list(ctx, c.db, "list cities", `SELECT `+cityColumns+` FROM cities ORDER BY name, id`, nil,
		func(r scanner) (flight.City, error) { return oneCity(r, "") })
}

// UpdateCity replaces a city's name and country.
func (c *Catalog) UpdateCity(ctx context.Context, in flight.City) (flight.City, error) {
	return oneCity(c.db.QueryRowContext(ctx, `UPDATE cities SET name = $2, country = $3, updated_at = `+nowSQL+` WHERE id = $1 RETURNING `+cityColumns,
		in.ID, strings.TrimSpace(in.Name), strings.TrimSpace(in.Country)), in.ID)
}

// DeleteCity removes a city no airport is in.
func (c *Catalog) DeleteCity(ctx context.Context, id int64) error {
	return c.delete(ctx, "city", id, `DELETE FROM cities WHERE id = $1`, `SELECT count(*) FROM airports WHERE city_id = $1`, "airports")
}

// Airports.

const airportColumns = `code, name, city_id, address, created_at, updated_at`

func oneAirport(row scanner, code string) (flight.Airport, error) {
	var a flight.Airport
	err := row.Scan(&a.Code, &a.Name, &a.CityID, &a.Address, tm(&a.CreatedAt), tm(&a.UpdatedAt))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return a, notFound("airport", code)
	case isUnique(err):
		return a, fmt.Errorf("airport %s already exists: %w", code, flight.ErrConflict)
	case isForeignKey(err):
		return a, validation.Field("city_id", "no such city")
	case err != nil:
		return a, fmt.Errorf("airport %s: %w", code, err)
	}
	return a, nil
}

// CreateAirport adds an airport.
func (c *Catalog) CreateAirport(ctx context.Context, in flight.Airport) (flight.Airport, error) {
	return oneAirport(c.db.QueryRowContext(ctx, `INSERT INTO airports (code, name, city_id, address) VALUES ($1, $2, $3, $4) RETURNING `+airportColumns,
		in.Code, strings.TrimSpace(in.Name), in.CityID, in.Address), in.Code)
}

// Airport returns one airport by IATA code.
func (c *Catalog) Airport(ctx context.Context, code string) (flight.Airport, error) {
	return oneAirport(c.db.QueryRowContext(ctx, `SELECT `+airportColumns+` FROM airports WHERE code = $1`, code), code)
}

// Airports lists every airport by code.
func (c *Catalog) Airports(ctx context.Context) ([]flight.Airport, error) {
	return list(ctx, c.db, "list airports", `SELECT `+airportColumns+` FROM airports ORDER BY code`, nil,
		func(r scanner) (flight.Airport, error) { return oneAirport(r, "") })
}

// UpdateAirport replaces an airport's name, city and address; the code is its identity.
func (c *Catalog) UpdateAirport(ctx context.Context, in flight.Airport) (flight.Airport, error) {
	return oneAirport(c.db.QueryRowContext(ctx, `UPDATE airports SET name = $2, city_id = $3, address = $4, updated_at = `+nowSQL+` WHERE code = $1 RETURNING `+airportColumns,
		in.Code, strings.TrimSpace(in.Name), in.CityID, in.Address), in.Code)
}

// DeleteAirport removes an airport no flight uses.
func (c *Catalog) DeleteAirport(ctx context.Context, code string) error {
	return c.delete(ctx, "airport", code, `DELETE FROM airports WHERE code = $1`,
		`SELECT count(*) FROM flights WHERE departure_airport = $1 OR arrival_airport = $1`, "flights")
}

// Airplanes.

const airplaneColumns = `id, model, capacity, cabins, created_at, updated_at`

func oneAirplane(row scanner, id any) (flight.Airplane, error) {
	var a flight.Airplane
	var cabins string
	err := row.Scan(&a.ID, &a.Model, &a.Capacity, &cabins, tm(&a.CreatedAt), tm(&a.UpdatedAt))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return a, notFound("airplane", id)
	case err != nil:
		return a, fmt.Errorf("airplane %v: %w", id, err)
	}
	a.Cabins = []flight.Cabin{}
	if err := json.Unmarshal([]byte(cabins), &a.Cabins); err != nil {
		return a, fmt.Errorf("airplane %d cabins: %w", a.ID, err)
	}
	return a, nil
}

func cabinsJSON(cs []flight.Cabin) string {
	if cs == nil {
		cs = []flight.Cabin{}
	}
	b, _ := json.Marshal(cs)
	return string(b)
}

// CreateAirplane adds an airplane.
func (c *Catalog) CreateAirplane(ctx context.Context, in flight.Airplane) (flight.Airplane, error) {
	return oneAirplane(c.db.QueryRowContext(ctx, `INSERT INTO airplanes (model, capacity, cabins) VALUES ($1, $2, $3) RETURNING `+airplaneColumns,
		strings.TrimSpace(in.Model), in.Capacity, cabinsJSON(in.Cabins)), in.Model)
}

// Airplane returns one airplane.
func (c *Catalog) Airplane(ctx context.Context, id int64) (flight.Airplane, error) {
	return oneAirplane(c.db.QueryRowContext(ctx, `SELECT `+airplaneColumns+` FROM airplanes WHERE id = $1`, id), id)
}

// Airplanes lists every airplane.
func (c *Catalog) Airplanes(ctx context.Context) ([]flight.Airplane, error) {
	return list(ctx, c.db, "list airplanes", `SELECT `+airplaneColumns+` FROM airplanes ORDER BY id`, nil,
		func(r scanner) (flight.Airplane, error) { return oneAirplane(r, "") })
}

// UpdateAirplane replaces an airplane's model and layout. Shrinking it below the seats of a
// flight that uses it is refused, since those seats may already be sold. The check and the
// update run in one transaction, which holds the write lock from its start (where package
// postgres locks the airplane row), so no flight on this airplane is created in between.
func (c *Catalog) UpdateAirplane(ctx context.Context, in flight.Airplane) (flight.Airplane, error) {
	var out flight.Airplane
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		var biggest sql.NullInt64
		var found int
		err := tx.QueryRowContext(ctx, `SELECT count(*), (SELECT max(total_seats) FROM flights WHERE airplane_id = $1) FROM airplanes WHERE id = $1`, in.ID).
			Scan(&found, &biggest)
		if err != nil {
			return fmt.Errorf("airplane %d: %w", in.ID, err)
		}
		if found == 0 {
			return notFound("airplane", in.ID)
		}
		if int64(in.Capacity) < biggest.Int64 {
			return validation.Field("capacity", fmt.Sprintf("a flight on this airplane has %d seats; capacity cannot go below that", biggest.Int64))
		}
		out, err = oneAirplane(tx.QueryRowContext(ctx, `UPDATE airplanes SET model = $2, capacity = $3, cabins = $4, updated_at = `+nowSQL+` WHERE id = $1 RETURNING `+airplaneColumns,
			in.ID, strings.TrimSpace(in.Model), in.Capacity, cabinsJSON(in.Cabins)), in.ID)
		return err
	})
	return out, err
}

// DeleteAirplane removes an airplane no flight uses.
func (c *Catalog) DeleteAirplane(ctx context.Context, id int64) error {
	return c.delete(ctx, "airplane", id, `DELETE FROM airplanes WHERE id = $1`, `SELECT count(*) FROM flights WHERE airplane_id = $1`, "flights")
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// list runs query and scans every row with scan.
func list[T any](ctx context.Context, q querier, what, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
