package mysql

import (
	"context"
	"fmt"
	"slices"
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
// While the transaction has sent nothing, the claim is optimistic: nothing is sent, and the
// key's row is written in front of the transaction's first packet, as completed if
// CompleteKey comes first (a booking POST is then one round trip, and a batch of them too).
// If the key exists, that packet fails with a duplicate key and inTx runs the transaction
// again, claiming the slow way below. Either way a concurrent request with the same key blocks
// on the uncommitted row until this transaction ends, then sees the completed key and
// replays it.
func (t *tx) ClaimKey(ctx context.Context, key booking.Key) (*booking.Response, error) {
	if !t.careful && !t.begun {
		t.claims = append(t.claims, key)
		return nil, nil
	}
	_, err := t.exec(ctx, `
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
	err = t.queryRow(ctx, `
		SELECT request_hash, status, response_status, response_body, created_at
		FROM idempotency_keys WHERE user_id = ? AND `+"`key`"+` = ? LOCK IN SHARE MODE`,
		key.UserID, key.Key).Scan(&hash, &status, &code, &body, &created)
	if err != nil {
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
	// Stale: its request died. Take it over, unless another retry just did.
	res, err := t.exec(ctx, `
		UPDATE idempotency_keys SET created_at = ?
		WHERE user_id = ? AND `+"`key`"+` = ? AND status = 'in_progress' AND created_at = ?`,
		time.Now().UTC(), key.UserID, key.Key, created)
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
// did its work: with the key's row itself when the claim has not been sent yet.
func (t *tx) CompleteKey(_ context.Context, key booking.Key, r booking.Response) error {
	if i := slices.Index(t.claims, key); i >= 0 {
		t.claims = slices.Delete(t.claims, i, i+1)
		t.queueClaim(`
			INSERT INTO idempotency_keys (user_id, `+"`key`"+`, request_hash, status, response_status, response_body, created_at)
			VALUES (?, ?, ?, 'done', ?, ?, ?)`,
			key.UserID, key.Key, key.Hash, r.Status, r.Body, time.Now().UTC())
		return nil
	}
	t.later(`
		UPDATE idempotency_keys SET status = 'done', response_status = ?, response_body = ?
		WHERE user_id = ? AND `+"`key`"+` = ?`,
		r.Status, r.Body, key.UserID, key.Key)
	return nil
}

// materialiseClaims queues the optimistic claims' rows, in progress, in front of the queued
// writes, when the transaction sends something before CompleteKey could write them completed.
func (t *tx) materialiseClaims() {
	for _, key := range slices.Backward(t.claims) {
		t.queueClaim(`
			INSERT INTO idempotency_keys (user_id, `+"`key`"+`, request_hash, status, created_at)
			VALUES (?, ?, ?, 'in_progress', ?)`,
			key.UserID, key.Key, key.Hash, time.Now().UTC())
	}
	t.claims = nil
}

// ReleaseKey forgets a claimed key whose request failed, so the client may retry with it.
func (s *Store) ReleaseKey(ctx context.Context, key booking.Key) error {
	_, err := s.db.ExecContext(ctx, `
		DELETE FROM idempotency_keys WHERE user_id = ? AND `+"`key`"+` = ? AND status = 'in_progress'`,
		key.UserID, key.Key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// ClaimMessage records in the inbox that consumer processed msgID; see ClaimMessages.
func (t *tx) ClaimMessage(ctx context.Context, consumer, msgID string) (bool, error) {
	first, err := t.ClaimMessages(ctx, []booking.Message{{Consumer: consumer, ID: msgID}}, nil)
	if err != nil {
		return false, err
	}
	return first[0], nil
}

// ClaimMessages records in the inbox that each message was processed (see
// inbox.ClaimMySQLStatement) and locks the bookings lock, all in one round trip with the
// queued writes.
//
// Several messages are claimed optimistically, in one statement, as all first: a redelivered
// message is rare, and one statement costs the server much less than one per message. If the
// statement's count falls short, some were processed before (or are listed twice), and the
// transaction runs again, claiming them one by one (errCheckInbox).
func (t *tx) ClaimMessages(ctx context.Context, msgs []booking.Message, lock []string) ([]bool, error) {
	first := make([]bool, len(msgs))
	if !t.careful && len(msgs) > 1 {
		pairs := make([][2]string, len(msgs))
		for i, m := range msgs {
			pairs[i] = [2]string{m.Consumer, m.ID}
			first[i] = true
		}
		query, args, err := inbox.ClaimAllMySQLStatement(pairs...)
		if err != nil {
			return nil, err
		}
		t.laterChecked(func(n int64) error {
			if n != int64(len(msgs)) {
				return errCheckInbox
			}
			return nil
		}, query, args...)
		if err := t.sendClaims(ctx, len(msgs), lock); err != nil {
			return nil, err
		}
		return first, nil
	}
	for i, m := range msgs {
		query, args, err := inbox.ClaimMySQLStatement(m.Consumer, m.ID)
		if err != nil {
			return nil, err
		}
		t.laterChecked(func(n int64) error { first[i] = n == 1; return nil }, query, args...)
	}
	if err := t.sendClaims(ctx, len(msgs), lock); err != nil {
		return nil, err
	}
	return first, nil
}

// sendClaims sends the queued claims of n messages, with the locks of the bookings lock.
func (t *tx) sendClaims(ctx context.Context, n int, lock []string) error {
	var err error
	if len(lock) > 0 {
		// Lock's query carries the claims, and reads their counts before its own rows.
		err = t.Lock(ctx, lock)
	} else {
		err = t.flush(ctx)
	}
	if err != nil {
		return fmt.Errorf("inbox: claim %d messages: %w", n, err)
	}
	return nil
}
