package booking

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Payment errors. A decline is final for that card; a timeout or an unavailable gateway
// leaves the outcome unknown, and the charge may be retried safely because the gateway is
// idempotent by ChargeRequest.IdempotencyKey.
var (
	ErrPaymentDeclined    = errors.New("payment declined")
	ErrGatewayTimeout     = errors.New("payment gateway timed out")
	ErrGatewayUnavailable = errors.New("payment gateway unavailable")
)

// ChargeRequest asks the gateway to take Amount (minor units) in Currency from the card that
// CardToken stands for.
type ChargeRequest struct {
	// IdempotencyKey is the booking id: the gateway charges one booking at most once, however
	// often it is asked, and answers a repeat with the first successful charge.
	IdempotencyKey string
	Amount         int64
	Currency       string
	CardToken      string
}

// PaymentResult is a successful charge.
type PaymentResult struct {
	Ref      string // the gateway's id of the charge
	Amount   int64
	Currency string
}

// RefundRequest gives a charge back in full.
type RefundRequest struct {
	IdempotencyKey string // the refund's own id: asking twice refunds once
	PaymentRef     string
	Amount         int64
	Currency       string
}

// PaymentGateway takes payments. Charge is called outside any database transaction: it is
// slow and cannot be rolled back, so the booking is confirmed afterwards in a transaction
// that re-checks the booking, and a charge that lost the race is refunded.
type PaymentGateway interface {
	Charge(ctx context.Context, req ChargeRequest) (PaymentResult, error)
	Refund(ctx context.Context, req RefundRequest) error
}

// Test card tokens of FakeGateway.
const (
	// CardSuccess is charged. An empty token is treated the same way.
	CardSuccess = "tok_success"
	// CardDecline is declined with ErrPaymentDeclined; nothing is charged.
	CardDecline = "tok_decline"
	// CardTimeout is charged, but the answer is "lost": Charge returns ErrGatewayTimeout. A
	// retry for the same booking (any token) returns the charge already made, which is what
	// makes retrying after a timeout safe.
	CardTimeout = "tok_timeout"
)

// FakeGateway is an in-memory PaymentGateway for development and tests, with the test card
// tokens above; any other token is declined. It is safe for concurrent use.
type FakeGateway struct {
	mu      sync.Mutex
	charges map[string]PaymentResult // by idempotency key
	refunds map[string]string        // refund key -> payment ref
}

// NewFakeGateway returns an empty FakeGateway.
func NewFakeGateway() *FakeGateway {
	return &FakeGateway{charges: map[string]PaymentResult{}, refunds: map[string]string{}}
}

// Charge implements PaymentGateway.
func (g *FakeGateway) Charge(ctx context.Context, req ChargeRequest) (PaymentResult, error) {
	if err := ctx.Err(); err != nil {
		return PaymentResult{}, fmt.Errorf("%w: %w", ErrGatewayTimeout, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.charges[req.IdempotencyKey]; ok {
		return r, nil
	}
	switch req.CardToken {
	case CardSuccess, "", CardTimeout:
		r := PaymentResult{Ref: "ch_" + uuid.NewString(), Amount: req.Amount, Currency: req.Currency}
		g.charges[req.IdempotencyKey] = r
		if req.CardToken == CardTimeout {
			return PaymentResult{}, ErrGatewayTimeout
		}
		return r, nil
	default:
		return PaymentResult{}, fmt.Errorf("card %s: %w", req.CardToken, ErrPaymentDeclined)
	}
}

// Refund implements PaymentGateway.
func (g *FakeGateway) Refund(ctx context.Context, req RefundRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrGatewayTimeout, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refunds[req.IdempotencyKey] = req.PaymentRef
	return nil
}

// Charges returns how many distinct charges were made, i.e. how many bookings paid.
func (g *FakeGateway) Charges() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.charges)
}

// Refunds returns how many distinct refunds were made.
func (g *FakeGateway) Refunds() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.refunds)
}

// Payment statuses.
const (
	PaymentSucceeded = "succeeded"  // it paid the booking
	PaymentRefundDue = "refund_due" // charged after the booking had ended; refund owed
	PaymentRefunded  = "refunded"   // the money went back
)

// Payment is a charge recorded against a booking.
type Payment struct {
	ID         string // our id (UUIDv7), the payment_id of BookingConfirmed
	BookingID  string
	Amount     int64
	Currency   string
	Status     string
	GatewayRef string
	CreatedAt  time.Time
}
