package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
)

// Emit writes a change's effects for publication, inside the transaction that makes the
// change, so they are published if and only if the change commits. b is the booking as it
// became. The service wires it to the outbox (messaging.Emit with outbox.AddSQLite); tests
// record the effects.
type Emit func(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error

// Store keeps bookings and their history, payments and idempotency keys in SQLite, and runs
// the saga's transitions inside write transactions. It implements booking.Store.
type Store struct {
	db    *sql.DB
	rules booking.Rules
	emit  Emit
	now   func() time.Time
	// keyStaleAfter is how long an in_progress idempotency key may stay so before another
	// request may take it over: a request that crashed mid-way must not lock its key forever.
	keyStaleAfter time.Duration
}

var _ booking.Store = (*Store)(nil)

// DefaultKeyStaleAfter is how long an idempotency key may stay in progress before a retry
// may take it over, unless WithKeyStaleAfter says otherwise.
const DefaultKeyStaleAfter = 2 * time.Minute

// NewStore returns a Store on db (from Open) applying rules. emit is called in every
// transaction that produces effects; nil discards them.
func NewStore(db *sql.DB, rules booking.Rules, emit Emit) *Store {
	if emit == nil {
		emit = func(context.Context, outbox.Execer, booking.Booking, []booking.Effect) error { return nil }
	}
	return &Store{db: db, rules: rules, emit: emit, now: time.Now, keyStaleAfter: DefaultKeyStaleAfter}
}

// WithClock returns a copy of s that reads the time from now (tests move time with it).
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.now = now
	return &c
}

// WithKeyStaleAfter returns a copy of s on which an idempotency key in progress for longer
// than d (its request crashed) may be taken over by a retry.
func (s *Store) WithKeyStaleAfter(d time.Duration) *Store {
	c := *s
	c.keyStaleAfter = d
	return &c
}

// Now returns the store's current time in UTC, to the microsecond the columns keep, so a
// booking returned by a write equals the booking read back.
func (s *Store) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Rules returns the saga timings the store applies.
func (s *Store) Rules() booking.Rules { return s.rules }

// DB returns the store's database (the outbox relay shares it).
func (s *Store) DB() *sql.DB { return s.db }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// InTx runs fn in one write transaction.
func (s *Store) InTx(ctx context.Context, fn func(booking.Tx) error) error {
	return inTx(ctx, s.db, func(t *sql.Tx) error { return fn(&tx{s: s, tx: t}) })
}

// tx is booking.Tx over one SQLite write transaction.
type tx struct {
	s  *Store
	tx *sql.Tx
}
