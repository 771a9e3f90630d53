// Package replay reads a stream again from a chosen point and hands its messages to one
// route's handler, or publishes copies of them to another subject. It is the operator's tool
// after a consumer's database was restored from a backup, after a handler bug was fixed, or
// when a new consumer needs the history.
//
// It reads with an ordered consumer: an ephemeral consumer without acks that the server
// deletes shortly after the replay stops, so the services' durable consumers (their position, their
// pending acks and redelivery counts) are left exactly as they were, and a replay can run
// while the services do.
//
// Replaying into a handler is safe because every handler is idempotent through package inbox:
// the Delivery a handler gets carries the message's own id (its Nats-Msg-Id, as the live
// consumer's did), so a message already processed changes nothing. ToHandler also asks the
// inbox first, so the summary can say how many messages were new and how many had been
// processed already.
//
// The replay ends at the last message the stream held when it started: messages published
// meanwhile are the live consumers' business, and a replay into the stream it reads (a
// republish to one of its subjects) cannot chase its own copies.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
)

// Defaults of Options, used for zero fields.
const (
	DefaultAttempts      = 3
	DefaultProgressEvery = 2 * time.Second
	DefaultIdle          = 30 * time.Second
)

// maxFailures is how many failures a Summary lists one by one; the rest are only counted.
const maxFailures = 100

// Options say what to replay.
type Options struct {
	// Stream is the full name of the stream, namespace included (events.Topology.StreamName).
	Stream string
	// Subject narrows the replay to a subject filter (wildcards allowed), namespace included;
	// "" reads every subject of the stream.
	Subject string
	// FromSeq starts at this stream sequence, Since at the first message stored at or after
	// this time. At most one of them; neither starts at the stream's first message.
	FromSeq uint64
	Since   time.Time
	// BookingID, when set, keeps only the messages whose payload has this booking_id.
	BookingID string
	// DryRun changes nothing: the target only says what it would do.
	DryRun bool
	// Timeout bounds one handler run or publish, as a delivery's ack wait does; default
	// consumer.DefaultAckWait.
	Timeout time.Duration
	// Attempts is how often a message is tried before it counts as failed (default 3): a
	// replay racing the live consumer for the same rows may lose a deadlock now and then.
	// Permanent errors (consumer.Permanent) are not tried again.
	Attempts int
	// Progress, when set, receives a progress line every ProgressEvery (default 2s).
	Progress      io.Writer
	ProgressEvery time.Duration
	// Idle bounds the wait for the next message the stream is known to hold (default 30s);
	// it is reached only if messages expire or are deleted while the replay reads them.
	Idle time.Duration
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = consumer.DefaultAckWait
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Stream == "":
		return errors.New("replay: no stream given")
	case o.FromSeq > 0 && !o.Since.IsZero():
		return errors.New("replay: give a start sequence or a start time, not both")
	}
	return nil
}

// Outcome is what a Target did with one message.
type Outcome int

// Outcomes of a Target.
const (
	// Applied: the handler ran on a message its inbox did not hold, or a copy was stored (in
	// a dry run: would be).
	Applied Outcome = iota + 1
	// Skipped: the message had been dealt with already (the handler's inbox holds it, or
	// JetStream dropped the copy as a duplicate), so nothing changed.
	Skipped
)

// Target does a replay's work on one message and says what came of it. In a dry run it
// changes nothing and says what it would do.
type Target func(ctx context.Context, d consumer.Delivery, dryRun bool) (Outcome, error)

// Failure is a message whose target failed on its last attempt.
type Failure struct {
	Seq     uint64
	ID      string
	Subject string
	Err     error
}

// Summary counts what a replay did. Read is every message read from the stream (within the
// subject filter); Matched those that also passed the booking filter and went to the target;
// Applied, Skipped and Failed divide Matched. LastSeq is the stream sequence of the last
// message read, so an interrupted replay can go on with FromSeq LastSeq+1.
type Summary struct {
	DryRun                                  bool
	Read, Matched, Applied, Skipped, Failed int
	FirstSeq, LastSeq                       uint64
	// Failures lists the first 100 failures.
	Failures []Failure
}

// String is the one-line summary an operator reads at the end.
func (s Summary) String() string {
	applied, dry := "applied", ""
	if s.DryRun {
		applied, dry = "would apply", " (dry run: nothing changed)"
	}
	seqs := ""
	if s.Read > 0 {
		seqs = fmt.Sprintf(" (stream sequences %d..%d)", s.FirstSeq, s.LastSeq)
	}
	return fmt.Sprintf("read %d%s, matched %d, %s %d, skipped %d (already processed), failed %d%s",
		s.Read, seqs, s.Matched, applied, s.Applied, s.Skipped, s.Failed, dry)
}

func (s *Summary) add(d consumer.Delivery, o Outcome, err error) {
	switch {
	case err != nil:
		s.Failed++
		if len(s.Failures) < maxFailures {
			s.Failures = append(s.Failures, Failure{Seq: d.Sequence, ID: d.ID, Subject: d.Subject, Err: err})
		}
	case o == Skipped:
		s.Skipped++
	default:
		s.Applied++
	}
}

// Run replays the messages opts selects into target, one at a time in stream order, and
// returns what it did. A message whose target fails is counted and the replay goes on. Run
// returns an error, with the summary so far, only if the stream cannot be read or ctx ends.
func Run(ctx context.Context, js jetstream.JetStream, opts Options, target Target) (Summary, error) {
	opts = opts.withDefaults()
	sum := Summary{DryRun: opts.DryRun}
	if err := opts.validate(); err != nil {
		return sum, err
	}
	stream, err := js.Stream(ctx, opts.Stream)
	if err != nil {
		return sum, fmt.Errorf("replay: stream %s: %w", opts.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return sum, fmt.Errorf("replay: stream %s: %w", opts.Stream, err)
	}
	// The end is fixed before reading: later messages are the live consumers' business.
	end := info.State.LastSeq
	if info.State.Msgs == 0 {
		return sum, nil
	}

	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if opts.Subject != "" {
		cfg.FilterSubjects = []string{opts.Subject}
	}
	switch {
	case opts.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.FromSeq
	case !opts.Since.IsZero():
		since := opts.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return sum, fmt.Errorf("replay: ordered consumer on %s: %w", opts.Stream, err)
	}
	var total uint64 // what the consumer had to deliver when it was created, for progress
	if ci := cons.CachedInfo(); ci != nil {
		total = ci.NumPending
		if total == 0 {
			return sum, nil
		}
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return sum, fmt.Errorf("replay: read %s: %w", opts.Stream, err)
	}
	defer msgs.Stop()

	lastProgress := time.Now()
	for {
		nctx, cancel := context.WithTimeout(ctx, opts.Idle)
		m, err := msgs.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			return sum, fmt.Errorf("replay: read %s after sequence %d: %w", opts.Stream, sum.LastSeq, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return sum, fmt.Errorf("replay: read %s after sequence %d: metadata: %w", opts.Stream, sum.LastSeq, err)
		}
		seq := md.Sequence.Stream
		if seq > end {
			return sum, nil
		}
		d := delivery(m, md)
		matched := opts.BookingID == "" || bookingID(d.Data) == opts.BookingID
		var (
			o    Outcome
			terr error
		)
		if matched {
			o, terr = try(ctx, target, d, opts)
			if terr != nil && ctx.Err() != nil {
				// Interrupted: this message is not done, so LastSeq stays before it and a
				// replay resumed after LastSeq starts with it.
				return sum, ctx.Err()
			}
		}
		sum.Read++
		if sum.FirstSeq == 0 {
			sum.FirstSeq = seq
		}
		sum.LastSeq = seq
		if matched {
			sum.Matched++
			sum.add(d, o, terr)
		}
		if opts.Progress != nil && time.Since(lastProgress) >= opts.ProgressEvery {
			lastProgress = time.Now()
			applied := "applied"
			if opts.DryRun {
				applied = "would apply"
			}
			fmt.Fprintf(opts.Progress, "replay: %d of %d read, at sequence %d of %d; %d %s, %d skipped, %d failed\n",
				sum.Read, total, seq, end, sum.Applied, applied, sum.Skipped, sum.Failed)
		}
		// NumPending counts the matching messages stored after this one; none means the
		// replay is complete even though end may be a message the filter leaves out.
		if md.NumPending == 0 || seq >= end {
			return sum, nil
		}
	}
}

// try runs target on d up to opts.Attempts times, each bounded by opts.Timeout.
func try(ctx context.Context, target Target, d consumer.Delivery, opts Options) (Outcome, error) {
	var err error
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		var o Outcome
		o, err = target(tctx, d, opts.DryRun)
		cancel()
		if err == nil {
			return o, nil
		}
		if attempt >= opts.Attempts || consumer.IsPermanent(err) || ctx.Err() != nil {
			return 0, err
		}
		t := time.NewTimer(time.Duration(attempt) * 100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, err
		case <-t.C:
		}
	}
}

// delivery is the Delivery the live consumer made of m, with the same id: its Nats-Msg-Id,
// else its ce-id, else "<stream>:<sequence>" (consumer.Delivery.ID), so that inboxes
// recognise it.
func delivery(m jetstream.Msg, md *jetstream.MsgMetadata) consumer.Delivery {
	h := m.Headers()
	seq := md.Sequence.Stream
	id := h.Get(nats.MsgIdHdr)
	if id == "" {
		id = h.Get(events.HeaderID)
	}
	if id == "" {
		id = md.Stream + ":" + strconv.FormatUint(seq, 10)
	}
	return consumer.Delivery{
		ID: id, Subject: m.Subject(), Header: h, Data: m.Data(),
		Attempt: 1, Stream: md.Stream, Sequence: seq, Time: md.Timestamp,
	}
}

// bookingID is the booking_id of a JSON payload, "" if it has none.
func bookingID(data []byte) string {
	var p struct {
		BookingID string `json:"booking_id"`
	}
	if json.Unmarshal(data, &p) != nil {
		return ""
	}
	return p.BookingID
}

// Processed reports whether a route's handler has processed the message with id msgID
// already, that is whether its inbox holds it.
type Processed func(ctx context.Context, msgID string) (bool, error)

// ToHandler is the target that feeds each message to a route's handler through
// consumer.Invoke, as the router would. A message processed reports as processed already is
// skipped without running the handler (which would change nothing for it anyway). processed
// may be nil; every message is then handed to the handler and counted as applied, though the
// handler's inbox still makes the ones it had processed no-ops.
//
// Between the check and the handler the live consumer may process the same message; the
// handler then changes nothing, but the message is counted as applied.
func ToHandler(h consumer.Handler, processed Processed) Target {
	return func(ctx context.Context, d consumer.Delivery, dryRun bool) (Outcome, error) {
		if processed != nil {
			done, err := processed(ctx, d.ID)
			if err != nil {
				return 0, err
			}
			if done {
				return Skipped, nil
			}
		}
		if dryRun {
			return Applied, nil
		}
		if err := consumer.Invoke(ctx, h, d); err != nil {
			return 0, fmt.Errorf("handler: %w", err)
		}
		return Applied, nil
	}
}

// Headers a copy made by Republish carries, beside the original's own.
const (
	HeaderReplayOf    = "Flightbook-Replay-Of"     // "<stream>:<sequence>" of the original
	HeaderReplayMsgID = "Flightbook-Replay-Msg-Id" // the original's id (Delivery.ID)
)

// CopyID is the Nats-Msg-Id of the copy of the message with id msgID that Republish
// publishes to subject. It is derived from both, so that republishing the same message again
// within the target stream's duplicate window stores nothing new, while copies of one message
// to two subjects are both kept.
func CopyID(subject, msgID string) string {
	return "replay:" + subject + ":" + msgID
}

// Republish is the target that publishes a copy of each message to subject, with the
// original's headers and payload and a Nats-Msg-Id of its own (CopyID). A copy JetStream drops
// as a duplicate (it was republished before, within the duplicate window) counts as skipped;
// a dry run publishes nothing, so it cannot tell those apart and counts every copy as one it
// would store. subject must belong to a stream: the publish waits for JetStream's ack.
func Republish(js jetstream.JetStream, subject string) Target {
	return func(ctx context.Context, d consumer.Delivery, dryRun bool) (Outcome, error) {
		if dryRun {
			return Applied, nil
		}
		h := nats.Header{}
		for k, v := range d.Header {
			// Nats-* headers instruct JetStream (the id, expected sequences, rollups, TTLs);
			// the copy must not inherit the original's.
			if strings.HasPrefix(k, "Nats-") {
				continue
			}
			h[k] = append([]string(nil), v...)
		}
		h.Set(HeaderReplayOf, d.Stream+":"+strconv.FormatUint(d.Sequence, 10))
		h.Set(HeaderReplayMsgID, d.ID)
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: d.Data}, jetstream.WithMsgID(CopyID(subject, d.ID)))
		if err != nil {
			return 0, fmt.Errorf("republish to %s: %w", subject, err)
		}
		if ack.Duplicate {
			return Skipped, nil
		}
		return Applied, nil
	}
}
