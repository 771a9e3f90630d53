package events_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/testenv"
)

func connect(t *testing.T) (jetstream.JetStream, events.Topology) {
	t.Helper()
	url, ns := testenv.NATS(t)
	nc, err := nats.Connect(url)
	testenv.Fatal(t, "connect to NATS", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	return js, events.Topology{Namespace: ns, Source: "flightbook/test"}
}

// TestEnsureStreams creates the three streams on the real server, checks their configuration,
// runs again unchanged, then again with a new retention age, which must update in place.
func TestEnsureStreams(t *testing.T) {
	t.Parallel()
	js, top := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := events.StreamConfig{Replicas: 1, MaxAge: 48 * time.Hour, Duplicates: 2 * time.Minute}
	require.NoError(t, events.EnsureStreams(ctx, js, top, cfg))
	want := map[string]string{"BOOKING": "booking.>", "FLIGHT": "flight.>", "DLQ": "dlq.>"}
	check := func(maxAge time.Duration) {
		t.Helper()
		for base, subject := range want {
			s, err := js.Stream(ctx, top.StreamName(base))
			require.NoError(t, err, base)
			got := s.CachedInfo().Config
			assert.Equal(t, []string{top.Namespace + "." + subject}, got.Subjects, base)
			assert.Equal(t, jetstream.FileStorage, got.Storage, base)
			assert.Equal(t, jetstream.LimitsPolicy, got.Retention, base)
			assert.Equal(t, 1, got.Replicas, base)
			assert.Equal(t, maxAge, got.MaxAge, base)
			assert.Equal(t, 2*time.Minute, got.Duplicates, base)
		}
	}
	check(48 * time.Hour)

	// Idempotent: the same call again changes nothing and does not fail.
	require.NoError(t, events.EnsureStreams(ctx, js, top, cfg))
	check(48 * time.Hour)

	// A new retention age is applied to the existing streams, keeping their messages.
	msg, err := top.Encode(events.Contracts()[0].Example)
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, msg.NATS())
	require.NoError(t, err)
	cfg.MaxAge = 72 * time.Hour
	require.NoError(t, events.EnsureStreams(ctx, js, top, cfg))
	check(72 * time.Hour)
	s, err := js.Stream(ctx, top.StreamName(events.StreamBooking))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), s.CachedInfo().State.Msgs)

	// Only our namespace's streams were touched.
	var ours []string
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		if slices.Contains([]string{top.StreamName("BOOKING"), top.StreamName("FLIGHT"), top.StreamName("DLQ")}, n) {
			ours = append(ours, n)
		}
	}
	require.NoError(t, names.Err())
	assert.Len(t, ours, 3)
}

func TestEnsureStreamsDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	js, top := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.NoError(t, events.EnsureStreams(ctx, js, top, events.StreamConfig{}))
	s, err := js.Stream(ctx, top.StreamName(events.StreamFlight))
	require.NoError(t, err)
	assert.Equal(t, events.DefaultMaxAge, s.CachedInfo().Config.MaxAge)
	assert.Equal(t, events.DefaultDuplicates, s.CachedInfo().Config.Duplicates)

	for _, cfg := range []events.StreamConfig{
		{Replicas: 7},
		{MaxAge: -time.Hour},
		{MaxAge: time.Minute, Duplicates: time.Hour},
	} {
		err := events.EnsureStreams(ctx, js, top, cfg)
		assert.ErrorContains(t, err, "events: stream config", "%+v", cfg)
	}
}

// TestPublishTwiceStoredOnce: a message republished with the same Nats-Msg-Id, as the outbox
// relay does after a crash between publish and mark, is stored once.
func TestPublishTwiceStoredOnce(t *testing.T) {
	t.Parallel()
	js, top := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, events.EnsureStreams(ctx, js, top, events.StreamConfig{}))

	var msgs []events.Message
	for _, c := range events.Contracts() {
		msg, err := top.Encode(c.Example)
		require.NoError(t, err)
		msgs = append(msgs, msg)
	}
	for round := range 2 {
		for _, msg := range msgs {
			ack, err := js.PublishMsg(ctx, msg.NATS())
			require.NoError(t, err)
			assert.Equal(t, round == 1, ack.Duplicate, "round %d %s", round, msg.Subject)
		}
	}

	stored := map[string]uint64{}
	for _, base := range []string{events.StreamBooking, events.StreamFlight} {
		s, err := js.Stream(ctx, top.StreamName(base))
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		stored[base] = info.State.Msgs
	}
	assert.Equal(t, map[string]uint64{"BOOKING": 8, "FLIGHT": 6}, stored)

	// What a consumer reads back from the stream decodes to what was sent.
	s, err := js.Stream(ctx, top.StreamName(events.StreamBooking))
	require.NoError(t, err)
	raw, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	env, err := events.Decode(raw.Subject, raw.Header, raw.Data)
	require.NoError(t, err)
	assert.Equal(t, msgs[0].ID, env.ID)
	assert.Equal(t, events.Contracts()[0].Example, env.Event)
}
