package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
)

// HoldsPage returns up to q.Limit holds in booking id order, and the cursor of the next page
// ("" on the last page). Keyset paging on the booking id (the primary key) keeps every page
// as cheap as the first, however many holds a flight has, and a hold recorded while an
// operator pages through is either on a later page or missed, never seen twice.
func (inv *Inventory) HoldsPage(ctx context.Context, q flight.HoldsQuery) ([]flight.Hold, string, error) {
	where, args := ` WHERE true`, []any{}
	if q.FlightID != 0 {
		args = append(args, q.FlightID)
		where += fmt.Sprintf(` AND flight_id = $%d`, len(args))
	}
	if q.After != "" {
		if _, err := uuid.Parse(q.After); err != nil {
			return nil, "", fmt.Errorf("holds page: cursor %q is not a booking id", q.After)
		}
		args = append(args, q.After)
		where += fmt.Sprintf(` AND booking_id > $%d::uuid`, len(args))
	}
	args = append(args, q.Limit+1)
	rows, err := inv.pool.Query(ctx, `SELECT `+holdColumns+` FROM holds`+where+
		fmt.Sprintf(` ORDER BY booking_id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, "", fmt.Errorf("holds page: %w", err)
	}
	hs, err := pgx.CollectRows(rows, scanHold)
	if err != nil {
		return nil, "", fmt.Errorf("holds page: %w", err)
	}
	next := ""
	if len(hs) > q.Limit {
		hs = hs[:q.Limit]
		next = hs[len(hs)-1].BookingID
	}
	return hs, next, nil
}
