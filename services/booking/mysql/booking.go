package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
)

// Emit writes a change's effects for publication, inside the transaction that makes the
// change, so they are published if and only if the change commits. b is the booking as it
// became. The service wires it to the outbox; tests record the effects.
type Emit func(ctx context.Context, tx outbox.Execer, b booking.Booking, effects []booking.Effect) error

// Store keeps bookings and their history, payments and idempotency keys, and runs the
// saga's transitions under the booking's row lock. It implements booking.Store.
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

// NewStore returns a Store on db applying rules. emit is called in every transaction that
// produces effects; nil discards them.
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

// DB returns the store's database (the outbox relay and operator commands share it).
func (s *Store) DB() *sql.DB { return s.db }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// InTx runs fn in one transaction; see inTx for the retries of deadlocks.
func (s *Store) InTx(ctx context.Context, fn func(booking.Tx) error) error {
	return s.inTx(ctx, func(t *tx) error { return fn(t) })
}

// Create records a new PENDING booking and its SeatHoldRequested in one transaction.
func (s *Store) Create(ctx context.Context, userID string, flightID int64, seats int) (booking.Booking, error) {
	var b booking.Booking
	err := s.InTx(ctx, func(t booking.Tx) error {
		var err error
		b, err = t.Create(ctx, userID, flightID, seats)
		return err
	})
	return b, err
}

// Create implements booking.Tx.
func (t *tx) Create(ctx context.Context, userID string, flightID int64, seats int) (booking.Booking, error) {
	if err := booking.ValidateRequest(flightID, seats); err != nil {
		return booking.Booking{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return booking.Booking{}, fmt.Errorf("booking id: %w", err)
	}
	c := booking.New(id.String(), userID, flightID, seats, t.s.Now())
	b := c.Booking
	t.later(`
		INSERT INTO bookings (id, user_id, flight_id, seats, status, created_at, updated_at, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.UserID, b.FlightID, b.Seats, b.Status, b.CreatedAt, b.UpdatedAt, b.Version)
	if err := t.record(ctx, c); err != nil {
		return booking.Booking{}, err
	}
	return b, nil
}

// Get returns the booking with id, or booking.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (booking.Booking, error) {
	b, err := scanBooking(s.db.QueryRowContext(ctx, selectBooking+` WHERE id = ?`, id))
	if err != nil {
		return booking.Booking{}, fmt.Errorf("booking %s: %w", id, err)
	}
	return b, nil
}

// List returns up to q.Limit of the user's bookings, newest first, and the cursor of the next
// page ("" on the last page). Ids are UUIDv7, so id order is creation order and the keyset
// seeks the (user_id, [status,] id) index.
func (s *Store) List(ctx context.Context, q booking.ListQuery) ([]booking.Booking, string, error) {
	where, args := ` WHERE user_id = ?`, []any{q.UserID}
	if q.Status != "" {
		where += ` AND status = ?`
		args = append(args, q.Status)
	}
	if q.Before != "" {
		where += ` AND id < ?`
		args = append(args, q.Before)
	}
	args = append(args, q.Limit+1)
	rows, err := s.db.QueryContext(ctx, selectBooking+where+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list bookings: %w", err)
	}
	defer rows.Close()
	var out []booking.Booking
	for rows.Next() {
		b, err := scanBooking(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list bookings: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list bookings: %w", err)
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// History returns every recorded change of the booking, oldest first.
func (s *Store) History(ctx context.Context, id string) ([]booking.HistoryEntry, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT seq, from_status, to_status, cause, detail, at
		FROM booking_history WHERE booking_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", id, err)
	}
	defer rows.Close()
	var out []booking.HistoryEntry
	for rows.Next() {
		var h booking.HistoryEntry
		if err := rows.Scan(&h.Seq, &h.From, &h.To, &h.Cause, &h.Detail, &h.At); err != nil {
			return nil, fmt.Errorf("history of %s: %w", id, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", id, err)
	}
	return out, nil
}

// Apply applies in to the booking in a transaction of its own. See tx.Apply.
func (s *Store) Apply(ctx context.Context, id string, in booking.Input) (booking.Change, error) {
	var c booking.Change
	err := s.InTx(ctx, func(t booking.Tx) error {
		var err error
		c, err = t.Apply(ctx, id, in)
		return err
	})
	return c, err
}

// Apply locks the booking's row, applies in with the domain's rules at the store's time,
// and, unless the change is a no-op, writes the row, a history line and the effects, all in
// the transaction. It returns the change (Noop for a duplicate or a message that no longer
// applies) or the domain's error (booking.ErrInvalidTransition, ErrHoldExpired, ...) wrapped
// with the id.
func (t *tx) Apply(ctx context.Context, id string, in booking.Input) (booking.Change, error) {
	b, err := t.lock(ctx, id)
	if err != nil {
		return booking.Change{}, err
	}
	c, err := t.s.rules.Apply(b, in, t.s.Now())
	if err != nil {
		return booking.Change{}, fmt.Errorf("booking %s: %w", id, err)
	}
	if c.Noop() {
		return c, nil
	}
	if err := t.save(ctx, b.Version, c); err != nil {
		return booking.Change{}, err
	}
	return c, nil
}

// Cancel cancels a HELD or CONFIRMED booking in a transaction of its own; a confirmed one
// gets a pending refund (see RefundDue).
func (s *Store) Cancel(ctx context.Context, id string) (booking.Change, error) {
	return s.Apply(ctx, id, booking.Cancel{})
}

// Expire expires the booking if it is due, in a transaction of its own; a booking that is
// not due (paid, cancelled, not yet past its time) is left alone and the change is a no-op.
func (s *Store) Expire(ctx context.Context, id string) (booking.Change, error) {
	return s.Apply(ctx, id, booking.Expire{})
}

const selectBooking = `
	SELECT id, user_id, flight_id, seats, status, unit_price, total, currency, hold_expires_at,
	       reject_reason, payment_id, created_at, updated_at, version
	FROM bookings`

type scanner interface{ Scan(dest ...any) error }

func scanBooking(row scanner) (booking.Booking, error) {
	var b booking.Booking
	var exp sql.NullTime
	err := row.Scan(&b.ID, &b.UserID, &b.FlightID, &b.Seats, &b.Status, &b.UnitPrice, &b.Total, &b.Currency,
		&exp, &b.RejectReason, &b.PaymentID, &b.CreatedAt, &b.UpdatedAt, &b.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return booking.Booking{}, booking.ErrNotFound
	}
	if err != nil {
		return booking.Booking{}, err
	}
	if exp.Valid {
		b.HoldExpiresAt = exp.Time
	}
	return b, nil
}

// lock reads the booking under an exclusive row lock held until tx ends: every change of a
// booking goes through here, which is what makes payment, cancel and expiry mutually
// exclusive. A booking Lock has locked is not read again.
func (t *tx) lock(ctx context.Context, id string) (booking.Booking, error) {
	if b, ok := t.locked[id]; ok {
		return b, nil
	}
	b, err := scanBooking(t.queryRow(ctx, selectBooking+` WHERE id = ? FOR UPDATE`, id))
	if err != nil {
		return booking.Booking{}, fmt.Errorf("lock booking %s: %w", id, err)
	}
	return b, nil
}

// Lock reads the bookings ids under their row locks in one statement, in id order (the
// primary key's), and keeps them for Apply.
func (t *tx) Lock(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := t.query(ctx, selectBooking+` WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`) ORDER BY id FOR UPDATE`, args...)
	if err != nil {
		return fmt.Errorf("lock %d bookings: %w", len(ids), err)
	}
	defer rows.Close()
	if t.locked == nil {
		t.locked = make(map[string]booking.Booking, len(ids))
	}
	for rows.Next() {
		b, err := scanBooking(rows)
		if err != nil {
			return fmt.Errorf("lock %d bookings: %w", len(ids), err)
		}
		t.locked[b.ID] = b
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock %d bookings: %w", len(ids), err)
	}
	return nil
}

// save writes a change made under the row lock: the row (guarded by the version read under
// the lock, which can only fail if someone bypassed the lock), the history line, a refund
// owed, and the effects. All are queued; the guard is checked when they are sent, before the
// commit. (A guard the server checks itself, letting the writes go with COMMIT, needs a stored
// function, and on MySQL 8 with binary logging creating one needs SUPER or
// log_bin_trust_function_creators: a price for every deployment, for one round trip.)
func (t *tx) save(ctx context.Context, version int64, c booking.Change) error {
	b := c.Booking
	for _, e := range c.Effects {
		if e.Kind == booking.AnnounceCancelled && e.Refund > 0 {
			if err := t.owe(ctx, b, b.PaymentID, e.Refund, "cancelled", b.UpdatedAt); err != nil {
				return err
			}
		}
	}
	if err := t.record(ctx, c); err != nil {
		return err
	}
	t.laterChecked(func(n int64) error {
		if n != 1 {
			return fmt.Errorf("update booking %s: version %d changed under the row lock (%d rows)", b.ID, version, n)
		}
		return nil
	}, `
		UPDATE bookings SET status = ?, unit_price = ?, total = ?, currency = ?, hold_expires_at = ?,
		       reject_reason = ?, payment_id = ?, updated_at = ?, version = ?
		WHERE id = ? AND version = ?`,
		b.Status, b.UnitPrice, b.Total, b.Currency, nullTime(b.HoldExpiresAt),
		b.RejectReason, b.PaymentID, b.UpdatedAt.UTC(), b.Version, b.ID, version)
	if _, ok := t.locked[b.ID]; ok {
		t.locked[b.ID] = b
	}
	return nil
}

// record writes the history line and emits the effects of a change already written.
func (t *tx) record(ctx context.Context, c booking.Change) error {
	b := c.Booking
	t.laterLeaf(`
		INSERT INTO booking_history (booking_id, seq, from_status, to_status, cause, detail, at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.Version, c.From, b.Status, c.Cause, truncate(c.Detail, 512), b.UpdatedAt.UTC())
	if len(c.Effects) == 0 {
		return nil
	}
	if err := t.s.emit(ctx, t, b, c.Effects); err != nil {
		return fmt.Errorf("booking %s: emit: %w", b.ID, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
