package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

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
