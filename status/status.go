// Package status gathers what an operator asks of a running service's messaging: how far
// behind each durable consumer is, how many deliveries wait for an ack or were redelivered,
// how many messages sit in the service's dead-letter subjects, and how far the outbox is
// behind. Each service serves its own under /readyz's "detail"; `flightbook status` shows both.
package status

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/outbox"
)

// Report is one service's messaging status.
type Report struct {
	Outbox    Outbox     `json:"outbox"`
	Consumers []Consumer `json:"consumers"`
	DLQ       DLQ        `json:"dlq"`
	// Reconcile is the last periodic reconciliation, where the service runs one.
	Reconcile *Reconcile `json:"reconcile,omitempty"`
}

// Reconcile is the result of the last periodic comparison of bookings with holds.
type Reconcile struct {
	Divergences int       `json:"divergences"`
	CheckedAt   time.Time `json:"checked_at"` // zero until the first check ran
}

// Outbox is the service's outbox backlog and its relay's counters (this replica's).
type Outbox struct {
	Pending    int64   `json:"pending"`     // rows not yet published
	LagSeconds float64 `json:"lag_seconds"` // age of the oldest of them
	Published  uint64  `json:"published"`   // by this replica's relay since it started
	Errors     uint64  `json:"errors"`
	Leader     bool    `json:"leader"` // this replica's relay is the one publishing
	// AtomicBatches counts the batches this replica's relay published as one atomic batch:
	// zero where the NATS server or the streams do not take them.
	AtomicBatches uint64 `json:"atomic_batches"`
}

// Consumer is one durable consumer, as JetStream sees it.
type Consumer struct {
	Route       string `json:"route"`
	Durable     string `json:"durable"`
	Stream      string `json:"stream"`
	Pending     uint64 `json:"pending"`     // messages not yet delivered (the consumer's lag)
	AckPending  int    `json:"ack_pending"` // delivered, not yet acked
	Redelivered int    `json:"redelivered"` // delivered more than once and not yet acked
	Error       string `json:"error,omitempty"`
}

// DLQ counts the messages in the service's dead-letter subjects.
type DLQ struct {
	Count   uint64            `json:"count"`
	ByRoute map[string]uint64 `json:"by_route"`
}

// Source is what Collect reads: the service's routes, its relay and the DLQ stream.
type Source struct {
	JS        jetstream.JetStream
	Relay     *outbox.Relay
	Routes    []consumer.Route
	Namespace string
	Service   string
	DLQStream string // the DLQ stream's name, namespace applied
}

// Collect gathers a Report. A consumer that cannot be read is reported with its error, so one
// missing durable does not hide the others; the error returned joins every failure.
func Collect(ctx context.Context, s Source) (Report, error) {
	var errs []error
	var r Report
	if s.Relay != nil {
		st, err := s.Relay.Stats(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		r.Outbox = Outbox{Pending: st.Pending, LagSeconds: st.Lag.Seconds(), Published: st.Published, Errors: st.Errors, Leader: st.IsLeader,
			AtomicBatches: st.AtomicBatches}
	}
	for _, route := range s.Routes {
		c := Consumer{Route: route.Name, Durable: route.Durable, Stream: route.Stream}
		info, err := consumerInfo(ctx, s.JS, route)
		if err != nil {
			c.Error = err.Error()
			errs = append(errs, err)
		} else {
			c.Pending, c.AckPending, c.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
		}
		r.Consumers = append(r.Consumers, c)
	}
	dlq, err := dlqCounts(ctx, s)
	if err != nil {
		errs = append(errs, err)
	}
	r.DLQ = dlq
	return r, errors.Join(errs...)
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, route consumer.Route) (*jetstream.ConsumerInfo, error) {
	// The router's durables are push consumers (see consumer.Router.ConsumerConfig).
	c, err := js.PushConsumer(ctx, route.Stream, route.Durable)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", route.Durable, route.Stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", route.Durable, route.Stream, err)
	}
	return info, nil
}

// dlqCounts counts the DLQ stream's messages per dead-letter subject of the service.
func dlqCounts(ctx context.Context, s Source) (DLQ, error) {
	d := DLQ{ByRoute: map[string]uint64{}}
	if s.DLQStream == "" {
		return d, nil
	}
	stream, err := s.JS.Stream(ctx, s.DLQStream)
	if err != nil {
		return d, fmt.Errorf("dlq stream %s: %w", s.DLQStream, err)
	}
	prefix := consumer.DLQSubject(s.Namespace, s.Service, "")
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return d, fmt.Errorf("dlq stream %s: %w", s.DLQStream, err)
	}
	for subject, n := range info.State.Subjects {
		d.ByRoute[strings.TrimPrefix(subject, prefix)] += n
		d.Count += n
	}
	return d, nil
}
