package events_test

import (
	"context"
	"testing"

	natsce "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/events"
)

// TestCloudEventsSDK reads every contract's message with the official CloudEvents Go SDK's NATS
// binding, as another team would with standard tools: it must see a valid binary-mode
// CloudEvent with our id, type, source, subject, time and JSON data.
func TestCloudEventsSDK(t *testing.T) {
	t.Parallel()
	for _, c := range events.Contracts() {
		t.Run(c.Type, func(t *testing.T) {
			t.Parallel()
			msg, err := testTopology.Encode(c.Example)
			require.NoError(t, err)
			msg.Header.Set(events.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			ours, err := events.Decode(msg.Subject, msg.Header, msg.Data)
			require.NoError(t, err)

			m := natsce.NewMessage(msg.NATS())
			require.Equal(t, binding.EncodingBinary, m.ReadEncoding())
			ev, err := binding.ToEvent(context.Background(), m)
			require.NoError(t, err)
			require.NoError(t, ev.Validate())

			assert.Equal(t, cloudevents.CloudEventsVersionV1, ev.SpecVersion())
			assert.Equal(t, msg.ID, ev.ID())
			assert.Equal(t, c.Type, ev.Type())
			assert.Equal(t, "flightbook/test", ev.Source())
			assert.Equal(t, c.Example.AggregateID(), ev.Subject())
			assert.True(t, ours.Time.Equal(ev.Time()), "sdk time %s, ours %s", ev.Time(), ours.Time)
			assert.Equal(t, "application/json", ev.DataContentType())
			assert.JSONEq(t, string(msg.Data), string(ev.Data()))

			// And back: the SDK's decoded data fits our type.
			payload := c.Example
			fresh, err := events.Decode(msg.Subject, msg.Header, ev.Data())
			require.NoError(t, err)
			assert.Equal(t, payload, fresh.Event)
		})
	}
}
