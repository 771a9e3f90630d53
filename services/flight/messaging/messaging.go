// Package messaging holds the flight service's saga handlers: it consumes the booking
// service's seat commands, runs the inventory operation, and writes the reply to the flight
// outbox, all in one database transaction. The storage adapters (postgres, sqlite) provide
// that transaction as a Tx.
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

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/groupcommit"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// Route names; with the service name they form the durable and the DLQ subject.
const (
	RouteHold    = "seat-hold"
	RouteRelease = "seat-release"
	RouteConfirm = "seats-confirm"
)

// Tx is what a handler does inside one transaction of the flight database: claim the message
// ids in the inbox, change the seats, and queue the replies in the outbox. Whatever it did is
// committed together or not at all.
type Tx interface {
	// ClaimAll records that consumer processed each of msgIDs and reports, per id, whether
	// this was the first time; an id that appears twice is first only at its first appearance.
	// inbox.ErrInvalid for an id the inbox refuses.
	ClaimAll(ctx context.Context, consumer string, msgIDs []string) ([]bool, error)
	// Hold, HoldBatch, Release and Confirm are flight.Inventory's operations in this
	// transaction.
	Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error)
	HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error)
	Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error)
	Confirm(ctx context.Context, bookingID string) (flight.Hold, error)
	// Queue adds messages to the outbox.
	Queue(ctx context.Context, msgs ...outbox.Message) error
}

// Store runs saga transactions: InTx runs fn in one transaction, commits when it returns nil,
// rolls back otherwise, and may run it again after a failure the database says is transient
// (so fn must do nothing outside the transaction). T is the adapter's transaction type,
// postgres.InventoryTx or sqlite.InventoryTx; New infers it.
type Store[T Tx] interface {
	InTx(ctx context.Context, fn func(T) error) error
}

// Handlers consumes SeatHoldRequested, SeatReleaseRequested and SeatsConfirmRequested.
type Handlers struct {
	inTx   func(ctx context.Context, fn func(Tx) error) error
	topo   events.Topology
	notify func() // wakes the outbox relay after a commit
	log    *slog.Logger
	holds  *groupcommit.Batcher[int64, holdCall]
	// commands batches releases and confirms by flight.
	commands *groupcommit.Batcher[int64, command]
}

// New returns the flight saga handlers over store, for example postgres.NewInventory(pool) or
// sqlite.NewInventory(db). notify is called after each commit that queued a reply. store may
// be nil for handlers that are only looked up by route name and never run.
func New[T Tx](store Store[T], topo events.Topology, notify func(), log *slog.Logger) *Handlers {
	if notify == nil {
		notify = func() {}
	}
	h := &Handlers{topo: topo, notify: notify, log: log}
	h.inTx = func(ctx context.Context, fn func(Tx) error) error {
		return store.InTx(ctx, func(tx T) error { return fn(tx) })
	}
	h.holds = groupcommit.New[int64](maxHoldBatch, h.holdBatch)
	h.commands = groupcommit.New[int64](maxCommandBatch, h.commandBatch)
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

// command is one delivery waiting for its flight's batch: fn does its work in the batch's
// transaction, under the message's inbox claim, and returns the replies to queue.
type command struct {
	route   string
	d       consumer.Delivery
	booking string // the booking the command is for
	fn      work
}

// work is a command's part of a batch's transaction. It returns the replies to queue and,
// optionally, committed, which runs once the batch has committed (to log what happened: a
// batch that rolls back, or runs again, must not have logged it).
type work func(ctx context.Context, tx Tx) (replies []events.Event, committed func(), err error)

// maxCommandBatch bounds how many releases and confirms one transaction applies.
const maxCommandBatch = 64

// handle runs fn in a transaction guarded by the inbox, queues the events fn returns in the
// outbox, commits, runs fn's committed hook, and wakes the relay. Releases and confirms lock
// their flight's row as holds do, so the ones for one flight that arrive while another runs
// share the next transaction (groupcommit, keyed by flight); as for holds, a failed batch is
// retried message by message, so that only a message that fails alone is redelivered or
// dead-lettered.
func (h *Handlers) handle(ctx context.Context, route string, d consumer.Delivery, flightID int64, booking string, fn work) error {
	c := command{route: route, d: d, booking: booking, fn: fn}
	shared, err := h.commands.Do(ctx, flightID, c)
	if err != nil && shared && ctx.Err() == nil {
		h.log.Warn("batch failed; handling alone", "route", route, "msg_id", d.ID, "flight_id", flightID, "error", err)
		err = h.commandBatch(ctx, []command{c})
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", route, d.ID, err)
	}
	return nil
}

// commandBatch runs cmds in one transaction: each claims its message in the inbox and, the
// first time, does its work; the replies of all go to the outbox in one insert. If any fails,
// nothing of the batch is written.
func (h *Handlers) commandBatch(ctx context.Context, cmds []command) error {
	var (
		queued    bool
		committed []func()
	)
	err := h.inTx(ctx, func(tx Tx) error {
		committed = committed[:0] // inTx may run this again
		var msgs []outbox.Message
		prepareCommands(tx, cmds)
		first, err := claimCommands(ctx, tx, cmds)
		if err != nil {
			return err
		}
		for i, c := range cmds {
			if !first[i] {
				continue
			}
			evs, done, err := c.fn(ctx, tx)
			if err != nil {
				return err
			}
			if done != nil {
				committed = append(committed, done)
			}
			for _, ev := range evs {
				m, err := h.topo.Encode(ev)
				if err != nil {
					return fmt.Errorf("encode %s: %w", ev.EventType(), err)
				}
				msgs = append(msgs, outbox.Message(m))
			}
		}
		if err := tx.Queue(ctx, msgs...); err != nil {
			return err
		}
		queued = len(msgs) > 0
		return nil
	})
	if err != nil {
		if len(cmds) > 1 {
			return fmt.Errorf("batch of %d: %w", len(cmds), err)
		}
		return err
	}
	for _, done := range committed {
		done()
	}
	if queued {
		h.notify()
	}
	return nil
}

// commandPreparer is a Tx that can take, in the round trip of the inbox claim, what the
// batch's releases read first and the batch's confirms whole, so that their calls after the
// claim need no round trip of their own. postgres.InventoryTx is one.
type commandPreparer interface {
	PrepareReleases(bookingIDs []string)
	PrepareConfirms(bookingIDs []string)
}

// prepareCommands lets tx prepare cmds with its inbox claim, when they are all releases or
// all confirms. A batch of both is claimed in two statements, one per route, and what the
// first prepared would lock flights before the second claims: every transaction claims before
// it locks, so that two cannot wait for each other's rows in a cycle. Confirms prepared ahead
// of a release of the same booking would also see the batch out of order. (A confirm is
// idempotent and final, so confirming the booking of a message the claim finds already
// processed changes nothing.)
func prepareCommands(tx Tx, cmds []command) {
	p, ok := tx.(commandPreparer)
	if !ok {
		return
	}
	bookings := make([]string, len(cmds))
	for i, c := range cmds {
		if c.route != cmds[0].route {
			return
		}
		bookings[i] = c.booking
	}
	switch cmds[0].route {
	case RouteRelease:
		p.PrepareReleases(bookings)
	case RouteConfirm:
		p.PrepareConfirms(bookings)
	}
}

// claimCommands claims every command's message in the inbox with one statement per route
// (a batch holds releases and confirms), and reports which were claimed for the first time.
func claimCommands(ctx context.Context, tx Tx, cmds []command) ([]bool, error) {
	byRoute := map[string][]int{}
	var routes []string
	for i, c := range cmds {
		if _, ok := byRoute[c.route]; !ok {
			routes = append(routes, c.route)
		}
		byRoute[c.route] = append(byRoute[c.route], i)
	}
	first := make([]bool, len(cmds))
	for _, route := range routes {
		idx := byRoute[route]
		ids := make([]string, len(idx))
		for k, i := range idx {
			ids[k] = cmds[i].d.ID
		}
		claimed, err := tx.ClaimAll(ctx, events.ServiceFlight+"."+route, ids)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			first[i] = claimed[k]
		}
	}
	return first, nil
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
	err := h.commandBatch(ctx, []command{{route: RouteHold, d: d, booking: ev.BookingID, fn: func(ctx context.Context, tx Tx) ([]events.Event, func(), error) {
		res, err := tx.Hold(ctx, flight.HoldRequest{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: ev.Seats})
		if err != nil {
			return nil, nil, err
		}
		return []events.Event{holdReply(ev, res)}, func() { h.logHold(d, ev, res) }, nil
	}}})
	if err != nil {
		return fmt.Errorf("%s %s: %w", RouteHold, d.ID, err)
	}
	return nil
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
	return h.handle(ctx, RouteRelease, d, ev.FlightID, ev.BookingID, func(ctx context.Context, tx Tx) ([]events.Event, func(), error) {
		res, err := tx.Release(ctx, ev.BookingID, ev.FlightID)
		if err != nil {
			return nil, nil, err
		}
		return []events.Event{events.SeatsReleased{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: res.Seats}}, func() {
			h.log.Info("seats released", "booking_id", ev.BookingID, "flight_id", ev.FlightID, "seats", res.Seats, "reason", ev.Reason)
		}, nil
	})
}

// Confirm turns a booking's hold into sold seats and replies SeatsConfirmed.
func (h *Handlers) Confirm(ctx context.Context, d consumer.Delivery) error {
	ev, err := decode[events.SeatsConfirmRequested](d)
	if err != nil {
		return err
	}
	return h.handle(ctx, RouteConfirm, d, ev.FlightID, ev.BookingID, func(ctx context.Context, tx Tx) ([]events.Event, func(), error) {
		log := h.log.With("booking_id", ev.BookingID, "flight_id", ev.FlightID)
		res, err := tx.Confirm(ctx, ev.BookingID)
		if errors.Is(err, flight.ErrHoldReleased) {
			// The booking was cancelled after paying and its release got here first.
			return nil, func() { log.Info("confirm after release ignored") }, nil
		}
		if errors.Is(err, flight.ErrHoldNotFound) {
			// A confirm for a hold that is gone cannot be satisfied by retrying; the
			// operator sees it in the DLQ and reconcile repairs the booking.
			return nil, nil, consumer.Permanent(err)
		}
		if err != nil {
			return nil, nil, err
		}
		return []events.Event{events.SeatsConfirmed{BookingID: ev.BookingID, FlightID: ev.FlightID, Seats: res.Seats}}, func() {
			log.Info("seats confirmed", "seats", res.Seats)
		}, nil
	})
}
