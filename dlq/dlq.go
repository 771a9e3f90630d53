// Package dlq is the operator's side of the dead-letter subjects: it lists and shows the
// messages consumers gave up on, redrives them to their handler once the cause is fixed, and
// purges the ones that should never be processed.
//
// Package consumer writes a dead-lettered message to [ns.]dlq.<service>.<route> in the DLQ
// stream, carrying the original's headers and payload plus Flightbook-Dlq-* headers with the
// error, the delivery count and where the original came from. Each entry here is one such
// message, named by its sequence in the DLQ stream (sequences are never reused, so a sequence
// read by List names the same message until it is deleted).
//
// Redrive hands each message to its route's live handler through consumer.Invoke, exactly as
// the router would, with the original message id, subject, headers and payload. Handlers are
// idempotent (package inbox), so redriving a message that was in fact processed, or redriving
// the same message twice, changes nothing the second time. A message is removed from the DLQ
// only after its handler succeeded; one that fails again stays, with nothing lost.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
)

// ErrNotFound is returned by Show for a sequence that holds no dead-lettered message.
var ErrNotFound = errors.New("dlq: no dead-lettered message at that sequence")

// Filter selects entries. Empty fields match everything.
type Filter struct {
	Service   string // the consuming service, e.g. "flight"
	Route     string // the route (handler) name, e.g. "seat-hold"
	BookingID string // booking_id in the payload
}

// Match reports whether e passes f.
func (f Filter) Match(e Entry) bool {
	return (f.Service == "" || f.Service == e.Service) &&
		(f.Route == "" || f.Route == e.Route) &&
		(f.BookingID == "" || f.BookingID == e.BookingID)
}

var token = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validate refuses a service or route that is not one subject token, which would otherwise
// widen the subject filter (a "*" or ">") instead of naming a route.
func (f Filter) validate() error {
	for _, v := range []string{f.Service, f.Route} {
		if v != "" && !token.MatchString(v) {
			return fmt.Errorf("dlq: filter %q: services and routes are one subject token of letters, digits, '-' or '_'", v)
		}
	}
	return nil
}

// Entry is one dead-lettered message.
type Entry struct {
	Seq     uint64    // sequence in the DLQ stream
	Time    time.Time // when the DLQ stream stored it
	Subject string    // the dead-letter subject

	Service         string
	Route           string
	OriginalSubject string
	OriginalStream  string
	OriginalSeq     uint64
	MsgID           string // the original's Delivery.ID, which handlers' inboxes key on
	Type            string // ce-type
	BookingID       string // booking_id in the payload, if it has one
	Error           string // the last delivery's error
	Permanent       bool   // the error was marked consumer.Permanent
	Deliveries      int

	Header nats.Header // every header, the Flightbook-Dlq-* ones included
	Data   []byte
}

// Delivery rebuilds the original delivery from e, for a handler: the original id, subject,
// headers (without the Flightbook-Dlq-* ones) and payload, counted as one more attempt.
//
// The router strips Nats-Msg-Id when it dead-letters (the DLQ copy has its own, for
// deduplication), so it is put back: the original's Delivery.ID came from its Nats-Msg-Id,
// else its ce-id, else "<stream>:<sequence>", and in the last case it had no Nats-Msg-Id.
// The stored time of the original is not kept by the router; ce-time, when the message has
// one, is the closest (handlers key on the id, not on the time).
func (e Entry) Delivery() consumer.Delivery {
	h := nats.Header{}
	for k, v := range e.Header {
		// Nats-Msg-Id here is the DLQ copy's own (durable and sequence), not the original's.
		if strings.HasPrefix(k, "Flightbook-Dlq-") || k == nats.MsgIdHdr {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	if e.MsgID != "" && e.MsgID != e.OriginalStream+":"+strconv.FormatUint(e.OriginalSeq, 10) {
		h.Set(nats.MsgIdHdr, e.MsgID)
	}
	at := e.Time
	if t, err := time.Parse(time.RFC3339Nano, e.Header.Get(events.HeaderTime)); err == nil {
		at = t
	}
	return consumer.Delivery{
		ID:       e.MsgID,
		Subject:  e.OriginalSubject,
		Header:   h,
		Data:     append([]byte(nil), e.Data...),
		Attempt:  e.Deliveries + 1,
		Stream:   e.OriginalStream,
		Sequence: e.OriginalSeq,
		Time:     at,
	}
}

// Queue reads and changes the DLQ stream of one deployment (namespace).
type Queue struct {
	js        jetstream.JetStream
	namespace string
	log       *slog.Logger
}

// New returns the DLQ of the deployment under namespace ("" in a normal deployment), the one
// the services' routers write to.
func New(js jetstream.JetStream, namespace string, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.Default()
	}
	return &Queue{js: js, namespace: namespace, log: log.With("component", "dlq")}
}

// StreamName is the name of the DLQ stream, e.g. "DLQ".
func (q *Queue) StreamName() string {
	return events.Topology{Namespace: q.namespace}.StreamName(events.StreamDLQ)
}

func (q *Queue) stream(ctx context.Context) (jetstream.Stream, error) {
	s, err := q.js.Stream(ctx, q.StreamName())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("dlq: stream %s does not exist (has a service run with namespace %q?): %w", q.StreamName(), q.namespace, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", q.StreamName(), err)
	}
	return s, nil
}

// PurgedSubject is where Purge records a purged entry of service's route:
// [ns.]dlq.purged.<service>.<route>.
func PurgedSubject(namespace, service, route string) string {
	return consumer.DLQSubject(namespace, "purged."+service, route)
}

// filterSubject is the DLQ subjects f selects. Dead-letter subjects have exactly three
// tokens after the namespace, so a wildcard service does not reach the four-token purge
// records under dlq.purged.
func (q *Queue) filterSubject(f Filter) string {
	svc, route := f.Service, f.Route
	if svc == "" {
		svc = "*"
	}
	if route == "" {
		route = "*"
	}
	return consumer.DLQSubject(q.namespace, svc, route)
}

// List returns the entries f selects, oldest first. It reads the stream one message at a
// time ("the next message at or after this sequence on these subjects"), which needs no
// consumer on the server and so leaves nothing behind.
func (q *Queue) List(ctx context.Context, f Filter) ([]Entry, error) {
	s, err := q.stream(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	subject := q.filterSubject(f)
	var out []Entry
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("dlq: read %s from sequence %d: %w", q.StreamName(), seq, err)
		}
		if e := entry(m); f.Match(e) {
			out = append(out, e)
		}
		seq = m.Sequence + 1
	}
}

// Show returns the entry at seq, or ErrNotFound.
func (q *Queue) Show(ctx context.Context, seq uint64) (Entry, error) {
	s, err := q.stream(ctx)
	if err != nil {
		return Entry{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("dlq: read %s sequence %d: %w", q.StreamName(), seq, err)
	}
	e := entry(m)
	if e.Service == "" || e.Route == "" || m.Subject != consumer.DLQSubject(q.namespace, e.Service, e.Route) {
		// A purge record, or something published to dlq.> by hand.
		return Entry{}, fmt.Errorf("%w: %d is on %s, not a dead-letter subject", ErrNotFound, seq, m.Subject)
	}
	return e, nil
}

func entry(m *jetstream.RawStreamMsg) Entry {
	h := m.Header
	if h == nil {
		h = nats.Header{}
	}
	e := Entry{
		Seq:             m.Sequence,
		Time:            m.Time,
		Subject:         m.Subject,
		Service:         h.Get(consumer.HeaderDLQService),
		Route:           h.Get(consumer.HeaderDLQRoute),
		OriginalSubject: h.Get(consumer.HeaderDLQOriginalSubject),
		OriginalStream:  h.Get(consumer.HeaderDLQOriginalStream),
		MsgID:           h.Get(consumer.HeaderDLQOriginalID),
		Type:            h.Get(events.HeaderType),
		Error:           h.Get(consumer.HeaderDLQError),
		Permanent:       h.Get(consumer.HeaderDLQPermanent) == "true",
		Header:          h,
		Data:            m.Data,
	}
	e.OriginalSeq, _ = strconv.ParseUint(h.Get(consumer.HeaderDLQOriginalSeq), 10, 64)
	e.Deliveries, _ = strconv.Atoi(h.Get(consumer.HeaderDLQAttempts))
	// The payload may be exactly what could not be decoded; a booking id is shown when there
	// is one, and its absence is no error.
	var p struct {
		BookingID string `json:"booking_id"`
	}
	if json.Unmarshal(m.Data, &p) == nil {
		e.BookingID = p.BookingID
	}
	return e
}

// Outcome is what happened to one entry.
type Outcome string

// Outcomes of Redrive and Purge.
const (
	Redriven      Outcome = "redriven"
	Purged        Outcome = "purged"
	WouldRedrive  Outcome = "would redrive (dry run)"
	WouldPurge    Outcome = "would purge (dry run)"
	SkippedGone   Outcome = "skipped: no longer in the DLQ (redriven or purged already)"
	SkippedNoHand Outcome = "skipped: no handler for this service and route"
	Failed        Outcome = "failed"
)

// Result is one entry's outcome.
type Result struct {
	Entry   Entry
	Outcome Outcome
	Err     error // for Failed
}

// Summary counts what a Redrive or Purge did. Read is every entry it was given; Applied the
// ones redriven or purged; Skipped the ones left alone on purpose (dry run, already gone, no
// handler); Failed the ones whose handler, purge record or delete failed. They stay in the DLQ.
type Summary struct {
	DryRun                         bool
	Read, Applied, Skipped, Failed int
	Results                        []Result
}

func (s *Summary) add(e Entry, o Outcome, err error) {
	s.Results = append(s.Results, Result{Entry: e, Outcome: o, Err: err})
	switch o {
	case Redriven, Purged:
		s.Applied++
	case Failed:
		s.Failed++
	default:
		s.Skipped++
	}
}

// String is the one-line summary an operator reads at the end.
func (s Summary) String() string {
	dry := ""
	if s.DryRun {
		dry = " (dry run: nothing changed)"
	}
	return fmt.Sprintf("read %d, applied %d, skipped %d, failed %d%s", s.Read, s.Applied, s.Skipped, s.Failed, dry)
}

// HandlerFor returns the live handler of a service's route.
type HandlerFor func(service, route string) (consumer.Handler, bool)

// RedriveOptions tune Redrive.
type RedriveOptions struct {
	DryRun bool
	// Timeout bounds each handler run, as the router's ack wait does; default 30s.
	Timeout time.Duration
}

// Redrive feeds each entry's original message to its handler, through consumer.Invoke so that
// a panic is an error as it is in the router. An entry whose handler succeeds is deleted from
// the DLQ; one whose handler fails stays, and the summary says why. Entries already gone
// (redriven or purged since they were listed) are skipped without running a handler. It stops
// early, returning ctx's error with the summary so far, only if ctx ends.
func (q *Queue) Redrive(ctx context.Context, entries []Entry, handlerFor HandlerFor, opts RedriveOptions) (Summary, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = consumer.DefaultAckWait
	}
	sum := Summary{DryRun: opts.DryRun}
	s, err := q.stream(ctx)
	if err != nil {
		return sum, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		sum.Read++
		log := q.log.With("dlq_seq", e.Seq, "service", e.Service, "route", e.Route, "msg_id", e.MsgID, "type", e.Type)
		h, ok := handlerFor(e.Service, e.Route)
		if !ok {
			sum.add(e, SkippedNoHand, nil)
			continue
		}
		present, err := q.present(ctx, s, e.Seq)
		switch {
		case err != nil:
			sum.add(e, Failed, err)
			continue
		case !present:
			sum.add(e, SkippedGone, nil)
			continue
		case opts.DryRun:
			sum.add(e, WouldRedrive, nil)
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		err = consumer.Invoke(hctx, h, e.Delivery())
		cancel()
		if err != nil {
			log.Warn("redrive failed; left in the DLQ", "error", err)
			sum.add(e, Failed, fmt.Errorf("handler: %w", err))
			continue
		}
		if err := q.remove(ctx, s, e.Seq); err != nil {
			// The handler's work is committed; a later redrive of this entry finds it in the
			// inbox and only removes it.
			log.Error("redriven but not removed from the DLQ", "error", err)
			sum.add(e, Failed, fmt.Errorf("handled, but not removed from the DLQ (redriving it again is harmless): %w", err))
			continue
		}
		log.Info("message redriven and removed from the DLQ", "original_subject", e.OriginalSubject, "booking_id", e.BookingID)
		sum.add(e, Redriven, nil)
	}
	return sum, nil
}

// present reports whether the DLQ stream still holds seq.
func (q *Queue) present(ctx context.Context, s jetstream.Stream, seq uint64) (bool, error) {
	_, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dlq: read %s sequence %d: %w", q.StreamName(), seq, err)
	}
	return true, nil
}

// remove deletes seq from the DLQ stream. Another operator may have removed it meanwhile,
// which is what was wanted; the server's reply to that loses its error code, so presence is
// checked again rather than the error matched.
func (q *Queue) remove(ctx context.Context, s jetstream.Stream, seq uint64) error {
	err := s.DeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	if present, perr := q.present(ctx, s, seq); perr == nil && !present {
		return nil
	}
	return fmt.Errorf("dlq: delete %s sequence %d: %w", q.StreamName(), seq, err)
}

// PurgeRecord is the body of the message Purge leaves on PurgedSubject for each entry it
// deletes: enough to say what was dropped, when, by whom and why, without the payload.
type PurgeRecord struct {
	DLQStream       string    `json:"dlq_stream"`
	DLQSeq          uint64    `json:"dlq_seq"`
	Service         string    `json:"service"`
	Route           string    `json:"route"`
	OriginalSubject string    `json:"original_subject"`
	MsgID           string    `json:"msg_id"`
	Type            string    `json:"type,omitempty"`
	BookingID       string    `json:"booking_id,omitempty"`
	Error           string    `json:"error"`
	Deliveries      int       `json:"deliveries"`
	DeadLetteredAt  time.Time `json:"dead_lettered_at"`
	PurgedAt        time.Time `json:"purged_at"`
	By              string    `json:"by,omitempty"`
	Reason          string    `json:"reason,omitempty"`
}

// PurgeOptions say who purges and why, for the record.
type PurgeOptions struct {
	DryRun bool
	By     string
	Reason string
}

// Purge deletes entries from the DLQ, leaving a record of each.
//
// The record is a small JSON message (PurgeRecord) published to
// [ns.]dlq.purged.<service>.<route> before the entry is deleted, not only a log line: the
// operator's terminal is not an audit trail, while the record is stored in the DLQ stream
// itself (whose subjects are dlq.>), kept as long as dead letters are and readable with any
// NATS tool. List and Show never return records (their subjects have four tokens, dead
// letters three). A record carries the Nats-Msg-Id "purged:<stream>:<seq>", so a purge retried
// after a failed delete records the entry once.
func (q *Queue) Purge(ctx context.Context, entries []Entry, opts PurgeOptions) (Summary, error) {
	sum := Summary{DryRun: opts.DryRun}
	s, err := q.stream(ctx)
	if err != nil {
		return sum, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		sum.Read++
		present, err := q.present(ctx, s, e.Seq)
		switch {
		case err != nil:
			sum.add(e, Failed, err)
			continue
		case !present:
			sum.add(e, SkippedGone, nil)
			continue
		case opts.DryRun:
			sum.add(e, WouldPurge, nil)
			continue
		}
		if err := q.record(ctx, e, opts); err != nil {
			sum.add(e, Failed, err)
			continue
		}
		if err := q.remove(ctx, s, e.Seq); err != nil {
			sum.add(e, Failed, err)
			continue
		}
		q.log.Warn("dead-lettered message purged", "dlq_seq", e.Seq, "service", e.Service, "route", e.Route,
			"msg_id", e.MsgID, "type", e.Type, "booking_id", e.BookingID, "error", e.Error, "by", opts.By, "reason", opts.Reason)
		sum.add(e, Purged, nil)
	}
	return sum, nil
}

func (q *Queue) record(ctx context.Context, e Entry, opts PurgeOptions) error {
	body, err := json.Marshal(PurgeRecord{
		DLQStream: q.StreamName(), DLQSeq: e.Seq, Service: e.Service, Route: e.Route,
		OriginalSubject: e.OriginalSubject, MsgID: e.MsgID, Type: e.Type, BookingID: e.BookingID,
		Error: e.Error, Deliveries: e.Deliveries, DeadLetteredAt: e.Time.UTC(), PurgedAt: time.Now().UTC(),
		By: opts.By, Reason: opts.Reason,
	})
	if err != nil {
		return fmt.Errorf("dlq: purge record: %w", err)
	}
	subject := PurgedSubject(q.namespace, e.Service, e.Route)
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: body}
	msg.Header.Set("Content-Type", "application/json")
	id := "purged:" + q.StreamName() + ":" + strconv.FormatUint(e.Seq, 10)
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("dlq: publish purge record to %s: %w", subject, err)
	}
	return nil
}
