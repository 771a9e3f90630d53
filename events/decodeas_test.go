package events_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/events"
)

func TestDecodeAs(t *testing.T) {
	topo := events.Topology{Source: "flightbook/flight"}
	m, err := topo.Encode(events.SeatsConfirmed{BookingID: uuid.NewString(), FlightID: 1, Seats: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := events.DecodeAs[events.SeatsConfirmed](m.Subject, m.Header, m.Data); err != nil || ev.FlightID != 1 {
		t.Fatalf("own type: %+v, %v", ev, err)
	}
	if _, err := events.DecodeAs[events.SeatsHeld](m.Subject, m.Header, m.Data); !errors.Is(err, events.ErrUndecodable) {
		t.Fatalf("another type: %v, want ErrUndecodable", err)
	}
}
