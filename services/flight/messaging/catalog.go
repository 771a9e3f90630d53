package messaging

import (
	"context"
	"fmt"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
)

// Announce returns the catalogue's Announce hook: a scheduled flight becomes FlightScheduled
// and a cancelled one FlightCancelled in the flight outbox, in the transaction that changed
// it. The booking service keeps its copy of the catalogue from these, to refuse a booking
// for a flight that does not exist without asking the flight service.
//
// Its type is that of postgres.Announce and sqlite.Announce, unnamed so that it fits both.
func Announce(topo events.Topology) func(context.Context, flight.Flight) (outbox.Message, error) {
	return func(_ context.Context, f flight.Flight) (outbox.Message, error) {
		m, err := topo.Encode(CatalogEvent(f))
		if err != nil {
			return outbox.Message{}, fmt.Errorf("flight %d: encode catalogue event: %w", f.ID, err)
		}
		return outbox.Message(m), nil
	}
}

// CatalogEvent is the catalogue event that states f as it now stands.
func CatalogEvent(f flight.Flight) events.Event {
	if f.Status == flight.StatusCancelled {
		return events.FlightCancelled{FlightID: f.ID, FlightNumber: f.FlightNumber}
	}
	return events.FlightScheduled{
		FlightID: f.ID, FlightNumber: f.FlightNumber,
		DepartureAirport: f.DepartureAirport, ArrivalAirport: f.ArrivalAirport,
		DepartureTime: f.DepartureTime, ArrivalTime: f.ArrivalTime,
		TotalSeats: f.Total, FareAmount: f.FareAmount, Currency: f.Currency,
	}
}
