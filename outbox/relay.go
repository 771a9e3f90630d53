package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// store is what the relay needs from a database; mysqlStore, postgresStore and sqliteStore
// implement it.
type store interface {
	// claim returns up to limit unpublished rows with an id above after, lowest id first, held
	// for this relay until markPublished or rollback. MySQL and PostgreSQL lock them in an open
	// transaction and skip rows another transaction holds; SQLite locks nothing, and the leader
	// lock alone keeps them from a second sender (see sqliteStore).
	claim(ctx context.Context, after int64, limit int) (claim, error)
	// stats returns the number of unpublished rows and the age of the oldest.
	stats(ctx context.Context) (pending int64, lag time.Duration, err error)
	// deletePublished deletes up to limit rows published more than olderThan ago.
	deletePublished(ctx context.Context, olderThan time.Duration, limit int) (int64, error)
	// since returns up to limit rows created at or after since with an id above afterID, in
	// id order, published or not.
	since(ctx context.Context, since time.Time, afterID int64, limit int) ([]row, error)
	// lock tries the leader lock once, without waiting; it returns nil when another session
	// holds it.
	lock(ctx context.Context, name string) (leaderLock, error)
}

// claim is a batch of rows locked by an open transaction.
type claim interface {
	claimed() []row
	// markPublished marks every claimed row published (and commits the claim's transaction).
	markPublished(ctx context.Context) error
	// rollback leaves the rows unpublished and unlocks them, if they were locked.
	rollback()
}

// leaderLock is a held leader lock.
type leaderLock interface {
	// check fails once the lock's session is gone or no longer holds it. On SQLite it also
	// renews the lease.
	check(ctx context.Context) error
	// release gives the lock up and ends its session.
	release()
	// session is the database's id of the lock's session, or the SQLite lease's owner (for
	// tests that kill it).
	session() int64
}

// Relay publishes the outbox's rows to JetStream. Create one per service replica with
// NewMySQLRelay, NewPostgresRelay or NewSQLiteRelay and call Run; relays sharing a database
// elect one leader and the others stand by.
type Relay struct {
	store store
	js    jetstream.JetStream
	cfg   RelayConfig
	log   *slog.Logger
	wake  chan struct{}

	published atomic.Uint64
	errors    atomic.Uint64
	batches   atomic.Uint64              // published as atomic batches
	held      atomic.Pointer[leaderLock] // the leader lock while this relay leads

	atomic atomicStreams // which subjects go to a stream that takes atomic batches
	// aloneThrough is the highest row id sent before an atomic batch was refused: rows up to it
	// go out one by one (see atomic.go).
	aloneThrough atomic.Int64
	lastSent     atomic.Int64 // the highest row id sent
	atomicOff    atomic.Bool  // set when JetStream refused an atomic batch for good

	// afterAcks, when set (by tests), runs once a batch is acked and before it is marked
	// published; an error makes the batch roll back as a crash there would.
	afterAcks func(ctx context.Context, rows int) error
}

func newRelay(s store, js jetstream.JetStream, cfg RelayConfig, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "outbox.relay")
	if nc := js.Conn(); nc != nil && nc.Opts.ReconnectBufSize >= 0 {
		log.Warn("outbox relay: the NATS connection buffers publishes while reconnecting (set nats.ReconnectBufSize(-1)); after an outage events may be stored out of order")
	}
	return &Relay{
		store: s,
		js:    js,
		cfg:   cfg.withDefaults(),
		log:   log,
		wake:  make(chan struct{}, 1),
	}
}

// Notify wakes the relay to publish now; call it after committing a transaction that added
// messages. It never blocks: wake-ups that arrive while one is pending are merged, and a relay
// that is not the leader ignores them (the leader finds the rows at its next poll).
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Stats returns the outbox's backlog and this relay's counters. It queries the database, so it
// works on a standby relay too.
func (r *Relay) Stats(ctx context.Context) (Stats, error) {
	pending, lag, err := r.store.stats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("outbox stats: %w", err)
	}
	return Stats{
		Lag:           lag,
		Pending:       pending,
		Published:     r.published.Load(),
		Errors:        r.errors.Load(),
		AtomicBatches: r.batches.Load(),
		IsLeader:      r.held.Load() != nil,
	}, nil
}

// Run relays until ctx is done, then returns nil. While another relay holds the leader lock it
// retries the lock every LockInterval; once leader it publishes the outbox, deletes rows past
// the retention, and steps down if its lock session breaks. Errors talking to NATS or the
// database are logged, counted in Stats and retried with backoff; they do not end Run.
func (r *Relay) Run(ctx context.Context) error {
	for {
		lock, err := r.store.lock(ctx, r.cfg.LockName)
		switch {
		case err != nil && ctx.Err() == nil:
			r.errors.Add(1)
			r.log.Warn("outbox relay: leader lock attempt failed", "lock", r.cfg.LockName, "err", err)
		case lock != nil:
			r.lead(ctx, lock)
		}
		if !sleep(ctx, r.cfg.LockInterval) {
			return nil
		}
	}
}

// lead publishes while lock is held and ctx lasts, then releases the lock. The lock is
// released only after the publishing loop has returned, so the next leader never publishes
// while this one still has a batch in flight (which would reorder events).
func (r *Relay) lead(ctx context.Context, lock leaderLock) {
	lctx, stop := context.WithCancelCause(ctx)
	defer lock.release()
	r.held.Store(&lock)
	defer r.held.Store(nil)
	r.log.Info("outbox relay: leading", "lock", r.cfg.LockName)

	var wg sync.WaitGroup
	wg.Go(func() { r.watchLock(lctx, lock, stop) })
	wg.Go(func() { r.cleanupLoop(lctx) })
	r.publishLoop(lctx)
	stop(nil)
	wg.Wait()

	if cause := context.Cause(lctx); !errors.Is(cause, context.Canceled) {
		r.log.Warn("outbox relay: stepped down", "lock", r.cfg.LockName, "reason", cause)
	} else {
		r.log.Info("outbox relay: stepped down", "lock", r.cfg.LockName)
	}
}

// watchLock checks the lock's session every LockInterval and stops the leader as soon as it
// breaks: once the session is gone the database has released the lock, and another relay may
// already be leading.
func (r *Relay) watchLock(ctx context.Context, lock leaderLock, stop context.CancelCauseFunc) {
	t := time.NewTicker(r.cfg.LockInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A slow answer is not a lost lock: only a check that fails, or takes far longer than
		// a round trip should, makes the leader step down.
		cctx, cancel := context.WithTimeout(ctx, max(2*r.cfg.LockInterval, 2*time.Second))
		err := lock.check(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.errors.Add(1)
			stop(fmt.Errorf("leader lock lost: %w", err))
			return
		}
	}
}

// pipelineDepth is how many batches a leader has in flight: while one waits for its acks and
// commits, the next is claimed (SKIP LOCKED passes over the rows the first still locks; on
// SQLite, the claim starts above the last row sent) and sent. Messages still leave in id order, because only the loop goroutine claims and sends.
const pipelineDepth = 3

// publishLoop relays batches until ctx is done: straight on while batches come back full,
// otherwise when notified or at the next poll. It returns only once every batch it sent is
// finished.
func (r *Relay) publishLoop(ctx context.Context) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	var (
		inflight sync.WaitGroup
		slots    = make(chan struct{}, pipelineDepth)
		mu       sync.Mutex
		failure  error // the first error of a finished batch, taken by the loop
		failures int   // consecutive failed attempts, for the backoff
	)
	defer inflight.Wait()
	// While a backlog drains, each claim starts after the last row claimed: from the lowest id,
	// a claim would first step over every row marked since the last vacuum or purge (the open
	// batches keep those index entries alive), which made claims grow slower with the backlog.
	// A row of a transaction that commits late with a lower id is behind that cursor, so the
	// cursor goes back to the start after a short batch, after an error, and at least every
	// PollInterval.
	var after int64
	var rewound time.Time
	fail := func(err error) {
		mu.Lock()
		if failure == nil {
			failure = err
		}
		mu.Unlock()
	}
	takeFailure := func() error {
		mu.Lock()
		defer mu.Unlock()
		err := failure
		failure = nil
		return err
	}
	for ctx.Err() == nil {
		slots <- struct{}{} // a free place in the pipeline
		err := takeFailure()
		var sent *batch
		if err == nil {
			if time.Since(rewound) >= r.cfg.PollInterval {
				after, rewound = 0, time.Now()
			}
			if after == 0 {
				// A claim from the lowest id would meet the rows of the batches still in
				// flight, locked and not yet marked; let them finish first.
				<-slots
				inflight.Wait()
				slots <- struct{}{}
				err = takeFailure()
			}
			if err == nil {
				sent, err = r.send(ctx, after)
			}
		}
		if err != nil {
			<-slots
			// Let the other batches in flight finish before anything is sent again, so that
			// the failed rows are retried before any row after them is claimed.
			inflight.Wait()
			if also := takeFailure(); also != nil {
				err = errors.Join(err, also)
			}
			after, rewound = 0, time.Now()
			if ctx.Err() != nil {
				r.log.Info("outbox relay: batch abandoned on stopping, rows stay unpublished", "err", err)
				return
			}
			r.errors.Add(1)
			failures++
			backoff := min(50*time.Millisecond<<min(failures-1, 10), r.cfg.MaxBackoff)
			r.log.Warn("outbox relay: batch failed, rows stay unpublished", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		if sent == nil {
			<-slots
			failures = 0
			after, rewound = 0, time.Now()
		} else {
			inflight.Go(func() {
				defer func() { <-slots }()
				if err := r.finish(ctx, sent); err != nil {
					fail(err)
				}
			})
			if len(sent.rows) == r.cfg.BatchSize {
				after = sent.rows[len(sent.rows)-1].id
				continue // more are waiting
			}
			after, rewound = 0, time.Now()
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-poll.C:
		}
	}
}

// batch is a claimed batch whose messages have been sent and whose acks are awaited.
type batch struct {
	claim   claim
	rows    []row
	futures []jetstream.PubAckFuture // one per row, or the commit's alone for an atomic batch
	atomic  bool
}

// send claims the next batch after id after and sends its messages without waiting for the
// acks. It returns nil when there is nothing to publish.
func (r *Relay) send(ctx context.Context, after int64) (*batch, error) {
	// The claim is not cut short when the relay stops: a cancelled query leaves its transaction
	// to be rolled back asynchronously (by the driver, or by the server noticing a closed
	// connection), and its row locks could outlive this leader's lock. The next leader's SKIP
	// LOCKED claim would then step over those rows and publish later ones first. Instead the
	// claim finishes and, if the relay is stopping, is rolled back before send returns.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	c, err := r.store.claim(cctx, after, r.cfg.BatchSize)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		c.rollback()
		return nil, err
	}
	rows := c.claimed()
	if len(rows) == 0 {
		c.rollback()
		return nil, nil
	}
	b := &batch{claim: c, rows: rows, atomic: r.canSendAtomic(cctx, rows)}
	r.lastSent.Store(rows[len(rows)-1].id)
	if b.atomic {
		var f jetstream.PubAckFuture
		f, err = r.sendAtomic(rows)
		b.futures = []jetstream.PubAckFuture{f}
	} else {
		b.futures, err = r.sendAsync(rows)
	}
	if err != nil {
		r.refused(b, err)
		c.rollback()
		return nil, err
	}
	return b, nil
}

// refused is called for every batch that failed, with its error. After an atomic one, every
// row sent so far goes out one by one, and the streams are looked up again. If JetStream
// refused the batch for another reason than a duplicate (a batch above the server's size
// limit, atomic batches turned off on the stream, too many batches open), atomic batches are
// off for good: sending more would only be refused again.
func (r *Relay) refused(b *batch, err error) {
	if !b.atomic {
		return
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode != errCodeAtomicDuplicate && r.atomicOff.CompareAndSwap(false, true) {
		r.log.Warn("outbox relay: JetStream refused an atomic batch; publishing message by message until restart", "err", err)
	}
	// Up to pipelineDepth batches finish at once, and lastSent goes back when the loop rewinds,
	// so aloneThrough only ever grows.
	for {
		cur := r.aloneThrough.Load()
		if r.aloneThrough.CompareAndSwap(cur, max(cur, r.lastSent.Load())) {
			break
		}
	}
	r.atomic.forget()
}

// finish waits for b's acks and marks it published. On any error the transaction rolls back
// and the rows stay unpublished.
func (r *Relay) finish(ctx context.Context, b *batch) error {
	acked := b.rows
	if b.atomic {
		acked = b.rows[len(b.rows)-1:]
	}
	if err := r.awaitAcks(acked, b.futures); err != nil {
		r.refused(b, err)
		b.claim.rollback()
		if b.atomic {
			err = fmt.Errorf("atomic batch of outbox rows %d..%d: %w", b.rows[0].id, b.rows[len(b.rows)-1].id, err)
		}
		return err
	}
	if r.afterAcks != nil {
		if err := r.afterAcks(ctx, len(b.rows)); err != nil {
			b.claim.rollback()
			return err
		}
	}
	// Once JetStream has the batch, marking it is worth finishing even if the relay is stopping:
	// it saves sending the batch again. A crash here is still safe (see afterAcks).
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	if err := b.claim.markPublished(mctx); err != nil {
		// The messages are in JetStream; the next attempt sends them again and the duplicate
		// window drops the copies.
		return fmt.Errorf("outbox rows %d..%d: %w", b.rows[0].id, b.rows[len(b.rows)-1].id, err)
	}
	r.published.Add(uint64(len(b.rows)))
	if b.atomic {
		r.batches.Add(1)
	}
	r.log.Debug("outbox relay: batch published", "first_id", b.rows[0].id, "last_id", b.rows[len(b.rows)-1].id, "rows", len(b.rows))
	return nil
}

// relayBatch claims, sends and finishes one batch, and returns how many rows it published.
func (r *Relay) relayBatch(ctx context.Context) (int, error) {
	b, err := r.send(ctx, 0)
	if err != nil || b == nil {
		return 0, err
	}
	if err := r.finish(ctx, b); err != nil {
		return 0, err
	}
	return len(b.rows), nil
}

// publish sends rows and waits for all their acks.
func (r *Relay) publish(rows []row) error {
	futures, err := r.sendAsync(rows)
	if err != nil {
		return err
	}
	return r.awaitAcks(rows, futures)
}

// sendAsync sends rows with async publish, in order, on js's connection.
func (r *Relay) sendAsync(rows []row) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	for _, row := range rows {
		m, err := row.msg()
		if err != nil {
			return nil, err
		}
		f, err := r.js.PublishMsgAsync(m)
		if err != nil {
			return nil, publishError(row, err)
		}
		futures = append(futures, f)
	}
	return futures, nil
}

func publishError(r row, err error) error {
	return fmt.Errorf("publish outbox row %d (msg %s, subject %s): %w", r.id, r.msgID, r.subject, err)
}

// awaitAcks waits for the ack of every future. It deliberately does not stop when the relay's
// context ends: a leader that steps down must know its messages are stored (or failed) before
// it releases the lock, or the next leader's messages could land between them. PublishTimeout
// bounds the wait.
func (r *Relay) awaitAcks(rows []row, futures []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(r.cfg.PublishTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return publishError(rows[i], err)
		case <-timeout.C:
			return fmt.Errorf("publish outbox rows %d..%d: no ack for row %d (msg %s) within %s",
				rows[0].id, rows[len(rows)-1].id, rows[i].id, rows[i].msgID, r.cfg.PublishTimeout)
		}
	}
	return nil
}

// cleanupLoop deletes published rows older than the retention every CleanupInterval.
func (r *Relay) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := r.cleanup(ctx)
		if err != nil && ctx.Err() == nil {
			r.errors.Add(1)
			r.log.Warn("outbox relay: retention cleanup failed", "deleted", n, "err", err)
		} else if n > 0 {
			r.log.Debug("outbox relay: retention cleanup", "deleted", n)
		}
	}
}

// cleanup deletes every published row older than the retention, cleanupBatch rows per
// statement so that no statement holds many locks for long.
func (r *Relay) cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := r.store.deletePublished(ctx, r.cfg.Retention, cleanupBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete published rows older than %s: %w", r.cfg.Retention, err)
		}
		if n < cleanupBatch {
			return total, nil
		}
	}
}

// Republish publishes again every retained row created at or after since, published or not, in
// id order, and returns how many it sent. It is the operator's recovery when the broker lost
// messages. Within the stream's duplicate window JetStream drops the copies it still has;
// later, consumers' idempotency absorbs them. It does not need to be the leader.
func (r *Relay) Republish(ctx context.Context, since time.Time) (int, error) {
	var after int64
	total := 0
	for {
		rows, err := r.store.since(ctx, since, after, r.cfg.BatchSize)
		if err != nil {
			return total, fmt.Errorf("republish since %s: read rows after %d: %w", since.Format(time.RFC3339Nano), after, err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		if err := r.publish(rows); err != nil {
			return total, fmt.Errorf("republish since %s: %w", since.Format(time.RFC3339Nano), err)
		}
		total += len(rows)
		after = rows[len(rows)-1].id
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// sleep waits for d or ctx, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
