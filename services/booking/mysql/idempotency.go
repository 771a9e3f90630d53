package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Idempotency errors; the api answers 422 and 409.
var (
	ErrKeyReused     = errors.New("idempotency key was already used with a different request")
	ErrKeyInProgress = errors.New("a request with this idempotency key is still in progress")
)

// Key identifies one client request: the user's Idempotency-Key and a hash of the request
// (method, path and body), so that the same key cannot be replayed for another request.
type Key struct {
	UserID string
	Key    string
	Hash   string // hex SHA-256
}

// Response is a stored response, replayed to a retry with the same key and request.
type Response struct {
	Status int
	Body   []byte
}

// Keys keeps idempotency keys in MySQL, never in memory, so a retry that reaches another
// replica or a restarted process is recognised.
type Keys struct {
	db *sql.DB
	// staleAfter is how long an in_progress key may stay so before another request may take
	// it over: a request that crashed mid-way must not lock its key forever.
	staleAfter time.Duration
}

// NewKeys returns the idempotency keys on db. A key in progress for longer than staleAfter
// (a crashed request) may be taken over by a retry.
func NewKeys(db *sql.DB, staleAfter time.Duration) *Keys {
	return &Keys{db: db, staleAfter: staleAfter}
}

// ClaimTx claims k in tx, for a request whose whole work happens in tx: if tx commits, the
// key and the work are there together; if it rolls back, neither is. It returns the stored
// response when k was already completed with the same request, ErrKeyReused when it was used
// for another request, and ErrKeyInProgress when another request holds it.
//
// A concurrent request with the same key blocks on the uncommitted row until this
// transaction ends, then sees the completed key and replays it.
func (k *Keys) ClaimTx(ctx context.Context, tx *sql.Tx, key Key) (*Response, error) {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO idempotency_keys (user_id, `+"`key`"+`, request_hash, status, created_at)
		VALUES (?, ?, ?, 'in_progress', ?)`,
		key.UserID, key.Key, key.Hash, time.Now().UTC())
	if err == nil {
		return nil, nil
	}
	if mysqlErr(err) != errDupEntry {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	var (
		hash, status string
		code         int
		body         []byte
		created      time.Time
	)
	// A locking read sees the latest committed row, not this transaction's snapshot.
	err = tx.QueryRowContext(ctx, `
		SELECT request_hash, status, response_status, response_body, created_at
		FROM idempotency_keys WHERE user_id = ? AND `+"`key`"+` = ? LOCK IN SHARE MODE`,
		key.UserID, key.Key).Scan(&hash, &status, &code, &body, &created)
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	switch {
	case hash != key.Hash:
		return nil, ErrKeyReused
	case status == "done":
		return &Response{Status: code, Body: body}, nil
	case time.Since(created) < k.staleAfter:
		return nil, ErrKeyInProgress
	}
	// Stale: its request died. Take it over, unless another retry just did.
	res, err := tx.ExecContext(ctx, `
		UPDATE idempotency_keys SET created_at = ?
		WHERE user_id = ? AND `+"`key`"+` = ? AND status = 'in_progress' AND created_at = ?`,
		time.Now().UTC(), key.UserID, key.Key, created)
	if err != nil {
		return nil, fmt.Errorf("take over idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, ErrKeyInProgress
	}
	return nil, nil
}

// Claim claims k in a transaction of its own and commits it, for a request that does work
// outside the database (a payment): other requests with k see it in progress meanwhile.
// Complete or Release it when done.
func (k *Keys) Claim(ctx context.Context, key Key) (*Response, error) {
	var r *Response
	err := InTx(ctx, k.db, func(tx *sql.Tx) error {
		var err error
		r, err = k.ClaimTx(ctx, tx, key)
		return err
	})
	return r, err
}

// CompleteTx stores the response of the request that claimed k, in the transaction that did
// its work.
func (k *Keys) CompleteTx(ctx context.Context, tx *sql.Tx, key Key, r Response) error {
	_, err := tx.ExecContext(ctx, `
		UPDATE idempotency_keys SET status = 'done', response_status = ?, response_body = ?
		WHERE user_id = ? AND `+"`key`"+` = ?`,
		r.Status, r.Body, key.UserID, key.Key)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	return nil
}

// Release forgets a claimed key whose request failed, so the client may retry with it.
func (k *Keys) Release(ctx context.Context, key Key) error {
	_, err := k.db.ExecContext(ctx, `
		DELETE FROM idempotency_keys WHERE user_id = ? AND `+"`key`"+` = ? AND status = 'in_progress'`,
		key.UserID, key.Key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}
