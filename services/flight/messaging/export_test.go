package messaging

import (
	"context"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
)

// Pending reports how many holds wait for flightID's next batch, and whether a batch of it is
// running, so tests can line calls up into one batch without sleeping.
func (h *Handlers) Pending(flightID int64) (queued int, busy bool) {
	return h.holds.Pending(flightID)
}

// HoldAlone handles a hold the way Hold did before batching: one transaction per delivery.
func (h *Handlers) HoldAlone(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatHoldRequested](d)
	if err != nil {
		return err
	}
	return h.holdOne(ctx, d, ev)
}

// HoldTogether decides ds as one batch, in one transaction, without the lone retry Hold falls
// back to when a batch fails.
func (h *Handlers) HoldTogether(ctx context.Context, ds []consumer.Delivery) error {
	calls := make([]holdCall, len(ds))
	for i, d := range ds {
		ev, err := decode[events.SeatHoldRequested](d)
		if err != nil {
			return err
		}
		calls[i] = holdCall{d: d, ev: ev}
	}
	return h.holdBatch(ctx, calls)
}

// PendingCommands is Pending for flightID's batch of releases and confirms.
func (h *Handlers) PendingCommands(flightID int64) (queued int, busy bool) {
	return h.commands.Pending(flightID)
}
