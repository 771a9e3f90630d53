package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Header names of the CloudEvents NATS protocol binding, binary content mode. NATS headers are
// case-sensitive, and the binding (and the CloudEvents SDKs) use these lower-case names.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderSubject     = "ce-subject"
	HeaderContentType = "content-type"
	// HeaderTraceParent is the W3C trace context; producers set it on Message.Header when
	// tracing is on, and Decode passes it through untouched.
	HeaderTraceParent = "traceparent"
)

// SpecVersion is the CloudEvents version of every flightbook event.
const SpecVersion = "1.0"

// ContentType is the media type of every payload.
const ContentType = "application/json"

// ErrUndecodable is wrapped by every error Decode returns. Such a message can never be
// decoded however often it is redelivered, so a consumer should dead-letter it at once.
var ErrUndecodable = errors.New("undecodable event")

// ErrUnknownType is wrapped, beside ErrUndecodable, when ce-type is not a registered contract:
// perhaps a newer version than this build knows.
var ErrUnknownType = errors.New("unknown event type")

// Message is an encoded event ready for the outbox and NATS.
type Message struct {
	ID          string      // ce-id, also Nats-Msg-Id: a UUIDv7, so ids sort by creation time
	Subject     string      // full NATS subject, namespace applied
	Header      nats.Header // ce-* headers, content-type and Nats-Msg-Id
	Data        []byte      // JSON payload
	AggregateID string      // ce-subject: the booking or flight id, for ordering and lookups
}

// NATS returns m as a NATS message to publish.
func (m Message) NATS() *nats.Msg {
	return &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
}

// Envelope is a decoded message: the CloudEvents attributes and the typed event.
type Envelope struct {
	ID          string    // ce-id
	Type        string    // ce-type
	Source      string    // ce-source, the publishing service, e.g. "flightbook/booking"
	Subject     string    // ce-subject, the aggregate id
	Time        time.Time // ce-time, in UTC
	TraceParent string    // traceparent header, empty when the producer did not trace
	Event       Event     // the payload as its contract type (a value, e.g. events.SeatsHeld)
}

// Topology names streams and subjects, with an optional namespace so several deployments (or
// parallel tests) share one NATS server: namespace "t1a2b" gives streams "T1A2B_BOOKING" with
// subjects "t1a2b.booking.>".
type Topology struct {
	Namespace string // lower-case token prefixed to every subject; empty in a normal deployment
	Source    string // ce-source of this service, e.g. "flightbook/booking"
}

// Subject returns the full NATS subject for a base subject.
func (t Topology) Subject(base string) string {
	if t.Namespace == "" {
		return base
	}
	return t.Namespace + "." + base
}

// StreamName returns the full stream name for a base stream name: "BOOKING" stays "BOOKING"
// without a namespace and becomes "T1A2B_BOOKING" under namespace "t1a2b".
func (t Topology) StreamName(base string) string {
	if t.Namespace == "" {
		return base
	}
	return strings.ToUpper(t.Namespace) + "_" + base
}

// Encode validates ev and wraps it in a new message with a fresh UUIDv7 id and the current time.
// It refuses an event that breaks its contract: better the producer's transaction fails than
// every consumer dead-letters the message.
func (t Topology) Encode(ev Event) (Message, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Message{}, fmt.Errorf("events: new event id: %w", err)
	}
	return t.encode(ev, id.String(), time.Now())
}

func (t Topology) encode(ev Event, id string, at time.Time) (Message, error) {
	if ev == nil {
		return Message{}, errors.New("events: encode: nil event")
	}
	c := byGoType[reflect.TypeOf(ev)]
	if c == nil {
		// Checked by Go type, before calling any method, so a nil *SeatsHeld is refused
		// rather than dereferenced; decoders hand back values, so producers send values.
		return Message{}, fmt.Errorf("events: encode %T: not a registered event type (pass the value, not a pointer)", ev)
	}
	if t.Source == "" {
		return Message{}, fmt.Errorf("events: encode %s: topology has no Source (ce-source is required)", c.Type)
	}
	if err := validate(ev); err != nil {
		return Message{}, fmt.Errorf("events: encode %s: %w", c.Type, err)
	}
	if u, ok := ev.(interface{ inUTC() Event }); ok {
		ev = u.inUTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return Message{}, fmt.Errorf("events: encode %s: %w", c.Type, err)
	}
	h := nats.Header{}
	h.Set(HeaderSpecVersion, SpecVersion)
	h.Set(HeaderID, id)
	h.Set(HeaderType, c.Type)
	h.Set(HeaderSource, t.Source)
	h.Set(HeaderTime, at.UTC().Format(time.RFC3339Nano))
	h.Set(HeaderSubject, ev.AggregateID())
	h.Set(HeaderContentType, ContentType)
	h.Set(nats.MsgIdHdr, id)
	return Message{
		ID:          id,
		Subject:     t.Subject(c.Subject),
		Header:      h,
		Data:        data,
		AggregateID: ev.AggregateID(),
	}, nil
}

func validate(ev Event) error {
	if v, ok := ev.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// Decode checks a received message against the envelope rules and its contract and returns
// it with the typed event. subject is the NATS subject it arrived on, with or without a
// namespace; it must end with the contract's subject, and "" skips that check (for a message
// read back from a dead-letter subject). Every error wraps ErrUndecodable and names what is
// wrong: a missing header, the spec version, an unknown type, a subject that does not match the
// type, bad JSON, or the payload fields that break the contract.
func Decode(subject string, h nats.Header, data []byte) (Envelope, error) {
	env, err := decode(subject, h, data)
	if err != nil {
		where := "message"
		if env.ID != "" {
			where = "event " + env.ID
		}
		if subject != "" {
			where += " on " + subject
		}
		return Envelope{}, fmt.Errorf("events: decode %s: %w: %w", where, ErrUndecodable, err)
	}
	return env, nil
}

var requiredHeaders = []string{HeaderSpecVersion, HeaderID, HeaderType, HeaderSource, HeaderTime, HeaderSubject}

func decode(subject string, h nats.Header, data []byte) (Envelope, error) {
	var missing []string
	for _, name := range requiredHeaders {
		if header(h, name) == "" {
			missing = append(missing, name)
		}
	}
	env := Envelope{ID: header(h, HeaderID)}
	if len(missing) > 0 {
		return env, fmt.Errorf("missing header %s", strings.Join(missing, ", "))
	}
	if v := header(h, HeaderSpecVersion); v != SpecVersion {
		return env, fmt.Errorf("header %s is %q, want %q", HeaderSpecVersion, v, SpecVersion)
	}
	if ct := header(h, HeaderContentType); ct != "" {
		// An absent content type is JSON by the CloudEvents rules; a present one must say so.
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ContentType {
			return env, fmt.Errorf("header %s is %q, want %q", HeaderContentType, ct, ContentType)
		}
	}
	at, err := time.Parse(time.RFC3339Nano, header(h, HeaderTime))
	if err != nil {
		return env, fmt.Errorf("header %s is %q, not an RFC 3339 time", HeaderTime, header(h, HeaderTime))
	}
	env.Type = header(h, HeaderType)
	env.Source = header(h, HeaderSource)
	env.Subject = header(h, HeaderSubject)
	env.Time = at.UTC()
	env.TraceParent = header(h, HeaderTraceParent)

	c := byType[env.Type]
	if c == nil {
		return env, fmt.Errorf("%w %q", ErrUnknownType, env.Type)
	}
	if subject != "" && subject != c.Subject && !strings.HasSuffix(subject, "."+c.Subject) {
		return env, fmt.Errorf("type %s belongs on subject %s, not %s", c.Type, c.Subject, subject)
	}
	if len(data) == 0 {
		return env, fmt.Errorf("%s: empty body", c.Type)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return env, fmt.Errorf("%s: bad JSON: %w", c.Type, err)
	}
	if obj == nil {
		return env, fmt.Errorf("%s: bad JSON: body is null, want an object", c.Type)
	}
	if err := checkPresent(obj, c.required); err != nil {
		return env, fmt.Errorf("%s: %w", c.Type, err)
	}
	ev, err := c.decode(data)
	if err != nil {
		return env, fmt.Errorf("%s: bad JSON: %w", c.Type, err)
	}
	if err := validate(ev); err != nil {
		return env, fmt.Errorf("%s: %w", c.Type, err)
	}
	if u, ok := ev.(interface{ inUTC() Event }); ok {
		ev = u.inUTC()
	}
	if ev.AggregateID() != env.Subject {
		return env, fmt.Errorf("header %s is %q but the payload is about %q", HeaderSubject, env.Subject, ev.AggregateID())
	}
	env.Event = ev
	return env, nil
}

// header returns the first value of a header. NATS header names are case-sensitive; the exact
// binding name is tried first, then any casing, since a gateway or another SDK may have
// canonicalised the names the way HTTP does.
func header(h nats.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return vs[0]
		}
	}
	return ""
}

// DecodeAs decodes a message that must be an E, as a consumer bound to E's subject expects.
// A message of another type is undecodable for that consumer, so the error wraps
// ErrUndecodable like every other Decode failure.
func DecodeAs[E Event](subject string, h nats.Header, data []byte) (E, error) {
	var zero E
	env, err := Decode(subject, h, data)
	if err != nil {
		return zero, err
	}
	ev, ok := env.Event.(E)
	if !ok {
		return zero, fmt.Errorf("%w: message %s is %s, not %T", ErrUndecodable, env.ID, env.Type, zero)
	}
	return ev, nil
}
