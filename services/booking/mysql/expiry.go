package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ClaimExpired returns up to limit ids of bookings due to expire: HELD past their hold's
// expiry and PENDING past the pending timeout, oldest first. The rows are read with
// FOR UPDATE SKIP LOCKED, so schedulers on several replicas pick different rows rather than
// queueing behind one another, and rows locked by a payment or a cancel are skipped (they
// are re-checked on the next round if still due).
func (s *Store) ClaimExpired(ctx context.Context, limit int) ([]string, error) {
	now := s.Now()
	var ids []string
	err := InTx(ctx, s.db, func(tx *sql.Tx) error {
		ids = ids[:0]
		// Two queries rather than one OR, so each seeks its own index.
		for _, q := range []struct {
			sql string
			arg time.Time
		}{
			{`SELECT id FROM bookings WHERE status = 'HELD' AND hold_expires_at <= ?
			  ORDER BY hold_expires_at LIMIT ? FOR UPDATE SKIP LOCKED`, now},
			{`SELECT id FROM bookings WHERE status = 'PENDING' AND created_at <= ?
			  ORDER BY created_at LIMIT ? FOR UPDATE SKIP LOCKED`, now.Add(-s.rules.PendingTimeout)},
		} {
			if len(ids) >= limit {
				break
			}
			rows, err := tx.QueryContext(ctx, q.sql, q.arg, limit-len(ids))
			if err != nil {
				return fmt.Errorf("claim expired bookings: %w", err)
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("claim expired bookings: %w", err)
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("claim expired bookings: %w", err)
			}
		}
		return nil
	})
	return ids, err
}

// ExpireDue claims up to limit due bookings and expires each in its own transaction, which
// locks the row again and re-checks it: a payment or a cancel that took the row between the
// claim and the expiry wins, and the expiry becomes a no-op. It returns how many it claimed
// and how many it expired.
func (s *Store) ExpireDue(ctx context.Context, limit int) (claimed, expired int, err error) {
	ids, err := s.ClaimExpired(ctx, limit)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, id := range ids {
		c, err := s.Expire(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !c.Noop() {
			expired++
		}
	}
	return len(ids), expired, errors.Join(errs...)
}

// RunExpiry expires due bookings every interval, in batches of batch, until ctx ends. A full
// batch is followed at once by the next, so a backlog drains without waiting for ticks.
func (s *Store) RunExpiry(ctx context.Context, interval time.Duration, batch int, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			claimed, expired, err := s.ExpireDue(ctx, batch)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				log.Error("expire bookings", "error", err)
			}
			if expired > 0 {
				log.Info("bookings expired", "count", expired)
			}
			if claimed < batch || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
