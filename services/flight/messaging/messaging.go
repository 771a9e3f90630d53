// Package messaging holds the flight service's saga handlers: it consumes the booking
// service's seat commands, runs the inventory operation, and writes the reply to the flight
// outbox, all in one PostgreSQL transaction.
//
// Doing the three in one transaction is what makes the handlers safe under redelivery and
// replay: either the seats changed, the reply is queued and the message id is in the inbox, or
// none of it happened and the redelivery starts afresh.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
)

// Route names; with the service name they form the durable and the DLQ subject.
const (
	RouteHold    = "seat-hold"
	RouteRelease = "seat-release"
	RouteConfirm = "seats-confirm"
)

// Handlers consumes SeatHoldRequested, SeatReleaseRequested and SeatsConfirmRequested.
type Handlers struct {
	pool   *pgxpool.Pool
	inv    *postgres.Inventory
	topo   events.Topology
	notify func() // wakes the outbox relay after a commit
	log    *slog.Logger
	holds  *holdBatcher
}

// New returns the flight saga handlers. notify is called after each commit that queued a reply.
func New(pool *pgxpool.Pool, inv *postgres.Inventory, topo events.Topology, notify func(), log *slog.Logger) *Handlers {
	if notify == nil {
		notify = func() {}
	}
	h := &Handlers{pool: pool, inv: inv, topo: topo, notify: notify, log: log}
	h.holds = newHoldBatcher(maxHoldBatch, h.holdBatch)
	return h
}

// Register adds the three routes to r.
func (h *Handlers) Register(r *consumer.Router) {
	stream := h.topo.StreamName(events.StreamBooking)
	r.Handle(RouteHold, stream, h.topo.Subject(events.SeatHoldRequested{}.Subject()), h.Hold)
	r.Handle(RouteRelease, stream, h.topo.Subject(events.SeatReleaseRequested{}.Subject()), h.Release)
	r.Handle(RouteConfirm, stream, h.topo.Subject(events.SeatsConfirmRequested{}.Subject()), h.Confirm)
}

// Handler returns the handler of a route by name, for replay and DLQ redrive.
func (h *Handlers) Handler(route string) (consumer.Handler, bool) {
	switch route {
	case RouteHold:
		return h.Hold, true
	case RouteRelease:
		return h.Release, true
	case RouteConfirm:
		return h.Confirm, true
	}
	return nil, false
}

// decode turns a delivery into its typed event. A message that cannot be decoded will never
// succeed, so it goes straight to the dead-letter subject.
func decode[E events.Event](d consumer.Delivery) (E, error) {
	ev, err := events.DecodeAs[E](d.Subject, d.Header, d.Data)
	if err != nil {
		return ev, consumer.Permanent(fmt.Errorf("decode %s: %w", d.ID, err))
	}
	return ev, nil
}

// handle runs fn in a transaction guarded by the inbox, queues the events fn returns in the
// outbox, commits, and wakes the relay.
func (h *Handlers) handle(ctx context.Context, route string, d consumer.Delivery, fn func(tx pgx.Tx) ([]events.Event, error)) error {
	queued := false
	err := postgres.InTx(ctx, h.pool, func(tx pgx.Tx) error {
		first, err := inbox.ClaimPostgres(ctx, tx, events.ServiceFlight+"."+route, d.ID)
		if err != nil {
			return err
		}
		if !first {
			return nil
		}
		evs, err := fn(tx)
		if err != nil {
			return err
		}
		msgs := make([]outbox.Message, 0, len(evs))
		for _, ev := range evs {
			m, err := h.topo.Encode(ev)
			if err != nil {
				return fmt.Errorf("encode %s: %w", ev.EventType(), err)
			}
			msgs = append(msgs, outbox.Message(m))
		}
		if err := outbox.AddPostgres(ctx, tx, msgs...); err != nil {
			return err
		}
		queued = len(msgs) > 0
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", route, d.ID, err)
	}
	if queued {
		h.notify()
	}
	return nil
}

// Hold holds seats for a booking and replies SeatsHeld or SeatHoldRejected. Holds for the
// same flight that arrive while one is being decided are decided together in one transaction
// (see holdBatcher); each delivery still gets its own inbox entry, outcome and reply.
func (h *Handlers) Hold(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatHoldRequested](d)
	if err != nil {
		return err
	}
	return h.holdBatched(ctx, d, ev)
}

// holdOne decides one hold in its own transaction.
func (h *Handlers) holdOne(ctx context.Context, d consumer.Delivery, ev events.SeatHoldRequested) error {
	var res flight.Hold
	err := h.handle(ctx, RouteHold, d, func(tx pgx.Tx) (_ []events.Event, err error) {
		res, err = h.inv.HoldTx(ctx, tx, flight.HoldRequest{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: ev.Seats})
		if err != nil {
			return nil, err
		}
		return []events.Event{holdReply(ev, res)}, nil
	})
	if err == nil && res.Status != "" { // empty when the inbox said the message was done
		h.logHold(d, ev, res)
	}
	return err
}

// holdReply is the reply to a hold request that had outcome res.
func holdReply(ev events.SeatHoldRequested, res flight.Hold) events.Event {
	if res.Held() {
		return events.SeatsHeld{
			BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: res.Seats,
			UnitPrice: res.UnitPrice, Total: res.Total, Currency: res.Currency,
		}
	}
	return events.SeatHoldRejected{
		BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: ev.Seats,
		Reason: events.RejectReason(res.Reason), Detail: res.Detail,
	}
}

// logHold logs a committed hold outcome.
func (h *Handlers) logHold(d consumer.Delivery, ev events.SeatHoldRequested, res flight.Hold) {
	log := h.log.With("booking_id", ev.BookingID, "flight_id", ev.FlightID, "msg_id", d.ID)
	if res.Held() {
		log.Info("seats held", "seats", res.Seats, "total", res.Total)
		return
	}
	log.Info("seat hold rejected", "reason", res.Reason)
}

// Release gives a booking's seats back and replies SeatsReleased.
func (h *Handlers) Release(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatReleaseRequested](d)
	if err != nil {
		return err
	}
	return h.handle(ctx, RouteRelease, d, func(tx pgx.Tx) ([]events.Event, error) {
		res, err := h.inv.ReleaseTx(ctx, tx, ev.BookingID, ev.FlightID)
		if err != nil {
			return nil, err
		}
		h.log.Info("seats released", "booking_id", ev.BookingID, "flight_id", ev.FlightID, "seats", res.Seats, "reason", ev.Reason)
		return []events.Event{events.SeatsReleased{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: res.Seats}}, nil
	})
}

// Confirm turns a booking's hold into sold seats and replies SeatsConfirmed.
func (h *Handlers) Confirm(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatsConfirmRequested](d)
	if err != nil {
		return err
	}
	return h.handle(ctx, RouteConfirm, d, func(tx pgx.Tx) ([]events.Event, error) {
		res, err := h.inv.ConfirmTx(ctx, tx, ev.BookingID)
		if errors.Is(err, flight.ErrHoldReleased) {
			// The booking was cancelled after paying and its release got here first.
			h.log.Info("confirm after release ignored", "booking_id", ev.BookingID, "flight_id", ev.FlightID)
			return nil, nil
		}
		if errors.Is(err, flight.ErrHoldNotFound) {
			// A confirm for a hold that is gone cannot be satisfied by retrying; the
			// operator sees it in the DLQ and reconcile repairs the booking.
			return nil, consumer.Permanent(err)
		}
		if err != nil {
			return nil, err
		}
		h.log.Info("seats confirmed", "booking_id", ev.BookingID, "flight_id", ev.FlightID, "seats", res.Seats)
		return []events.Event{events.SeatsConfirmed{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: res.Seats}}, nil
	})
}
