package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead-lettered message, beside the original's own headers.
const (
	HeaderDLQError           = "Flightbook-Dlq-Error"            // the last error's text
	HeaderDLQPermanent       = "Flightbook-Dlq-Permanent"        // "true" when the error was Permanent
	HeaderDLQAttempts        = "Flightbook-Dlq-Attempts"         // deliveries made, the last included
	HeaderDLQTime            = "Flightbook-Dlq-Time"             // when it was dead-lettered, RFC 3339
	HeaderDLQService         = "Flightbook-Dlq-Service"          // the consuming service
	HeaderDLQRoute           = "Flightbook-Dlq-Route"            // the route (handler) name
	HeaderDLQDurable         = "Flightbook-Dlq-Durable"          // the durable consumer
	HeaderDLQOriginalSubject = "Flightbook-Dlq-Original-Subject" // the subject it was published on
	HeaderDLQOriginalStream  = "Flightbook-Dlq-Original-Stream"
	HeaderDLQOriginalSeq     = "Flightbook-Dlq-Original-Sequence"
	HeaderDLQOriginalID      = "Flightbook-Dlq-Original-Msg-Id" // Delivery.ID
)

// maxErrorHeader bounds the error text sent in a header; the full error is in the log.
const maxErrorHeader = 4096

// Metadata keys carrying a Delivery through a watermill message, which has only string
// metadata and a payload.
const (
	mdSubject = "flightbook.subject"
	// mdHeader prefixes a header's key: a header with one value, as nearly all are, is carried
	// as its own metadata entry. mdHeaders carries, as JSON, the headers that repeat a key,
	// which string metadata cannot hold. (All headers as one JSON entry, encoded and decoded at
	// each hop, were about 4 % of the dev process's CPU in a hot run.)
	mdHeader   = "flightbook.header."
	mdHeaders  = "flightbook.headers"
	mdAttempt  = "flightbook.attempt"
	mdStream   = "flightbook.stream"
	mdSequence = "flightbook.sequence"
	mdTime     = "flightbook.time"
)

// unmarshaler turns a JetStream message into a watermill message carrying its Delivery. It never
// fails: watermill-nats neither acks nor naks a message it cannot unmarshal, so it would be
// redelivered without ever reaching the handler or the DLQ.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	d := Delivery{Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1}
	if md, err := m.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		d.Stream = md.Stream
		d.Sequence = md.Sequence.Stream
		d.Time = md.Timestamp
	}
	d.ID = messageID(d)
	msg := message.NewMessage(d.ID, d.Data)
	msg.Metadata.Set(mdSubject, d.Subject)
	msg.Metadata.Set(mdAttempt, strconv.Itoa(d.Attempt))
	msg.Metadata.Set(mdStream, d.Stream)
	msg.Metadata.Set(mdSequence, strconv.FormatUint(d.Sequence, 10))
	msg.Metadata.Set(mdTime, d.Time.Format(time.RFC3339Nano))
	var repeated nats.Header
	for k, v := range d.Header {
		switch len(v) {
		case 0:
		case 1:
			msg.Metadata.Set(mdHeader+k, v[0])
		default:
			if repeated == nil {
				repeated = nats.Header{}
			}
			repeated[k] = v
		}
	}
	if repeated != nil {
		h, _ := json.Marshal(repeated) // a map of string slices always encodes
		msg.Metadata.Set(mdHeaders, string(h))
	}
	return msg, nil
}

func messageID(d Delivery) string {
	if id := d.Header.Get(nats.MsgIdHdr); id != "" {
		return id
	}
	if id := d.Header.Get("ce-id"); id != "" {
		return id
	}
	return d.Stream + ":" + strconv.FormatUint(d.Sequence, 10)
}

// delivery reads back what unmarshaler stored.
func delivery(msg *message.Message) (Delivery, error) {
	d := Delivery{
		ID:      msg.UUID,
		Subject: msg.Metadata.Get(mdSubject),
		Data:    msg.Payload,
		Stream:  msg.Metadata.Get(mdStream),
	}
	var err error
	if d.Attempt, err = strconv.Atoi(msg.Metadata.Get(mdAttempt)); err != nil {
		return d, fmt.Errorf("attempt: %w", err)
	}
	if d.Sequence, err = strconv.ParseUint(msg.Metadata.Get(mdSequence), 10, 64); err != nil {
		return d, fmt.Errorf("sequence: %w", err)
	}
	if d.Time, err = time.Parse(time.RFC3339Nano, msg.Metadata.Get(mdTime)); err != nil {
		return d, fmt.Errorf("time: %w", err)
	}
	d.Header = nats.Header{}
	if h := msg.Metadata.Get(mdHeaders); h != "" {
		if err := json.Unmarshal([]byte(h), &d.Header); err != nil {
			return d, fmt.Errorf("header: %w", err)
		}
	}
	for k, v := range msg.Metadata {
		if name, ok := strings.CutPrefix(k, mdHeader); ok {
			// Set directly: the key is already as the message had it.
			d.Header[name] = []string{v}
		}
	}
	return d, nil
}

// backoff gives watermill-nats the delay of each nak: after delivery n fails, Backoff[n-1].
type backoff Config

func (b backoff) WaitTime(delivered uint64) time.Duration { return Config(b).delay(int(delivered)) }

// handle is the watermill handler of route. It makes every ack decision itself: a handler error
// naks here with the backoff delay, and the function returns nil, so watermill neither logs the
// error a second time nor reacts to it (its Ack after a Nack does nothing).
func (r *Router) handle(route Route) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		d, err := delivery(msg)
		if err != nil {
			// Only a bug in this package gets here; retrying cannot fix it.
			err = Permanent(fmt.Errorf("consumer: read delivery: %w", err))
		}
		log := r.log.With("route", route.Name, "msg_id", d.ID, "subject", d.Subject,
			"attempt", d.Attempt, "stream_seq", d.Sequence)
		ctx := msg.Context()

		switch {
		case err != nil:
		case d.Attempt > r.cfg.MaxDeliver:
			// Earlier deliveries were never acked: the process died or the handler ran past
			// AckWait. Running it again could take the service down again.
			err = Permanent(fmt.Errorf("delivered %d times without an ack (max %d): the handler hung past the ack wait or the process died", d.Attempt, r.cfg.MaxDeliver))
		default:
			start := time.Now()
			err = Invoke(ctx, route.Handler, d)
			if err == nil {
				log.Debug("handled", "took", time.Since(start))
				return nil
			}
			if p, ok := err.(*PanicError); ok {
				log.Error("handler panicked", "panic", fmt.Sprint(p.Value), "stack", p.Stack)
			}
		}

		if !IsPermanent(err) && d.Attempt < r.cfg.MaxDeliver {
			delay := r.cfg.delay(d.Attempt)
			log.Warn("handler failed; will retry", "error", err, "retry_in", delay, "max_deliver", r.cfg.MaxDeliver)
			msg.Nack()
			return nil
		}
		if dlqErr := r.deadLetter(ctx, route, d, err); dlqErr != nil {
			// The server redelivers without limit, so the message comes back and this is tried
			// again after the longest backoff; nothing is lost while the DLQ is unreachable.
			log.Error("dead-lettering failed; will retry", "error", err, "dlq_error", dlqErr, "dlq_subject", route.DLQSubject)
			msg.Nack()
			return nil
		}
		log.Error("message dead-lettered", "error", err, "permanent", IsPermanent(err), "dlq_subject", route.DLQSubject)
		return nil
	}
}

// deadLetter publishes d to route's dead-letter subject with why it failed, and waits for
// JetStream to store it. Its Nats-Msg-Id is the route's durable plus the original's stream
// sequence, so if the ack of the original is lost and it is dead-lettered again, JetStream's
// duplicate window stores it once.
func (r *Router) deadLetter(ctx context.Context, route Route, d Delivery, cause error) error {
	h := nats.Header{}
	for k, v := range d.Header {
		switch k {
		case nats.MsgIdHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSeqHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastMsgIdHdr:
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(HeaderDLQError, headerValue(cause.Error()))
	h.Set(HeaderDLQPermanent, strconv.FormatBool(IsPermanent(cause)))
	h.Set(HeaderDLQAttempts, strconv.Itoa(d.Attempt))
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(HeaderDLQService, r.service)
	h.Set(HeaderDLQRoute, route.Name)
	h.Set(HeaderDLQDurable, route.Durable)
	h.Set(HeaderDLQOriginalSubject, d.Subject)
	h.Set(HeaderDLQOriginalStream, d.Stream)
	h.Set(HeaderDLQOriginalSeq, strconv.FormatUint(d.Sequence, 10))
	h.Set(HeaderDLQOriginalID, d.ID)

	// The delivery's context may already be cancelled (ack wait passed); dead-lettering must
	// still happen, within its own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := route.Durable + ":" + strconv.FormatUint(d.Sequence, 10)
	msg := &nats.Msg{Subject: route.DLQSubject, Header: h, Data: d.Data}
	if _, err := r.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish to %s: %w", route.DLQSubject, err)
	}
	return nil
}

// headerValue makes s safe as a NATS header value: one line, bounded.
func headerValue(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
	if len(s) > maxErrorHeader {
		s = s[:maxErrorHeader] + "..."
	}
	return s
}

func stack() string { return string(debug.Stack()) }
