// Package messaging connects the booking saga to JetStream: it turns the effects of each
// booking change into events in the booking outbox (inside the change's transaction), and
// consumes the flight service's replies, applying each to its booking in one transaction of
// the booking store (MySQL or SQLite) with the inbox record.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/groupcommit"
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
func Emit(topo events.Topology, add func(ctx context.Context, tx outbox.Execer, msgs ...outbox.Message) error) func(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error {
	return func(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error {
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
	replies *groupcommit.Batcher[uint32, reply]
}

// New returns the booking saga's reply handlers, applying the replies in store.
func New(store booking.Store, topo events.Topology, log *slog.Logger) *Handlers {
	h := &Handlers{store: store, topo: topo, log: log}
	h.replies = groupcommit.New[uint32](maxReplyBatch, h.applyBatch)
	return h
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

// Group commit for replies. Each reply is a short transaction on its own booking's row, so
// what batching saves is the transaction around it (begin, commit, a connection), not lock
// waits; the replies that arrive while a batch runs are applied together in the next, one
// transaction and one commit for the lot. Replies are batched per shard of the booking id, so
// that a few batches run at once on separate connections while every reply of one booking
// still goes through the same queue, in arrival order.
const (
	maxReplyBatch = 64
	replyShards   = 4
)

// reply is one delivery of a flight service reply, decoded, waiting for its batch.
type reply struct {
	route     string
	bookingID string
	d         consumer.Delivery
	in        booking.Input
}

// applied is a reply's change to its booking, logged and announced once committed.
type applied struct {
	reply
	change booking.Change
}

func shard(bookingID string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(bookingID)) // a hash.Hash never fails to write
	return h.Sum32() % replyShards
}

// apply applies in to the booking in a transaction guarded by the inbox, together with the
// other replies queued on the booking's shard. A reply for a booking this service does not
// know can never apply: it goes to the dead-letter subject.
//
// When a batch of several fails, each of its replies is applied again alone rather than
// returning the batch's error, which may be one message's (an unknown booking): returned to
// all, it would send the innocent replies back to the broker with the guilty one. The failed
// batch rolled back, so nothing of it has to be undone; a failure that is not one message's
// (the database down) fails the lone runs too, and the router redelivers.
func (h *Handlers) apply(ctx context.Context, route, bookingID string, d consumer.Delivery, in booking.Input) error {
	r := reply{route: route, bookingID: bookingID, d: d, in: in}
	shared, err := h.replies.Do(ctx, shard(bookingID), r)
	if err != nil && shared && ctx.Err() == nil {
		h.log.Warn("reply batch failed; applying alone", "msg_id", d.ID, "booking_id", bookingID, "error", err)
		err = h.applyBatch(ctx, []reply{r})
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, booking.ErrNotFound):
		return consumer.Permanent(err)
	default:
		return fmt.Errorf("reply %s: %w", d.ID, err)
	}
}

// applyBatch applies replies in one transaction: for each, it claims the message in the inbox
// and, the first time, applies it to its booking under the booking's row lock. Replies
// already processed, including a second delivery in the same batch, change nothing. If any
// fails, nothing of the batch is written.
//
// The bookings are locked in id order (a stable sort, so the replies of one booking keep
// their arrival order): two batches, or batches of two replicas, then take their row locks in
// the same order and cannot deadlock on each other.
func (h *Handlers) applyBatch(ctx context.Context, replies []reply) error {
	replies = slices.Clone(replies)
	slices.SortStableFunc(replies, func(a, b reply) int { return strings.Compare(a.bookingID, b.bookingID) })
	var changed []applied
	err := h.store.InTx(ctx, func(tx booking.Tx) error {
		changed = changed[:0] // InTx may run this again after a deadlock
		// Every claim and every lock at once, then the changes: a store that sends statements
		// together (the MySQL one) spends a round trip on the claims and locks, not on each
		// reply, and sends the batch's rows, history lines and events with the commit. The
		// bookings of duplicate messages are locked too, since the claims and the locks go
		// out together; nothing is written to them.
		msgs := make([]booking.Message, len(replies))
		ids := make([]string, 0, len(replies))
		for i, r := range replies {
			msgs[i] = booking.Message{Consumer: events.ServiceBooking + "." + r.route, ID: r.d.ID}
			if len(ids) == 0 || ids[len(ids)-1] != r.bookingID {
				ids = append(ids, r.bookingID) // sorted above
			}
		}
		first, err := tx.ClaimMessages(ctx, msgs, ids)
		if err != nil {
			return fmt.Errorf("batch of %d replies: %w", len(replies), err)
		}
		fresh := make([]reply, 0, len(replies))
		for i, r := range replies {
			if first[i] {
				fresh = append(fresh, r)
			}
		}
		for _, r := range fresh {
			c, err := tx.Apply(ctx, r.bookingID, r.in)
			if err != nil {
				return fmt.Errorf("%s %s: %w", r.route, r.bookingID, err)
			}
			if !c.Noop() {
				changed = append(changed, applied{reply: r, change: c})
			}
		}
		return nil
	})
	if err != nil {
		if len(replies) > 1 {
			return fmt.Errorf("batch of %d replies: %w", len(replies), err)
		}
		return err
	}
	for _, a := range changed {
		c := a.change
		h.log.Info("booking changed", "booking_id", a.bookingID, "from", c.From, "to", c.Booking.Status, "cause", c.Cause, "msg_id", a.d.ID)
		h.changes.Publish(c.Booking) // committed: a waiting request answers with it
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
