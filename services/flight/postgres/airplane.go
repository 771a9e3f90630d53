package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

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
// flight that uses it is refused, since those seats may already be sold. It locks the
// airplane before it looks at the flights, so a CreateFlight on this airplane (which reads
// it FOR SHARE) cannot slip in between the check and the update.
func (c *Catalog) UpdateAirplane(ctx context.Context, in flight.Airplane) (flight.Airplane, error) {
	var out flight.Airplane
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM airplanes WHERE id = $1 FOR UPDATE`, in.ID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("airplane", in.ID)
		} else if err != nil {
			return fmt.Errorf("airplane %d: %w", in.ID, err)
		}
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
