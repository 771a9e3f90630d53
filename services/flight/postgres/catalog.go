package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/services/flight"
)

// The adapters implement the domain's ports.
var (
	_ flight.Catalog   = (*Catalog)(nil)
	_ flight.Inventory = (*Inventory)(nil)
)

// Catalog stores cities, airports, airplanes and flights.
type Catalog struct {
	pool     *pgxpool.Pool
	announce Announce
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

// delete runs deleteSQL for id, explaining a foreign-key refusal with countSQL: the rows of
// by that still point at it.
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
