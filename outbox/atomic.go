package outbox

import (
	"context"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Atomic batches. A stream that allows atomic publishing (nats-server 2.12 and later) stores
// a batch's messages together, and when it syncs every write (sync_interval: always, as
// flightbook's deployment configs and dev mode run it) it syncs once for the batch instead of
// once per message. An atomic batch has a fixed cost, about 6 ms on this machine's disk (for a
// one-replica file stream the server stages each batch in a file store of its own, created,
// synced and removed per batch), so a short batch still goes out message by message. The
// crossover measured here was between 16 and 32 messages; BenchmarkRelayAtomic drains a
// backlog 6 to 11 times faster with atomic batches (docs/performance.md, fourth session).
//
// On a server that does not sync every write, an atomic batch costs more than the messages
// sent one by one (BenchmarkJetStreamSync in deployments: 16,074 msgs/s in atomic batches of 100
// against 53,448 in windows of 100), so RelayConfig.MessageByMessage turns them off.
//
// A batch that holds a message JetStream already has (a relay killed between the acks and its
// mark, or a previous leader's last batches) is refused whole. It is rolled back like any failed
// batch, and its rows, and every row sent before them, are then sent again one by one, where
// the duplicate window drops the copies.
const (
	minAtomicBatch = 32
	maxAtomicBatch = 1000 // nats-server's default limit on an atomic batch's size
)

// errCodeAtomicDuplicate is JetStream's error code for an atomic batch that holds a message it
// already has (JSAtomicPublishContainsDuplicateMessageErr).
const errCodeAtomicDuplicate jetstream.ErrorCode = 10201

// The headers of the atomic batch protocol (ADR-50), which nats.go does not wrap.
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// atomicStreams remembers, per subject, the stream it is stored in if that stream takes atomic
// batches, or "" if it does not. A server before 2.12 ignores the stream setting and would
// store the batch's messages one by one without a word about those that fail, so the relay
// sends a batch only to a stream whose configuration says it allows them.
type atomicStreams struct {
	mu     sync.Mutex
	stream map[string]string
}

// forget drops what is known, after a refused batch: the stream may have been recreated or
// reconfigured.
func (a *atomicStreams) forget() {
	a.mu.Lock()
	a.stream = nil
	a.mu.Unlock()
}

// canSendAtomic reports whether rows can go out as one atomic batch: enough of them, none sent
// before in a refused batch, and every one to the same stream, which allows atomic batches.
func (r *Relay) canSendAtomic(ctx context.Context, rows []row) bool {
	if r.cfg.MessageByMessage || r.atomicOff.Load() || len(rows) < minAtomicBatch || len(rows) > maxAtomicBatch || rows[0].id <= r.aloneThrough.Load() {
		return false
	}
	a := &r.atomic
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stream == nil {
		a.stream = map[string]string{}
	}
	var want string
	for i, row := range rows {
		s, ok := a.stream[row.subject]
		if !ok {
			s = r.lookupAtomicStream(ctx, row.subject)
			a.stream[row.subject] = s
		}
		if s == "" || (i > 0 && s != want) {
			return false
		}
		want = s
	}
	return true
}

// lookupAtomicStream returns the stream subject is stored in if it allows atomic batches, or
// "". A failed lookup means message by message until the next refused batch.
func (r *Relay) lookupAtomicStream(ctx context.Context, subject string) string {
	name, err := r.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		r.log.Warn("outbox relay: no stream found for subject; publishing it message by message", "subject", subject, "err", err)
		return ""
	}
	s, err := r.js.Stream(ctx, name)
	if err != nil {
		r.log.Warn("outbox relay: stream info failed; publishing its subject message by message", "stream", name, "subject", subject, "err", err)
		return ""
	}
	if !s.CachedInfo().Config.AllowAtomicPublish {
		return ""
	}
	return name
}

// sendAtomic sends rows as one atomic batch on js's connection and returns the future of the
// commit's ack. The messages before the commit carry no reply subject: the server answers the
// batch once, at the commit, and refuses the commit if any of them went missing.
func (r *Relay) sendAtomic(rows []row) (jetstream.PubAckFuture, error) {
	id := nuid.Next()
	batchMsg := func(i int) (*nats.Msg, error) {
		m, err := rows[i].msg()
		if err != nil {
			return nil, err
		}
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
		return m, nil
	}
	nc := r.js.Conn()
	last := len(rows) - 1
	for i := range last {
		m, err := batchMsg(i)
		if err != nil {
			return nil, err
		}
		if err := nc.PublishMsg(m); err != nil {
			return nil, publishError(rows[i], err)
		}
	}
	m, err := batchMsg(last)
	if err != nil {
		return nil, err
	}
	m.Header.Set(batchCommitHeader, "1")
	f, err := r.js.PublishMsgAsync(m)
	if err != nil {
		return nil, publishError(rows[last], err)
	}
	return f, nil
}
