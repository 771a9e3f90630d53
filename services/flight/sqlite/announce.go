package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// Announce returns the catalogue event that states f, the flight as it now stands; the
// catalogue adds it to the outbox inside the transaction that changed f. It is the type of
// postgres.Announce, so messaging.Announce serves both; nil (the default) announces nothing.
type Announce func(ctx context.Context, f flight.Flight) (outbox.Message, error)

// WithAnnounce returns a copy of c that announces every flight it creates, reschedules or
// cancels with a.
func (c *Catalog) WithAnnounce(a Announce) *Catalog {
	out := *c
	out.announce = a
	return &out
}

// announced queues the announce hook's message for f in tx and records when, so AnnounceDue
// knows the stream holds f's current state.
func (c *Catalog) announced(ctx context.Context, tx *sql.Tx, f flight.Flight) error {
	if c.announce == nil {
		return nil
	}
	m, err := c.announce(ctx, f)
	if err != nil {
		return fmt.Errorf("flight %d: announce: %w", f.ID, err)
	}
	if err := outbox.AddSQLite(ctx, tx, m); err != nil {
		return fmt.Errorf("flight %d: announce: %w", f.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE flights SET announced_at = `+nowSQL+` WHERE id = $1`, f.ID); err != nil {
		return fmt.Errorf("flight %d: record announcement: %w", f.ID, err)
	}
	return nil
}

// AnnounceDue announces again, in one transaction, up to limit open flights that have not
// departed and were last announced more than olderThan ago or never, and returns how many.
// Run with olderThan well under the FLIGHT stream's maximum age, this keeps every open flight
// in the stream. Package postgres claims the rows with SKIP LOCKED so replicas share the
// work; here the transaction holds the write lock, and one process owns the file anyway.
func (c *Catalog) AnnounceDue(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if c.announce == nil {
		return 0, nil
	}
	n := 0
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		now := time.Now()
		// NULL sorts first in ascending order: never-announced flights go first.
		due, err := list(ctx, tx, "announce due", `
			SELECT `+flightColumns+` FROM flights
			WHERE status = 'scheduled' AND departure_time > $1
			  AND (announced_at IS NULL OR announced_at < $2)
			ORDER BY announced_at, id
			LIMIT $3`, []any{sqlTime(now), sqlTime(now.Add(-olderThan)), limit}, scanFlight)
		if err != nil {
			return err
		}
		for _, f := range due {
			if err := c.announced(ctx, tx, f); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}
