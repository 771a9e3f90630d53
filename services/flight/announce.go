package flight

import (
	"context"
	"log/slog"
	"time"
)

// announceBatch is how many flights one AnnounceDue call announces.
const announceBatch = 500

// RunAnnouncer calls announceDue (a catalogue's AnnounceDue) every interval, in batches, until
// ctx ends; the first run is at once, so flights created before announcements existed are
// announced at start-up. A failed run is logged and retried at the next tick: the flights
// stay due, so nothing is lost by waiting.
func RunAnnouncer(ctx context.Context, announceDue func(ctx context.Context, olderThan time.Duration, limit int) (int, error),
	interval, olderThan time.Duration, log *slog.Logger) error {
	for {
		total := 0
		for {
			n, err := announceDue(ctx, olderThan, announceBatch)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				log.Error("catalogue announcement failed", "err", err)
				break
			}
			total += n
			if n < announceBatch {
				break
			}
		}
		if total > 0 {
			log.Info("catalogue announced", "flights", total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
