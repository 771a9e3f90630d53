package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/services/flight/storetest"
	"github.com/flightbook/flightbook/testenv"
)

// TestStore runs the stores' contract against PostgreSQL.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Stores {
		ctx := context.Background()
		pool, err := postgres.Open(ctx, testenv.Postgres(t), 20, discardLog())
		testenv.Fatal(t, "open", err)
		t.Cleanup(pool.Close)
		cat := postgres.NewCatalog(pool)
		return storetest.Stores{
			Catalog:    cat,
			Inventory:  postgres.NewInventory(pool),
			Announcing: func(hook storetest.Announce) storetest.Announcer { return cat.WithAnnounce(hook) },
			Outbox: func(ctx context.Context) (n int, err error) {
				err = pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
				return n, err
			},
			AgeAnnouncements: func(ctx context.Context, d time.Duration) error {
				_, err := pool.Exec(ctx, `UPDATE flights SET announced_at = announced_at - make_interval(secs => $1)`, d.Seconds())
				return err
			},
			TakeSeat: func(ctx context.Context, flightID int64) error {
				_, err := pool.Exec(ctx, `UPDATE flights SET available_seats = available_seats - 1, held_seats = held_seats + 1 WHERE id = $1`, flightID)
				return err
			},
		}
	})
}
