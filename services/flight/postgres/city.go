package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
)

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
