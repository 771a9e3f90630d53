package events_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/events"
)

// TestStreamConfigEnv: the envconfig defaults equal the zero-value defaults EnsureStreams
// applies, and the variable names are the documented ones. Not parallel: it sets variables.
func TestStreamConfigEnv(t *testing.T) {
	var cfg events.StreamConfig
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, events.StreamConfig{Replicas: events.DefaultReplicas, MaxAge: events.DefaultMaxAge, Duplicates: events.DefaultDuplicates}, cfg)

	t.Setenv("FLIGHTBOOK_REPLICAS", "3")
	t.Setenv("FLIGHTBOOK_MAX_AGE", "72h")
	t.Setenv("FLIGHTBOOK_DUPLICATES", "2m")
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, events.StreamConfig{Replicas: 3, MaxAge: 72 * time.Hour, Duplicates: 2 * time.Minute}, cfg)

	var usage strings.Builder
	require.NoError(t, config.Usage(&usage, &cfg))
	for _, v := range []string{"FLIGHTBOOK_REPLICAS", "FLIGHTBOOK_MAX_AGE", "FLIGHTBOOK_DUPLICATES"} {
		assert.Contains(t, usage.String(), v)
	}
}

func TestStreamsShape(t *testing.T) {
	t.Parallel()
	streams := events.Topology{Namespace: "t9"}.Streams(events.StreamConfig{})
	require.Len(t, streams, 3)
	var names, subjects []string
	for _, s := range streams {
		names = append(names, s.Name)
		subjects = append(subjects, s.Subjects...)
		assert.Equal(t, events.DefaultDuplicates, s.Duplicates)
	}
	assert.Equal(t, []string{"T9_BOOKING", "T9_FLIGHT", "T9_DLQ"}, names)
	assert.Equal(t, []string{"t9.booking.>", "t9.flight.>", "t9.dlq.>"}, subjects)
	// Every contract's subject is captured by the stream its contract names.
	for _, c := range events.Contracts() {
		assert.Equal(t, c.Stream, events.StreamOf(c.Subject), c.Type)
	}
}
