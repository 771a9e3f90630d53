package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// TestInTx checks that a transaction aborted for a serialization failure or a deadlock runs
// again and what it wrote on the failed attempt is gone, and that any other error ends it
// at once, rolled back.
func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 4, discardLog())
	testenv.Fatal(t, "open", err)
	t.Cleanup(pool.Close)

	tests := []struct {
		name      string
		failures  []error // returned by the first attempts, in order
		wantCalls int
		wantErr   bool
		wantRows  int
	}{
		{"commits", nil, 1, false, 1},
		{"retries a serialization failure", []error{&pgconn.PgError{Code: "40001"}}, 2, false, 1},
		{"retries deadlocks", []error{&pgconn.PgError{Code: "40P01"}, &pgconn.PgError{Code: "40P01"}}, 3, false, 1},
		{"gives up after five attempts", []error{
			&pgconn.PgError{Code: "40001"}, &pgconn.PgError{Code: "40001"}, &pgconn.PgError{Code: "40001"},
			&pgconn.PgError{Code: "40001"}, &pgconn.PgError{Code: "40001"},
		}, 5, true, 0},
		{"does not retry other errors", []error{errors.New("boom")}, 1, true, 0},
		{"does not retry a constraint violation", []error{&pgconn.PgError{Code: "23505"}}, 1, true, 0},
	}
	for i, tc := range tests {
		country := "T" + string(rune('A'+i))
		calls := 0
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			calls++
			if _, err := tx.Exec(ctx, `INSERT INTO cities (name, country) VALUES ('x', $1)`, country); err != nil {
				return err
			}
			if calls <= len(tc.failures) {
				return tc.failures[calls-1]
			}
			return nil
		})
		if (err != nil) != tc.wantErr || calls != tc.wantCalls {
			t.Errorf("%s: err %v after %d calls, want error %v after %d", tc.name, err, calls, tc.wantErr, tc.wantCalls)
		}
		var rows int
		testenv.Fatal(t, "count", pool.QueryRow(ctx, `SELECT count(*) FROM cities WHERE country = $1`, country).Scan(&rows))
		if rows != tc.wantRows {
			t.Errorf("%s: %d rows committed, want %d", tc.name, rows, tc.wantRows)
		}
	}
}
