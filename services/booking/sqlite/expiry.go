package sqlite

import (
	"context"
	"fmt"
)

// ClaimExpired returns up to limit ids of bookings due to expire: HELD past their hold's
// expiry and PENDING past the pending timeout, oldest first. booking.ExpireDue then expires
// each in a write transaction of its own that reads and re-checks it.
//
// It is a plain read, where MySQL claims with FOR UPDATE SKIP LOCKED: SQLite has no row locks
// to skip, and needs none. Writers run one at a time, so the expiry of a booking a payment
// or a cancel took meanwhile re-reads it and becomes a no-op, and a second scheduler on the
// same file (there is none in the dev mode) would at worst claim the same ids and find them
// expired already.
func (s *Store) ClaimExpired(ctx context.Context, limit int) ([]string, error) {
	now := s.Now()
	var ids []string
	// Two queries rather than one OR, so each seeks its own index.
	for _, q := range []struct{ sql, arg string }{
		{`SELECT id FROM bookings WHERE status = 'HELD' AND hold_expires_at <= ? ORDER BY hold_expires_at LIMIT ?`, text(now)},
		{`SELECT id FROM bookings WHERE status = 'PENDING' AND created_at <= ? ORDER BY created_at LIMIT ?`, text(now.Add(-s.rules.PendingTimeout))},
	} {
		if len(ids) >= limit {
			break
		}
		rows, err := s.db.QueryContext(ctx, q.sql, q.arg, limit-len(ids))
		if err != nil {
			return nil, fmt.Errorf("claim expired bookings: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("claim expired bookings: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("claim expired bookings: %w", err)
		}
	}
	return ids, nil
}
