// Package messaging connects the booking saga to JetStream: it turns the effects of each
// booking change into events in the booking outbox (inside the change's transaction), and
// consumes the flight service's replies, applying each to its booking in one transaction of
// the booking store (MySQL or SQLite) with the inbox record.
package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
)

// Route names of the booking service's consumers.
const (
	RouteHeld      = "seats-held"
	RouteRejected  = "seat-hold-rejected"
	RouteReleased  = "seats-released"
	RouteConfirmed = "seats-confirmed"
)

// Emit returns the store's Emit hook (mysql.Emit, sqlite.Emit): every effect of a change
// becomes an event in the booking outbox, in the change's own transaction, so an event is
// published if and only if the change committed. add writes to the outbox of the store's
// database: outbox.AddMySQL or outbox.AddSQLite.
func Emit(topo events.Topology, add func(ctx context.Context, tx *sql.Tx, msgs ...outbox.Message) error) func(ctx context.Context, tx *sql.Tx, b booking.Booking, effects []booking.Effect) error {
	return func(ctx context.Context, tx *sql.Tx, b booking.Booking, effects []booking.Effect) error {
		msgs := make([]outbox.Message, 0, len(effects))
		for _, e := range effects {
			ev, err := Event(b, e)
			if err != nil {
				return err
			}
			m, err := topo.Encode(ev)
			if err != nil {
				return fmt.Errorf("booking %s: encode %s: %w", b.ID, e.Kind, err)
			}
			msgs = append(msgs, outbox.Message(m))
		}
		return add(ctx, tx, msgs...)
	}
}

// Event is the message an effect of a change to b publishes.
func Event(b booking.Booking, e booking.Effect) (events.Event, error) {
	switch e.Kind {
	case booking.RequestHold:
		return events.SeatHoldRequested{BookingID: b.ID, FlightID: b.FlightID, UserID: b.UserID, Seats: b.Seats}, nil
	case booking.RequestRelease:
		return events.SeatReleaseRequested{BookingID: b.ID, FlightID: b.FlightID, Seats: b.Seats, Reason: events.ReleaseReason(e.Reason)}, nil
	case booking.RequestConfirm:
		return events.SeatsConfirmRequested{BookingID: b.ID, FlightID: b.FlightID, Seats: b.Seats}, nil
	case booking.AnnounceHeld:
		return events.BookingHeld{BookingID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats,
			UnitPrice: b.UnitPrice, Total: b.Total, Currency: b.Currency, HoldExpiresAt: b.HoldExpiresAt}, nil
	case booking.AnnounceConfirmed:
		return events.BookingConfirmed{BookingID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats,
			Total: b.Total, Currency: b.Currency, PaymentID: e.PaymentID}, nil
	case booking.AnnounceRejected:
		return events.BookingRejected{BookingID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats, Reason: events.RejectReason(e.Reason)}, nil
	case booking.AnnounceExpired:
		return events.BookingExpired{BookingID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats, PreviousStatus: events.ExpiredFrom(e.PreviousStatus)}, nil
	case booking.AnnounceCancelled:
		return events.BookingCancelled{BookingID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats, RefundAmount: e.Refund, Currency: b.Currency}, nil
	}
	return nil, fmt.Errorf("booking %s: no event for effect %q", b.ID, e.Kind)
}

// Handlers consumes the flight service's replies.
type Handlers struct {
	store   booking.Store
	topo    events.Topology
	log     *slog.Logger
	changes *booking.Changes
}

// New returns the booking saga's reply handlers, applying the replies in store.
func New(store booking.Store, topo events.Topology, log *slog.Logger) *Handlers {
	return &Handlers{store: store, topo: topo, log: log}
}

// WithChanges makes the handlers publish every booking a reply changed to changes once its
// transaction has committed, waking the API's Prefer: wait requests of this process.
func (h *Handlers) WithChanges(changes *booking.Changes) *Handlers {
	h.changes = changes
	return h
}

// Register adds the saga's four routes and the catalogue's two to r.
func (h *Handlers) Register(r *consumer.Router) {
	stream := h.topo.StreamName(events.StreamFlight)
	r.Handle(RouteHeld, stream, h.topo.Subject(events.SeatsHeld{}.Subject()), h.SeatsHeld)
	r.Handle(RouteRejected, stream, h.topo.Subject(events.SeatHoldRejected{}.Subject()), h.SeatHoldRejected)
	r.Handle(RouteReleased, stream, h.topo.Subject(events.SeatsReleased{}.Subject()), h.SeatsReleased)
	r.Handle(RouteConfirmed, stream, h.topo.Subject(events.SeatsConfirmed{}.Subject()), h.SeatsConfirmed)
	r.Handle(RouteFlightScheduled, stream, h.topo.Subject(events.FlightScheduled{}.Subject()), h.FlightScheduled)
	r.Handle(RouteFlightCancelled, stream, h.topo.Subject(events.FlightCancelled{}.Subject()), h.FlightCancelled)
}

// Handler returns a route's handler by name, for replay and DLQ redrive.
func (h *Handlers) Handler(route string) (consumer.Handler, bool) {
	switch route {
	case RouteHeld:
		return h.SeatsHeld, true
	case RouteRejected:
		return h.SeatHoldRejected, true
	case RouteReleased:
		return h.SeatsReleased, true
	case RouteConfirmed:
		return h.SeatsConfirmed, true
	case RouteFlightScheduled:
		return h.FlightScheduled, true
	case RouteFlightCancelled:
		return h.FlightCancelled, true
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

// apply applies in to the booking in one transaction guarded by the inbox. A reply for a booking
// this service does not know can never apply: it goes to the dead-letter subject.
func (h *Handlers) apply(ctx context.Context, route, bookingID string, d consumer.Delivery, in booking.Input) error {
	changed := false
	err := h.store.InTx(ctx, func(tx booking.Tx) error {
		changed = false // InTx may run this again after a deadlock
		first, err := tx.ClaimMessage(ctx, events.ServiceBooking+"."+route, d.ID)
		if err != nil || !first {
			return err
		}
		c, err := tx.Apply(ctx, bookingID, in)
		if err != nil {
			return err
		}
		if !c.Noop() {
			changed = true
			h.log.Info("booking changed", "booking_id", bookingID, "from", c.From, "to", c.Booking.Status, "cause", c.Cause, "msg_id", d.ID)
		}
		return nil
	})
	if errors.Is(err, booking.ErrNotFound) {
		return consumer.Permanent(fmt.Errorf("%s %s: %w", route, bookingID, err))
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", route, bookingID, err)
	}
	if changed {
		h.changes.Publish(bookingID) // committed: a woken request reads the change
	}
	return nil
}

// SeatsHeld moves a PENDING booking to HELD (or gives late seats back).
func (h *Handlers) SeatsHeld(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatsHeld](d)
	if err != nil {
		return err
	}
	return h.apply(ctx, RouteHeld, ev.BookingID, d, booking.SeatsHeld{UnitPrice: ev.UnitPrice, Total: ev.Total, Currency: ev.Currency})
}

// SeatHoldRejected moves a PENDING booking to REJECTED.
func (h *Handlers) SeatHoldRejected(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatHoldRejected](d)
	if err != nil {
		return err
	}
	return h.apply(ctx, RouteRejected, ev.BookingID, d, booking.SeatHoldRejected{Reason: string(ev.Reason)})
}

// SeatsReleased records in the booking's history that its seats are back on sale.
func (h *Handlers) SeatsReleased(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatsReleased](d)
	if err != nil {
		return err
	}
	return h.apply(ctx, RouteReleased, ev.BookingID, d, booking.SeatsReleased{})
}

// SeatsConfirmed records in the booking's history that its seats are sold.
func (h *Handlers) SeatsConfirmed(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatsConfirmed](d)
	if err != nil {
		return err
	}
	return h.apply(ctx, RouteConfirmed, ev.BookingID, d, booking.SeatsConfirmed{})
}
