package messaging

import (
	"context"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking"
)

// Shard is the reply batch queue a booking's replies go through.
func Shard(bookingID string) uint32 { return shard(bookingID) }

// Pending reports how many replies wait for shard's next batch, and whether a batch of it is
// running, so tests can line replies up into one batch without sleeping.
func (h *Handlers) Pending(shard uint32) (queued int, busy bool) { return h.replies.Pending(shard) }

// HeldTogether applies the SeatsHeld deliveries ds as one batch, in one transaction, without
// the lone retry a failed batch falls back to.
func (h *Handlers) HeldTogether(ctx context.Context, ds []consumer.Delivery) error {
	rs := make([]reply, len(ds))
	for i, d := range ds {
		ev, err := decode[events.SeatsHeld](d)
		if err != nil {
			return err
		}
		rs[i] = reply{route: RouteHeld, bookingID: ev.BookingID, d: d,
			in: booking.SeatsHeld{UnitPrice: ev.UnitPrice, Total: ev.Total, Currency: ev.Currency}}
	}
	return h.applyBatch(ctx, rs)
}
