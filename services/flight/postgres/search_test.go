package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/testenv"
)

// TestSearchPlan100k loads 100,000 flights and checks that every kind of search reads an
// index, not the whole table, both with the values known (the custom plan of the first
// executions) and as the generic plan PostgreSQL may switch a prepared statement to after
// five runs. Run with -v to see the EXPLAIN ANALYZE output.
func TestSearchPlan100k(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100k flights")
	}
	t.Parallel()
	ctx := context.Background()
	pool, err := Open(ctx, testenv.Postgres(t), 4, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Fatal(t, "open", err)
	t.Cleanup(pool.Close)

	now := time.Now().UTC().Truncate(time.Second)
	// Ten airports give 90 routes of about 1,100 flights each, spread over the last 10 days
	// and the next 80, with fares from 1,000.00 to 5,000.00, every 50th flight cancelled and
	// the seats left anywhere from none to all 180.
	start := time.Now()
	_, err = pool.Exec(ctx, `
		INSERT INTO cities (name, country) VALUES ('Somewhere', 'IN');
		INSERT INTO airports (code, name, city_id)
			SELECT code, code || ' airport', 1
			FROM unnest(ARRAY['DEL','BOM','BLR','MAA','CCU','HYD','PNQ','GOI','COK','AMD']) AS code;
		INSERT INTO airplanes (model, capacity) VALUES ('A320', 180);`)
	testenv.Fatal(t, "load catalogue", err)
	_, err = pool.Exec(ctx, `
		WITH ap AS (SELECT array_agg(code ORDER BY code) AS codes FROM airports),
		     g AS (SELECT i, i % 10 AS dep, (i % 10 + 1 + (i / 10) % 9) % 10 AS arr,
		                  (i * 13) % 181 AS available FROM generate_series(1, 100000) AS i)
		INSERT INTO flights (flight_number, airplane_id, departure_airport, arrival_airport,
		                     departure_time, arrival_time, fare_amount, currency, status,
		                     total_seats, available_seats, sold_seats)
		SELECT 'FB' || (i % 9000 + 100), 1, ap.codes[dep + 1], ap.codes[arr + 1],
		       $1::timestamptz - interval '10 days' + (i * interval '1 minute') * 90 * 1440 / 100000,
		       $1::timestamptz - interval '10 days' + (i * interval '1 minute') * 90 * 1440 / 100000 + interval '2 hours',
		       100000 + (i * 7919) % 400001, 'INR',
		       CASE WHEN i % 50 = 0 THEN 'cancelled' ELSE 'scheduled' END,
		       180, available, 180 - available
		FROM g, ap`, now)
	testenv.Fatal(t, "load flights", err)
	_, err = pool.Exec(ctx, `ANALYZE`)
	testenv.Fatal(t, "analyze", err)
	t.Logf("loaded 100000 flights in %v", time.Since(start).Round(time.Millisecond))

	day := now.Truncate(24*time.Hour).AddDate(0, 0, 20)
	searches := []struct {
		name  string
		query string
	}{
		{"typical", "from=DEL&to=BOM&date=" + day.Format(time.DateOnly) + "&travellers=2&sort=price,-departure_time&limit=20"},
		{"route by price, any day", "from=DEL&to=BOM&travellers=2&sort=price&limit=20"},
		{"route by departure", "from=DEL&to=BOM&travellers=4&limit=20"},
		{"seed parameters", "trips=DEL-BOM&price=200000-300000&sort=price_ASC,departureTime_DESC&limit=20"},
		{"one day, every route", "date=" + day.Format(time.DateOnly) + "&limit=20"},
		{"cheapest anywhere", "sort=price&limit=20"},
		{"cheapest from one airport", "from=DEL&sort=price&limit=20"},
	}
	cat := NewCatalog(pool)
	for _, tc := range searches {
		s := parse(t, tc.query)
		// The first page, and a deep one: up to ten pages in, following the cursors.
		variants := []struct {
			name string
			s    flight.Search
		}{{tc.name, s}}
		after, pages := s, 0
		for ; pages < 10; pages++ {
			page, next, err := cat.Search(ctx, after, now)
			testenv.Fatal(t, tc.name, err)
			if len(page) == 0 {
				t.Fatalf("%s: no flights; the data should match", tc.name)
			}
			if next == "" {
				break
			}
			after = parse(t, tc.query+"&cursor="+next)
		}
		if after.After != nil {
			variants = append(variants, struct {
				name string
				s    flight.Search
			}{fmt.Sprintf("%s, page %d", tc.name, pages+1), after})
		}
		for _, v := range variants {
			sql, args := searchQuery(v.s, now)
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				plan := explain(t, pool, mode, sql, args)
				if mode == "force_custom_plan" || v.name == "typical" {
					t.Logf("%s (plan_cache_mode=%s): %s\n%s", v.name, mode, tc.query, plan)
				}
				if strings.Contains(plan, "Seq Scan on flights") {
					t.Errorf("%s (plan_cache_mode=%s) reads the whole table:\n%s", v.name, mode, plan)
				}
			}
		}
	}
}

func parse(t *testing.T, query string) flight.Search {
	t.Helper()
	q, err := url.ParseQuery(query)
	testenv.Fatal(t, "parse query", err)
	s, err := flight.ParseSearch(q)
	testenv.Fatal(t, "parse search "+query, err)
	return s
}

// explain returns EXPLAIN ANALYZE of sql with args, as a prepared statement under the given
// plan_cache_mode: "force_custom_plan" plans with the values, as the first runs of a
// statement are; "force_generic_plan" plans without them, as PostgreSQL may choose for a
// prepared statement's later runs.
func explain(t *testing.T, pool *pgxpool.Pool, mode, sql string, args []any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	testenv.Fatal(t, "acquire", err)
	defer conn.Release()
	lits := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			lits[i] = "'" + v.UTC().Format(time.RFC3339Nano) + "'::timestamptz"
		case string:
			lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			lits[i] = fmt.Sprint(v)
		}
	}
	_, err = conn.Exec(ctx, "SET plan_cache_mode = "+mode+"; PREPARE search AS "+sql)
	testenv.Fatal(t, "prepare", err)
	defer conn.Exec(ctx, "DEALLOCATE search; RESET plan_cache_mode")
	rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE search("+strings.Join(lits, ", ")+")")
	testenv.Fatal(t, "explain", err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.Fatal(t, "explain", err)
	return strings.Join(lines, "\n")
}
