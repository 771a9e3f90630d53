package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is how the streams are kept. Its zero value means the defaults below, so a test
// can pass StreamConfig{}.
type StreamConfig struct {
	Replicas   int           `default:"1" desc:"copies of each stream in the JetStream cluster: 1 on one server, 3 in a cluster"`
	MaxAge     time.Duration `split_words:"true" default:"168h" desc:"how long events are kept, so consumers can replay them"`
	Duplicates time.Duration `default:"10m" desc:"window in which JetStream drops a republished message with the same Nats-Msg-Id"`
}

// Defaults of StreamConfig, used for zero fields.
const (
	DefaultReplicas   = 1
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultDuplicates = 10 * time.Minute
)

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	return c
}

// MaxAgeOrDefault returns how long the streams keep events: MaxAge, or DefaultMaxAge when unset.
func (c StreamConfig) MaxAgeOrDefault() time.Duration { return c.withDefaults().MaxAge }

func (c StreamConfig) validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: JetStream allows 1 to 5", c.Replicas))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %s is negative", c.MaxAge))
	}
	if c.Duplicates < 0 || c.Duplicates > c.MaxAge {
		errs = append(errs, fmt.Errorf("duplicates window %s must be positive and no longer than max age %s", c.Duplicates, c.MaxAge))
	}
	return errors.Join(errs...)
}

// Streams returns the JetStream configuration of the BOOKING, FLIGHT and DLQ streams under t.
func (t Topology) Streams(cfg StreamConfig) []jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	stream := func(base, subject, what string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        t.StreamName(base),
			Description: what,
			Subjects:    []string{t.Subject(subject)},
			// Limits retention with an age, not work-queue retention: events stay after every
			// consumer has acked them, so a new consumer or a repaired one can replay them.
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   cfg.Replicas,
			MaxAge:     cfg.MaxAge,
			Duplicates: cfg.Duplicates,
			Discard:    jetstream.DiscardOld,
			// The outbox relays send a backlog as atomic batches, which a stream syncing every
			// write stores with one sync instead of one per message (outbox/atomic.go). Servers
			// before 2.12 ignore the setting and report it false, so the relays publish message
			// by message there, and EnsureStreams updates the streams at every start (to no
			// effect).
			AllowAtomicPublish: true,
		}
	}
	return []jetstream.StreamConfig{
		stream(StreamBooking, "booking.>", "flightbook: events published by the booking service"),
		stream(StreamFlight, "flight.>", "flightbook: events published by the flight service"),
		stream(StreamDLQ, "dlq.>", "flightbook: messages consumers gave up on, with their error"),
	}
}

// EnsureStreams creates the BOOKING (booking.>), FLIGHT (flight.>) and DLQ (dlq.>) streams, or
// updates them to cfg when they exist, so every service can call it at start-up in any order.
// The services create their streams themselves rather than relying on a library's
// auto-provisioning, which names streams after topics and deletes durables (see
// shared/MESSAGING.md).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, t Topology, cfg StreamConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("events: stream config: %w", err)
	}
	for _, sc := range t.Streams(cfg) {
		// A stream that already has this configuration is left alone: every service calls this
		// at start-up, and an update (even a no-op one) racing another service's consumer
		// creation trips a data race inside nats-server 2.15 (seen under -race in the dev
		// mode's embedded server).
		if s, err := js.Stream(ctx, sc.Name); err == nil && sameStream(s.CachedInfo().Config, sc) {
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("events: create or update stream %s (%s): %w", sc.Name, sc.Subjects[0], err)
		}
	}
	return nil
}

// sameStream reports whether the existing stream has every setting EnsureStreams sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
		have.MaxAge == want.MaxAge && have.Duplicates == want.Duplicates && have.Discard == want.Discard &&
		have.AllowAtomicPublish == want.AllowAtomicPublish
}
