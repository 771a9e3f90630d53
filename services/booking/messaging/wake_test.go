package messaging_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/testenv"
)

// TestWakeOnEvents: a booking event published by any replica wakes this process's waiters on
// that booking, and only under this deployment's namespace.
func TestWakeOnEvents(t *testing.T) {
	t.Parallel()
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url)
	testenv.Fatal(t, "connect", err)
	defer nc.Close()
	topo := events.Topology{Namespace: ns, Source: "test/booking"}
	changes := &booking.Changes{}
	sub, err := bookingmessaging.WakeOnEvents(nc, topo, changes)
	testenv.Fatal(t, "wake on events", err)
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes anyway

	a, stopA := changes.Watch("booking-a")
	defer stopA()
	b, stopB := changes.Watch("booking-b")
	defer stopB()

	publish := func(subject, bookingID string) {
		m := nats.NewMsg(subject)
		m.Header.Set(events.HeaderSubject, bookingID)
		testenv.Fatal(t, "publish", nc.PublishMsg(m))
	}
	// Messages from one connection arrive in order: once b is woken, an earlier message that
	// should have woken a has been handled too.
	publish("other."+events.BookingHeld{}.Subject(), "booking-a") // another namespace
	publish(topo.Subject(events.BookingRejected{}.Subject()), "booking-b")
	select {
	case <-b:
	case <-time.After(10 * time.Second):
		t.Fatal("a BookingRejected did not wake its booking's waiter")
	}
	select {
	case <-a:
		t.Fatal("an event of another namespace woke a waiter")
	default:
	}

	publish(topo.Subject(events.BookingHeld{}.Subject()), "booking-a")
	select {
	case <-a:
	case <-time.After(10 * time.Second):
		t.Fatal("a BookingHeld did not wake its booking's waiter")
	}
}
