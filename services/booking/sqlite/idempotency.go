package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/services/booking"
)

// ClaimKey claims key in the transaction, for a request whose whole work happens in it: if
// it commits, the key and the work are there together; if it rolls back, neither is. It
// returns the stored response when key was already completed with the same request,
// booking.ErrKeyReused when it was used for another request, and booking.ErrKeyInProgress
// when another request holds it.
//
// A concurrent request with the same key waits for this transaction's write lock, then sees
// the completed key and replays it.
func (t *tx) ClaimKey(ctx context.Context, key booking.Key) (*booking.Response, error) {
	res, err := t.tx.ExecContext(ctx, `
		INSERT INTO idempotency_keys (user_id, "key", request_hash, status, created_at)
		VALUES (?, ?, ?, 'in_progress', ?)
		ON CONFLICT (user_id, "key") DO NOTHING`,
		key.UserID, key.Key, key.Hash, text(time.Now()))
	if err != nil {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	} else if n == 1 {
		return nil, nil
	}
	var (
		hash, status, createdText string
		code                      int
		body                      []byte
		created                   time.Time
	)
	err = t.tx.QueryRowContext(ctx, `
		SELECT request_hash, status, response_status, response_body, created_at
		FROM idempotency_keys WHERE user_id = ? AND "key" = ?`,
		key.UserID, key.Key).Scan(&hash, &status, &code, &body, &createdText)
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if err := (timeCol{&created}).Scan(createdText); err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	switch {
	case hash != key.Hash:
		return nil, booking.ErrKeyReused
	case status == "done":
		return &booking.Response{Status: code, Body: body}, nil
	case time.Since(created) < t.s.keyStaleAfter:
		return nil, booking.ErrKeyInProgress
	}
	// Stale: its request died. Take it over; no other writer can meanwhile, but the guard
	// keeps the statement right on its own.
	res, err = t.tx.ExecContext(ctx, `
		UPDATE idempotency_keys SET created_at = ?
		WHERE user_id = ? AND "key" = ? AND status = 'in_progress' AND created_at = ?`,
		text(time.Now()), key.UserID, key.Key, createdText)
	if err != nil {
		return nil, fmt.Errorf("take over idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, booking.ErrKeyInProgress
	}
	return nil, nil
}

// ClaimKey claims key in a transaction of its own and commits it, for a request that does
// work outside the database (a payment): other requests with key see it in progress
// meanwhile. Complete it in the transaction that does the work, or release it.
func (s *Store) ClaimKey(ctx context.Context, key booking.Key) (*booking.Response, error) {
	var r *booking.Response
	err := s.InTx(ctx, func(t booking.Tx) error {
		var err error
		r, err = t.ClaimKey(ctx, key)
		return err
	})
	return r, err
}

// CompleteKey stores the response of the request that claimed key, in the transaction that
// did its work.
func (t *tx) CompleteKey(ctx context.Context, key booking.Key, r booking.Response) error {
	_, err := t.tx.ExecContext(ctx, `
		UPDATE idempotency_keys SET status = 'done', response_status = ?, response_body = ?
		WHERE user_id = ? AND "key" = ?`,
		r.Status, r.Body, key.UserID, key.Key)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	return nil
}

// ReleaseKey forgets a claimed key whose request failed, so the client may retry with it.
func (s *Store) ReleaseKey(ctx context.Context, key booking.Key) error {
	_, err := s.db.ExecContext(ctx, `
		DELETE FROM idempotency_keys WHERE user_id = ? AND "key" = ? AND status = 'in_progress'`,
		key.UserID, key.Key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// ClaimMessage records in the inbox that consumer processed msgID; see inbox.ClaimSQLite.
func (t *tx) ClaimMessage(ctx context.Context, consumer, msgID string) (bool, error) {
	return inbox.ClaimSQLite(ctx, t.tx, consumer, msgID)
}

// ClaimMessages claims each message in turn: SQLite runs in the process, so there are no
// round trips to save. Its transaction already holds every booking's lock (see Lock).
func (t *tx) ClaimMessages(ctx context.Context, msgs []booking.Message, _ []string) ([]bool, error) {
	first := make([]bool, len(msgs))
	for i, m := range msgs {
		var err error
		if first[i], err = t.ClaimMessage(ctx, m.Consumer, m.ID); err != nil {
			return nil, err
		}
	}
	return first, nil
}

// Lock does nothing: the transaction holds the database's write lock from its BEGIN
// IMMEDIATE, which covers every booking.
func (t *tx) Lock(context.Context, []string) error { return nil }
