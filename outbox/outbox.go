// Package outbox is the transactional outbox both services publish through.
//
// A service adds its events to the outbox table inside the same database transaction as the
// change they describe (AddMySQL, AddPostgres, AddSQLite), so an event exists if and only if
// the change committed. A Relay then claims unpublished rows in id order, publishes them to
// JetStream with Nats-Msg-Id set to the event id, waits for every ack, and marks the batch
// published. On MySQL and PostgreSQL the claim locks the rows with FOR UPDATE SKIP LOCKED and
// the mark commits that transaction. SQLite has one write lock for the whole database, which
// the relay must not hold while it waits for JetStream, and it needs no row locks: writers
// commit one at a time, so rows become visible in id order. There the relay reads a batch
// without a transaction and marks it in one short UPDATE after the acks. A relay that dies
// between the acks and the mark leaves the rows unpublished; they are sent again and
// JetStream's duplicate window drops the second copy, so delivery is at least once and storage
// is once within that window.
//
// A backlog goes to a stream that allows it as atomic batches, which a server syncing every
// write stores with one sync per batch instead of one per message (atomic.go).
//
// One relay per database is active at a time, which keeps every aggregate's events in commit
// order; the others stand by and take over when the leader goes. On MySQL and PostgreSQL the
// leader holds a session-scoped advisory lock, released when its session ends. SQLite has no
// such lock, so the leader holds a lease, a row in the outbox_lock table that it renews every
// LockInterval and deletes when it steps down; if the leader dies instead, a standby takes over
// once the lease expires, a few LockIntervals later.
package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is one event to publish: the NATS message plus the ids the outbox needs.
type Message struct {
	// ID is the event's unique id. It becomes the Nats-Msg-Id header, so it must stay the same
	// every time this event is sent.
	ID string
	// Subject is the NATS subject to publish on; a JetStream stream must capture it.
	Subject string
	// Header is sent as the message's headers (the CloudEvents ce-* attributes).
	Header nats.Header
	// Data is the message body.
	Data []byte
	// AggregateID is the booking or flight the event is about; it is stored for operators and
	// for partitioning relays later, and does not change how the message is sent.
	AggregateID string
}

// ErrInvalidMessage is returned by AddMySQL, AddPostgres and AddSQLite for a message without
// an id or a subject.
var ErrInvalidMessage = errors.New("outbox: invalid message")

// cleanupBatch is how many published rows one retention DELETE removes, so that cleanup never
// holds many row locks or writes a large undo log in one statement.
const cleanupBatch = 1000

// RelayConfig tunes a Relay. Fields left at zero take the default in their tag, so a literal
// RelayConfig{} works as well as one loaded with config.Load.
type RelayConfig struct {
	BatchSize       int           `split_words:"true" default:"500" desc:"outbox rows claimed, published and marked per transaction"`
	PollInterval    time.Duration `split_words:"true" default:"100ms" desc:"how often the relay looks for rows when nobody notified it (rows committed by other replicas)"`
	PublishTimeout  time.Duration `split_words:"true" default:"5s" desc:"how long the relay waits for JetStream to ack a batch before it rolls back and retries"`
	MaxBackoff      time.Duration `split_words:"true" default:"5s" desc:"longest wait between retries after a failed batch"`
	Retention       time.Duration `default:"72h" desc:"how long published rows are kept for republishing"`
	CleanupInterval time.Duration `split_words:"true" default:"1m" desc:"how often published rows older than the retention are deleted"`
	LockName        string        `split_words:"true" default:"flightbook.outbox" desc:"name of the leader lock; relays sharing a database and name elect one active relay"`
	LockInterval    time.Duration `split_words:"true" default:"1s" desc:"how often a standby relay tries to become leader, and the leader checks its lock session"`
	// MessageByMessage turns atomic batches off (see atomic.go).
	MessageByMessage bool `split_words:"true" default:"false" desc:"publish each event on its own even to streams that take atomic batches; atomic batches save syncs when JetStream syncs every write (sync_interval: always), and cost more than they save when it does not"`
}

// withDefaults fills the zero fields with the defaults in the struct tags.
func (c RelayConfig) withDefaults() RelayConfig {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	set(&c.PollInterval, 100*time.Millisecond)
	set(&c.PublishTimeout, 5*time.Second)
	set(&c.MaxBackoff, 5*time.Second)
	set(&c.Retention, 72*time.Hour)
	set(&c.CleanupInterval, time.Minute)
	set(&c.LockInterval, time.Second)
	if c.LockName == "" {
		c.LockName = "flightbook.outbox"
	}
	return c
}

// Stats is a relay's view of its outbox, for metrics and readiness.
type Stats struct {
	// Lag is the age of the oldest unpublished row; zero when the outbox is drained.
	Lag time.Duration
	// Pending is the number of unpublished rows.
	Pending int64
	// Published counts the rows this relay has published and marked since it was created.
	Published uint64
	// Errors counts this relay's failed batches and leader-lock failures since it was created.
	Errors uint64
	// AtomicBatches counts the batches this relay published as one atomic batch (atomic.go);
	// it stays at zero on a server or stream that does not take them.
	AtomicBatches uint64
	// IsLeader says whether this relay is the active one for its database.
	IsLeader bool
}

// row is one stored outbox row as the relay reads it.
type row struct {
	id      int64
	msgID   string
	subject string
	headers []byte
	payload []byte
}

// msg builds the NATS message for r, with Nats-Msg-Id set to the event id so that JetStream
// stores the event once however many times it is sent within the duplicate window.
func (r row) msg() (*nats.Msg, error) {
	h := nats.Header{}
	if len(r.headers) > 0 {
		if err := json.Unmarshal(r.headers, &h); err != nil {
			return nil, fmt.Errorf("outbox row %d (msg %s): decode headers: %w", r.id, r.msgID, err)
		}
		if h == nil {
			h = nats.Header{}
		}
	}
	h.Set(jetstream.MsgIDHeader, r.msgID)
	return &nats.Msg{Subject: r.subject, Header: h, Data: r.payload}, nil
}

// encodeHeaders validates m and returns its headers as the JSON stored in the table.
func encodeHeaders(m Message) (string, error) {
	if m.ID == "" || m.Subject == "" {
		return "", fmt.Errorf("%w: id %q, subject %q: both are required", ErrInvalidMessage, m.ID, m.Subject)
	}
	if len(m.Header) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m.Header)
	if err != nil {
		return "", fmt.Errorf("outbox: encode headers of %s: %w", m.ID, err)
	}
	return string(b), nil
}
