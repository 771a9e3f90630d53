package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// Announce returns the catalogue event that states f, the flight as it now stands. The
// catalogue adds it to the outbox inside the transaction that changed f, so the event is
// published if and only if the change commits. The hook only says what to announce, not how
// to store it, so one hook (messaging.Announce) serves this package and package sqlite
// alike; nil (the default) announces nothing.
type Announce func(ctx context.Context, f flight.Flight) (outbox.Message, error)

// WithAnnounce returns a copy of c that announces every flight it creates, reschedules or
// cancels with a.
func (c *Catalog) WithAnnounce(a Announce) *Catalog {
	out := *c
	out.announce = a
	return &out
}

// announced runs the announce hook for f in tx and records when, so AnnounceDue knows the
// stream holds f's current state.
func (c *Catalog) announced(ctx context.Context, tx pgx.Tx, f flight.Flight) error {
	if c.announce == nil {
		return nil
	}
	m, err := c.announce(ctx, f)
	if err != nil {
		return fmt.Errorf("flight %d: announce: %w", f.ID, err)
	}
	if err := outbox.AddPostgres(ctx, tx, m); err != nil {
		return fmt.Errorf("flight %d: announce: %w", f.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE flights SET announced_at = now() WHERE id = $1`, f.ID); err != nil {
		return fmt.Errorf("flight %d: record announcement: %w", f.ID, err)
	}
	return nil
}

// AnnounceDue announces again, in one transaction, up to limit open flights that have not
// departed and were last announced more than olderThan ago or never, and returns how many.
// Run with olderThan well under the FLIGHT stream's maximum age, this keeps every open flight
// in the stream. Rows are claimed with SKIP LOCKED, so replicas running it at once share the
// work instead of queueing behind each other.
func (c *Catalog) AnnounceDue(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if c.announce == nil {
		return 0, nil
	}
	n := 0
	err := InTx(ctx, c.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT `+flightColumns+` FROM flights
			WHERE status = 'scheduled' AND departure_time > now()
			  AND (announced_at IS NULL OR announced_at < now() - make_interval(secs => $1))
			ORDER BY announced_at NULLS FIRST, id
			LIMIT $2
			FOR UPDATE SKIP LOCKED`, olderThan.Seconds(), limit)
		if err != nil {
			return fmt.Errorf("announce due: %w", err)
		}
		due, err := pgx.CollectRows(rows, scanFlight)
		if err != nil {
			return fmt.Errorf("announce due: %w", err)
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
