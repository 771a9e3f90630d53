package messaging

import (
	"context"
	"fmt"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking"
)

// Routes of the flight catalogue, which the booking service copies to check booking requests.
const (
	RouteFlightScheduled = "flight-scheduled"
	RouteFlightCancelled = "flight-cancelled"
)

// FlightScheduled records a flight as open, with its departure, in the local catalogue. The
// upsert is idempotent and ignores an event older than the one recorded, so it needs no
// inbox entry.
func (h *Handlers) FlightScheduled(ctx context.Context, d consumer.Delivery) error {
	env, err := events.Decode(d.Subject, d.Header, d.Data)
	if err != nil {
		return consumer.Permanent(fmt.Errorf("decode %s: %w", d.ID, err))
	}
	ev, ok := env.Event.(events.FlightScheduled)
	if !ok {
		return consumer.Permanent(fmt.Errorf("message %s is %s, not FlightScheduled", d.ID, env.Type))
	}
	f := booking.Flight{ID: ev.FlightID, Number: ev.FlightNumber, DepartureTime: ev.DepartureTime, AnnouncedAt: env.Time}
	if err := h.store.RecordFlight(ctx, f); err != nil {
		return fmt.Errorf("%s %s: %w", RouteFlightScheduled, d.ID, err)
	}
	h.log.Debug("flight recorded", "flight_id", ev.FlightID, "flight_number", ev.FlightNumber, "msg_id", d.ID)
	return nil
}

// FlightCancelled records a flight as cancelled in the local catalogue, for good.
func (h *Handlers) FlightCancelled(ctx context.Context, d consumer.Delivery) error {
	env, err := events.Decode(d.Subject, d.Header, d.Data)
	if err != nil {
		return consumer.Permanent(fmt.Errorf("decode %s: %w", d.ID, err))
	}
	ev, ok := env.Event.(events.FlightCancelled)
	if !ok {
		return consumer.Permanent(fmt.Errorf("message %s is %s, not FlightCancelled", d.ID, env.Type))
	}
	f := booking.Flight{ID: ev.FlightID, Number: ev.FlightNumber, Cancelled: true, AnnouncedAt: env.Time}
	if err := h.store.RecordFlight(ctx, f); err != nil {
		return fmt.Errorf("%s %s: %w", RouteFlightCancelled, d.ID, err)
	}
	h.log.Info("flight cancelled", "flight_id", ev.FlightID, "flight_number", ev.FlightNumber, "msg_id", d.ID)
	return nil
}
