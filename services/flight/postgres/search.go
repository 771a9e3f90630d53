package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/services/flight"
)

// Search returns one page of scheduled, future flights matching s, and the cursor of the next
// page ("" on the last page). Order is s.Sort then id, so pages never overlap or skip.
func (c *Catalog) Search(ctx context.Context, s flight.Search, now time.Time) ([]flight.Flight, string, error) {
	sql, args := searchQuery(s, now)
	rows, err := c.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("search flights: %w", err)
	}
	fs, err := pgx.CollectRows(rows, scanFlight)
	if err != nil {
		return nil, "", fmt.Errorf("search flights: %w", err)
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

// searchQuery builds the SQL of a search and its arguments. It asks for one row more than a
// page, so Search knows whether another page follows without a count.
//
// The route's equality filters and the first sort key line up with the indexes
// flights_route_departure and flights_route_fare (departure_airport, arrival_airport, key, id),
// so the planner walks the index in the requested order and stops after limit+1 rows instead
// of sorting every flight on the route.
func searchQuery(s flight.Search, now time.Time) (string, []any) {
	where := []string{"status = 'scheduled'", "departure_time > $1", "available_seats >= $2"}
	args := []any{now, s.Travellers}
	arg := func(v any) string {
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
//	(k1 > v1) OR (k1 = v1 AND k2 < v2) OR ... OR (all equal AND id > last id)
//
// A row comparison (k1, k2, id) > (v1, v2, id) would be shorter but is only right when every
// key runs the same way. The disjunction alone cannot bound an index scan, so the first
// key's bound (k1 >= v1, or <= when descending) comes as a separate condition: it is implied
// by the disjunction and lets a deep page start its index scan at the cursor instead of
// reading and discarding every earlier row.
func keyset(s flight.Search, arg func(any) string) []string {
	vals := make([]string, len(s.Sort))
	for i, k := range s.Sort {
		if k.Field == "price" {
			vals[i] = arg(s.After.Values[i])
		} else {
			vals[i] = arg(time.UnixMicro(s.After.Values[i]).UTC())
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
