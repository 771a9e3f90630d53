package messaging

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking"
)

// WakeOnEvents feeds changes from the booking service's public events, so that a Prefer: wait
// request is woken by a change whichever replica made it. The reply handlers wake the
// requests of their own process at commit; a reply handled by another replica is seen here
// once that replica's relay has published the event, instead of on the request's next poll.
//
// It is a plain NATS subscription, not a JetStream consumer: every replica must see every
// event, none needs one it missed (the waiting request still polls, more slowly), and
// JetStream delivers each published message to core subscribers of its subject too. Only the
// ce-subject header (the booking id) is read; the payload is never decoded.
func WakeOnEvents(nc *nats.Conn, topo events.Topology, changes *booking.Changes) (*nats.Subscription, error) {
	subject := topo.Subject("booking.events.*")
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if id := m.Header.Get(events.HeaderSubject); id != "" {
			changes.Wake(id)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return sub, nil
}
