package consumer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/config"
)

func TestConfigFromEnvironment(t *testing.T) {
	var c Config
	require.NoError(t, config.Load(&c))
	assert.Equal(t, Config{}.withDefaults(), c, "tag defaults and withDefaults agree")

	t.Setenv("FLIGHTBOOK_ACK_WAIT", "10s")
	t.Setenv("FLIGHTBOOK_MAX_DELIVER", "7")
	t.Setenv("FLIGHTBOOK_BACKOFF", "1s,3s")
	t.Setenv("FLIGHTBOOK_MAX_ACK_PENDING", "16")
	c = Config{}
	require.NoError(t, config.Load(&c))
	assert.Equal(t, Config{AckWait: 10 * time.Second, MaxDeliver: 7, Backoff: []time.Duration{time.Second, 3 * time.Second}, Concurrency: 8, MaxAckPending: 16, CheckInterval: 5 * time.Second}, c)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"negative ack wait", Config{AckWait: -time.Second}, false},
		{"negative max deliver", Config{MaxDeliver: -1}, false},
		{"negative backoff", Config{Backoff: []time.Duration{-time.Second}}, false},
		{"negative check interval", Config{CheckInterval: -time.Second}, false},
		{"max ack pending below concurrency", Config{Concurrency: 100}, false},
		{"max ack pending raised with concurrency", Config{Concurrency: 100, MaxAckPending: 200}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().validate()
			assert.Equal(t, tc.ok, err == nil, "error: %v", err)
		})
	}
}

func TestDelayFollowsBackoffThenRepeatsTheLast(t *testing.T) {
	c := Config{Backoff: []time.Duration{time.Second, 2 * time.Second}}
	for attempt, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 2 * time.Second, 50: 2 * time.Second} {
		assert.Equal(t, want, c.delay(attempt), "after delivery %d", attempt)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ service, subject, durable string }{
		{"flight", "booking.seats.hold-requested", "flight_booking_seats_hold-requested"},
		{"booking", "flight.>", "booking_flight_all"},
		{"booking", "t1a2b.flight.*.held", "booking_t1a2b_flight_any_held"},
	} {
		assert.Equal(t, tc.durable, Durable(tc.service, tc.subject))
	}
	assert.Equal(t, "dlq.flight.seat-hold-requested", DLQSubject("", "flight", "seat-hold-requested"))
	assert.Equal(t, "t1a2b.dlq.flight.seat-hold-requested", DLQSubject("t1a2b", "flight", "seat-hold-requested"))
	assert.Equal(t, "a b c", headerValue("a\r\nb\nc"))
}
