package consumer

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A message's headers reach the handler as they came, through watermill's string metadata.
func TestDeliveryKeepsHeaders(t *testing.T) {
	for name, h := range map[string]nats.Header{
		"none":            {},
		"one value each":  {"Nats-Msg-Id": {"m-1"}, "ce-type": {"flight.seats-held.v1"}, "traceparent": {"00-ab-cd-01"}},
		"a repeated key":  {"Nats-Msg-Id": {"m-2"}, "X-Hop": {"a", "b", "c"}},
		"empty value":     {"X-Empty": {""}},
		"dots and colons": {"flightbook.header.x": {"a:b.c"}},
	} {
		t.Run(name, func(t *testing.T) {
			msg, err := unmarshaler{}.Unmarshal(&nats.Msg{Subject: "s", Header: h, Data: []byte("{}")})
			require.NoError(t, err)
			d, err := delivery(msg)
			require.NoError(t, err)
			assert.Equal(t, h, d.Header)
		})
	}
}
