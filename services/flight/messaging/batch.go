package messaging

import (
	"context"
	"fmt"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// maxHoldBatch bounds how many holds one transaction decides: enough that a hot flight's
// queue is drained in one or two commits, few enough that the transaction stays short and its
// statements' arrays small.
const maxHoldBatch = 100

// holdPreparer is a Tx that can read what a HoldBatch needs (its flights' locks, its
// bookings' recorded outcomes) in the round trip of the inbox claim before it, which saves
// the batch a round trip. postgres.InventoryTx is one.
type holdPreparer interface {
	PrepareHolds(reqs []flight.HoldRequest)
}

// holdCall is one Hold delivery handed to the flight's group commit (groupcommit.Batcher,
// keyed by flight: every hold on a flight locks that flight's row, so the holds queued behind
// a running batch are decided together, with one lock of the row and one commit for the lot).
type holdCall struct {
	d  consumer.Delivery
	ev events.SeatHoldRequested
}

// holdBatched hands one decoded hold to the batcher and waits for its batch.
//
// When a batch of several fails, each of its callers runs its hold again alone rather than
// returning the batch's error. The error may belong to one message (an id the inbox refuses,
// a reply that cannot be encoded); returned to all, it would send the innocent messages back
// to the broker together with the guilty one, where they could well meet in a batch again
// and end up dead-lettered with it. Alone, the guilty message fails on its own and the others
// go through; and since the failed batch rolled back, nothing of it has to be undone. A
// failure that is not one message's (the database down) fails the lone runs too, so every
// caller still gets an error and the router redelivers.
func (h *Handlers) holdBatched(ctx context.Context, d consumer.Delivery, ev events.SeatHoldRequested) error {
	shared, err := h.holds.Do(ctx, ev.FlightID, holdCall{d: d, ev: ev})
	if err != nil && shared && ctx.Err() == nil {
		h.log.Warn("hold batch failed; holding alone", "msg_id", d.ID, "flight_id", ev.FlightID, "error", err)
		return h.holdOne(ctx, d, ev)
	}
	if err != nil {
		// If a batch had taken the hold when ctx ended, it may still commit it; the
		// redelivery that follows this error then finds the message in the inbox and changes
		// nothing.
		return fmt.Errorf("%s %s: %w", RouteHold, d.ID, err)
	}
	return nil
}

// holdBatch decides calls, all for one flight, in one transaction: it claims each message in
// the inbox, holds seats for those claimed for the first time with one HoldBatch (one lock
// of the flight row), queues one reply per such message in the outbox, and commits. Messages
// already processed, including a second delivery of one in the same batch, are claimed
// without effect and get no second reply. If it fails, nothing of the batch is written.
func (h *Handlers) holdBatch(ctx context.Context, calls []holdCall) error {
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = c.d.ID
	}
	var (
		fresh []holdCall // claimed for the first time, in arrival order
		held  []flight.Hold
	)
	all := make([]flight.HoldRequest, len(calls))
	for i, c := range calls {
		all[i] = flight.HoldRequest{BookingID: c.ev.BookingID, FlightID: c.ev.FlightID, Seats: c.ev.Seats}
	}
	err := h.inTx(ctx, func(tx Tx) error {
		if p, ok := tx.(holdPreparer); ok {
			p.PrepareHolds(all)
		}
		first, err := tx.ClaimAll(ctx, events.ServiceFlight+"."+RouteHold, ids)
		if err != nil {
			return err
		}
		// Arrival order, not id order, decides who gets the last seats.
		fresh, held = fresh[:0], nil
		reqs := make([]flight.HoldRequest, 0, len(calls))
		for i, c := range calls {
			if first[i] {
				fresh = append(fresh, c)
				reqs = append(reqs, all[i])
			}
		}
		if len(reqs) == 0 {
			return nil
		}
		hs, err := tx.HoldBatch(ctx, reqs)
		if err != nil {
			return err
		}
		msgs := make([]outbox.Message, len(hs))
		for i, res := range hs {
			reply := holdReply(fresh[i].ev, res)
			m, err := h.topo.Encode(reply)
			if err != nil {
				return fmt.Errorf("encode %s for %s: %w", reply.EventType(), fresh[i].d.ID, err)
			}
			msgs[i] = outbox.Message(m)
		}
		if err := tx.Queue(ctx, msgs...); err != nil {
			return err
		}
		held = hs
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch of %d holds on flight %d: %w", len(calls), calls[0].ev.FlightID, err)
	}
	for i, res := range held {
		h.logHold(fresh[i].d, fresh[i].ev, res)
	}
	if len(held) > 0 {
		h.notify()
	}
	return nil
}
