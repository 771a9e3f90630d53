package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/flight/sqlite"
	"github.com/flightbook/flightbook/services/flight/storetest"
	"github.com/flightbook/flightbook/testenv"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestStore runs the stores' contract against SQLite.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Stores {
		db, err := sqlite.Open(context.Background(), testenv.SQLite(t), discard)
		testenv.Fatal(t, "open", err)
		t.Cleanup(func() { db.Close() })
		cat := sqlite.NewCatalog(db)
		return storetest.Stores{
			Catalog:    cat,
			Inventory:  sqlite.NewInventory(db),
			Announcing: func(hook storetest.Announce) storetest.Announcer { return cat.WithAnnounce(hook) },
			Outbox: func(ctx context.Context) (n int, err error) {
				err = db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
				return n, err
			},
			AgeAnnouncements: func(ctx context.Context, d time.Duration) error {
				// Times are fixed-width UTC text (see the package comment): rewrite them
				// in the same form.
				_, err := db.ExecContext(ctx, `UPDATE flights SET announced_at = strftime('%Y-%m-%d %H:%M:%f000', announced_at, $1)
					WHERE announced_at IS NOT NULL`, fmt.Sprintf("-%f seconds", d.Seconds()))
				return err
			},
			TakeSeat: func(ctx context.Context, flightID int64) error {
				_, err := db.ExecContext(ctx, `UPDATE flights SET available_seats = available_seats - 1, held_seats = held_seats + 1 WHERE id = $1`, flightID)
				return err
			},
		}
	})
}
