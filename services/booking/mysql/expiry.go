package mysql

import (
	"context"
	"fmt"
	"time"
)

// ClaimExpired returns up to limit ids of bookings due to expire: HELD past their hold's
// expiry and PENDING past the pending timeout, oldest first. The rows are read with
// FOR UPDATE SKIP LOCKED, so schedulers on several replicas pick different rows rather than
// queueing behind one another, and rows locked by a payment or a cancel are skipped (they
// are re-checked on the next round if still due). booking.ExpireDue then expires each in a
// transaction of its own that locks and re-checks it.
func (s *Store) ClaimExpired(ctx context.Context, limit int) ([]string, error) {
	now := s.Now()
	var ids []string
	err := s.inTx(ctx, func(t *tx) error {
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
			rows, err := t.query(ctx, q.sql, q.arg, limit-len(ids))
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
