package booking

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ExpireDue claims up to limit due bookings and expires each in its own transaction, which
// locks the booking again and re-checks it: a payment or a cancel that took the booking
// between the claim and the expiry wins, and the expiry becomes a no-op. It returns how many
// it claimed and how many it expired.
func ExpireDue(ctx context.Context, s Store, limit int) (claimed, expired int, err error) {
	ids, err := s.ClaimExpired(ctx, limit)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, id := range ids {
		c, err := s.Apply(ctx, id, Expire{})
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

// RunExpiry is the expiry scheduler: it expires due bookings of s every interval, in batches
// of batch, until ctx ends. A full batch is followed at once by the next, so a backlog drains
// without waiting for ticks. An error is logged and the next round tries again.
func RunExpiry(ctx context.Context, s Store, interval time.Duration, batch int, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			claimed, expired, err := ExpireDue(ctx, s, batch)
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
