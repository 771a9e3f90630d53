package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/booking"
)

// ConfirmPayment confirms the booking with a charge already made, in the transaction: it
// locks the row, re-checks that the booking is still HELD, unexpired and owed exactly p's
// amount, records the payment and writes the CONFIRMED booking with its effects. If the
// booking changed since the charge was made (expired, cancelled, paid by another request) it
// returns the domain's error and writes nothing: the caller then records the charge with
// RecordLatePayment.
func (t *tx) ConfirmPayment(ctx context.Context, p booking.Payment) (booking.Change, error) {
	c, err := t.Apply(ctx, p.BookingID, booking.Pay{Amount: p.Amount, Currency: p.Currency, PaymentID: p.ID})
	if err != nil {
		return booking.Change{}, err
	}
	t.later(`
		INSERT INTO payments (id, booking_id, amount, currency, status, gateway_ref, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.BookingID, p.Amount, p.Currency, booking.PaymentSucceeded, p.GatewayRef, c.Booking.UpdatedAt)
	return c, nil
}

// RecordLatePayment records a charge that could not confirm its booking and owes its refund,
// unless the charge is the one that already paid the booking (the gateway answers every
// charge of a booking with its first, so two racing payment requests get the same charge).
// It reports whether a refund is owed; RefundDue then makes it.
func (s *Store) RecordLatePayment(ctx context.Context, p booking.Payment) (refundOwed bool, err error) {
	err = s.inTx(ctx, func(t *tx) error {
		b, err := t.lock(ctx, p.BookingID)
		if err != nil {
			return err
		}
		var status, id string
		err = t.queryRow(ctx, `SELECT id, status FROM payments WHERE gateway_ref = ?`, p.GatewayRef).Scan(&id, &status)
		switch {
		case err == nil:
			// Known charge: it paid the booking, or its refund is already owed.
			refundOwed = status != booking.PaymentSucceeded
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find payment %s: %w", p.GatewayRef, err)
		}
		now := s.Now()
		t.later(`
			INSERT INTO payments (id, booking_id, amount, currency, status, gateway_ref, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.BookingID, p.Amount, p.Currency, booking.PaymentRefundDue, p.GatewayRef, now)
		b.Currency = p.Currency
		refundOwed = true
		return t.owe(ctx, b, p.ID, p.Amount, "late_payment", now)
	})
	return refundOwed, err
}

// owe records a pending refund of a payment; a payment is refunded at most once.
func (t *tx) owe(ctx context.Context, b booking.Booking, paymentID string, amount int64, reason string, now time.Time) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("refund id: %w", err)
	}
	t.later(`
		INSERT IGNORE INTO refunds (id, booking_id, payment_id, amount, currency, reason, status, created_at)
		VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`,
		id.String(), b.ID, paymentID, amount, b.Currency, reason, now.UTC())
	return nil
}

// RefundDue sends the booking's pending refunds to the gateway and marks them done. It runs
// after the transaction that owed them has committed: the gateway is idempotent by refund id,
// so a refund sent but not marked (a crash in between) is sent again harmlessly.
func (s *Store) RefundDue(ctx context.Context, gw booking.PaymentGateway, bookingID string) (int, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT r.id, r.payment_id, p.gateway_ref, r.amount, r.currency
		FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.booking_id = ? AND r.status = 'pending'`, bookingID)
	if err != nil {
		return 0, fmt.Errorf("refunds of %s: %w", bookingID, err)
	}
	type due struct {
		id, paymentID string
		req           booking.RefundRequest
	}
	var dues []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.paymentID, &d.req.PaymentRef, &d.req.Amount, &d.req.Currency); err != nil {
			rows.Close()
			return 0, fmt.Errorf("refunds of %s: %w", bookingID, err)
		}
		d.req.IdempotencyKey = d.id
		dues = append(dues, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("refunds of %s: %w", bookingID, err)
	}
	for i, d := range dues {
		if err := gw.Refund(ctx, d.req); err != nil {
			return i, fmt.Errorf("refund %s of booking %s: %w", d.id, bookingID, err)
		}
		err := s.inTx(ctx, func(t *tx) error {
			t.later(`UPDATE refunds SET status = 'done', refunded_at = ? WHERE id = ?`, s.Now(), d.id)
			t.later(`UPDATE payments SET status = ? WHERE id = ?`, booking.PaymentRefunded, d.paymentID)
			return nil
		})
		if err != nil {
			return i, fmt.Errorf("mark refund %s done: %w", d.id, err)
		}
	}
	return len(dues), nil
}

// Payments returns the booking's payments, oldest first.
func (s *Store) Payments(ctx context.Context, bookingID string) ([]booking.Payment, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, booking_id, amount, currency, status, gateway_ref, created_at
		FROM payments WHERE booking_id = ? ORDER BY created_at, id`, bookingID)
	if err != nil {
		return nil, fmt.Errorf("payments of %s: %w", bookingID, err)
	}
	defer rows.Close()
	var out []booking.Payment
	for rows.Next() {
		var p booking.Payment
		if err := rows.Scan(&p.ID, &p.BookingID, &p.Amount, &p.Currency, &p.Status, &p.GatewayRef, &p.CreatedAt); err != nil {
			return nil, fmt.Errorf("payments of %s: %w", bookingID, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
