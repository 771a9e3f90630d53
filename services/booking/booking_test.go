package booking_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/validation"
)

var (
	t0    = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rules = booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}
)

func pending() booking.Booking { return booking.New("b1", "u1", 7, 2, t0).Booking }

// held is a booking held at t0 for 10 minutes, 2 seats at 50.00 EUR.
func held() booking.Booking {
	c, err := rules.Apply(pending(), booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"}, t0)
	if err != nil {
		panic(err)
	}
	return c.Booking
}

// in returns a held booking forced into status s (as if it had got there).
func in(s booking.Status) booking.Booking {
	b := held()
	b.Status = s
	return b
}

type effect = booking.Effect

func TestApply(t *testing.T) {
	t.Parallel()
	exp := t0.Add(10 * time.Minute)
	heldInput := booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"}
	pay := booking.Pay{Amount: 10000, Currency: "EUR", PaymentID: "p1"}
	tests := []struct {
		name    string
		b       booking.Booking
		in      booking.Input
		at      time.Time
		status  booking.Status
		effects []effect
		noop    bool
		err     error
	}{
		// SeatsHeld
		{"held", pending(), heldInput, t0, booking.Held, []effect{{Kind: booking.AnnounceHeld}}, false, nil},
		{"held twice", held(), heldInput, t0.Add(time.Second), booking.Held, nil, true, nil},
		{"held after confirm", in(booking.Confirmed), heldInput, t0, booking.Confirmed, nil, true, nil},
		{"held after expiry", in(booking.Expired), heldInput, t0, booking.Expired, []effect{{Kind: booking.RequestRelease, Reason: "late_hold"}}, false, nil},
		{"held after cancel", in(booking.Cancelled), heldInput, t0, booking.Cancelled, []effect{{Kind: booking.RequestRelease, Reason: "late_hold"}}, false, nil},
		{"held after reject", in(booking.Rejected), heldInput, t0, booking.Rejected, []effect{{Kind: booking.RequestRelease, Reason: "late_hold"}}, false, nil},
		// SeatHoldRejected
		{"rejected", pending(), booking.SeatHoldRejected{Reason: "sold_out"}, t0, booking.Rejected, []effect{{Kind: booking.AnnounceRejected, Reason: "sold_out"}}, false, nil},
		{"rejected twice", in(booking.Rejected), booking.SeatHoldRejected{Reason: "sold_out"}, t0, booking.Rejected, nil, true, nil},
		{"rejected after held", held(), booking.SeatHoldRejected{Reason: "sold_out"}, t0, booking.Held, nil, true, nil},
		{"rejected after pending expiry", in(booking.Expired), booking.SeatHoldRejected{Reason: "sold_out"}, t0, booking.Expired, nil, true, nil},
		// Pay
		{"pay", held(), pay, exp.Add(-time.Nanosecond), booking.Confirmed, []effect{{Kind: booking.RequestConfirm}, {Kind: booking.AnnounceConfirmed, PaymentID: "p1"}}, false, nil},
		{"pay at expiry", held(), pay, exp, "", nil, false, booking.ErrHoldExpired},
		{"pay expired", in(booking.Expired), pay, t0, "", nil, false, booking.ErrHoldExpired},
		{"pay twice", in(booking.Confirmed), pay, t0, "", nil, false, booking.ErrAlreadyPaid},
		{"pay cancelled", in(booking.Cancelled), pay, t0, "", nil, false, booking.ErrInvalidTransition},
		{"pay rejected", in(booking.Rejected), pay, t0, "", nil, false, booking.ErrInvalidTransition},
		{"pay pending", pending(), pay, t0, "", nil, false, booking.ErrInvalidTransition},
		{"pay too little", held(), booking.Pay{Amount: 9999, Currency: "EUR"}, t0, "", nil, false, booking.ErrAmountMismatch},
		{"pay too much", held(), booking.Pay{Amount: 10001, Currency: "EUR"}, t0, "", nil, false, booking.ErrAmountMismatch},
		{"pay other currency", held(), booking.Pay{Amount: 10000, Currency: "USD"}, t0, "", nil, false, booking.ErrAmountMismatch},
		// Cancel
		{"cancel held", held(), booking.Cancel{}, t0, booking.Cancelled, []effect{{Kind: booking.RequestRelease, Reason: "cancelled"}, {Kind: booking.AnnounceCancelled}}, false, nil},
		{"cancel confirmed", in(booking.Confirmed), booking.Cancel{}, t0, booking.Cancelled, []effect{{Kind: booking.RequestRelease, Reason: "cancelled"}, {Kind: booking.AnnounceCancelled, Refund: 10000}}, false, nil},
		{"cancel pending", pending(), booking.Cancel{}, t0, "", nil, false, booking.ErrInvalidTransition},
		{"cancel twice", in(booking.Cancelled), booking.Cancel{}, t0, "", nil, false, booking.ErrInvalidTransition},
		{"cancel expired", in(booking.Expired), booking.Cancel{}, t0, "", nil, false, booking.ErrInvalidTransition},
		{"cancel rejected", in(booking.Rejected), booking.Cancel{}, t0, "", nil, false, booking.ErrInvalidTransition},
		// Expire
		{"expire held at expiry", held(), booking.Expire{}, exp, booking.Expired, []effect{{Kind: booking.RequestRelease, Reason: "expired"}, {Kind: booking.AnnounceExpired, PreviousStatus: booking.Held}}, false, nil},
		{"expire held early", held(), booking.Expire{}, exp.Add(-time.Nanosecond), booking.Held, nil, true, nil},
		{"expire pending at timeout", pending(), booking.Expire{}, t0.Add(2 * time.Minute), booking.Expired, []effect{{Kind: booking.RequestRelease, Reason: "expired"}, {Kind: booking.AnnounceExpired, PreviousStatus: booking.Pending}}, false, nil},
		{"expire pending early", pending(), booking.Expire{}, t0.Add(time.Minute), booking.Pending, nil, true, nil},
		{"expire confirmed", in(booking.Confirmed), booking.Expire{}, t0.Add(time.Hour), booking.Confirmed, nil, true, nil},
		{"expire cancelled", in(booking.Cancelled), booking.Expire{}, t0.Add(time.Hour), booking.Cancelled, nil, true, nil},
		{"expire twice", in(booking.Expired), booking.Expire{}, t0.Add(time.Hour), booking.Expired, nil, true, nil},
		// Acknowledgements: history only, in any status.
		{"released", in(booking.Cancelled), booking.SeatsReleased{}, t0, booking.Cancelled, nil, false, nil},
		{"confirmed by flight", in(booking.Confirmed), booking.SeatsConfirmed{}, t0, booking.Confirmed, nil, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.b
			c, err := rules.Apply(tc.b, tc.in, tc.at)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if c.Booking.Status != tc.status || !slices.Equal(c.Effects, tc.effects) || c.Noop() != tc.noop {
				t.Fatalf("got %s %+v noop=%v, want %s %+v noop=%v", c.Booking.Status, c.Effects, c.Noop(), tc.status, tc.effects, tc.noop)
			}
			if c.From != before.Status {
				t.Errorf("From = %s, want %s", c.From, before.Status)
			}
			if c.Noop() {
				if c.Booking != before {
					t.Errorf("no-op changed the booking: %+v", c.Booking)
				}
				return
			}
			if c.Booking.Version != before.Version+1 || !c.Booking.UpdatedAt.Equal(tc.at) || c.Detail == "" {
				t.Errorf("recorded change: version %d (was %d), updated %s, detail %q", c.Booking.Version, before.Version, c.Booking.UpdatedAt, c.Detail)
			}
		})
	}
}

func TestHeldSetsPriceAndExpiry(t *testing.T) {
	t.Parallel()
	b := held()
	if b.UnitPrice != 5000 || b.Total != 10000 || b.Currency != "EUR" || !b.HoldExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("held booking: %+v", b)
	}
	c, _ := rules.Apply(pending(), booking.SeatHoldRejected{Reason: "flight_not_found"}, t0)
	if c.Booking.RejectReason != "flight_not_found" {
		t.Fatalf("reject reason %q", c.Booking.RejectReason)
	}
	c, _ = rules.Apply(held(), booking.Pay{Amount: 10000, Currency: "EUR", PaymentID: "p9"}, t0)
	if c.Booking.PaymentID != "p9" {
		t.Fatalf("payment id %q", c.Booking.PaymentID)
	}
}

func TestAmountMismatchNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		amount   int64
		currency string
		fields   []string
	}{
		{9999, "EUR", []string{"amount"}},
		{10000, "USD", []string{"currency"}},
		{1, "usd", []string{"amount", "currency"}},
	} {
		err := held().CheckAmount(tc.amount, tc.currency)
		fe, ok := validation.As(err)
		if !errors.Is(err, booking.ErrAmountMismatch) || !ok {
			t.Fatalf("%d %s: %v", tc.amount, tc.currency, err)
		}
		var got []string
		for _, f := range fe {
			got = append(got, f.Field)
		}
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%d %s: fields %v, want %v", tc.amount, tc.currency, got, tc.fields)
		}
	}
}

func TestValidateRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flight int64
		seats  int
		fields []string
	}{
		{1, 1, nil},
		{1, 9, nil},
		{0, 1, []string{"flight_id"}},
		{-3, 1, []string{"flight_id"}},
		{1, 0, []string{"seats"}},
		{1, 10, []string{"seats"}},
		{1, 100, []string{"seats"}},
		{0, 0, []string{"flight_id", "seats"}},
	} {
		fe, _ := validation.As(booking.ValidateRequest(tc.flight, tc.seats))
		var got []string
		for _, f := range fe {
			got = append(got, f.Field)
		}
		if !slices.Equal(got, tc.fields) {
			t.Errorf("flight %d seats %d: %v, want %v", tc.flight, tc.seats, got, tc.fields)
		}
	}
}

func TestFakeGateway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := booking.NewFakeGateway()
	r1, err := g.Charge(ctx, booking.ChargeRequest{IdempotencyKey: "b1", Amount: 100, Currency: "EUR", CardToken: booking.CardSuccess})
	if err != nil || r1.Ref == "" {
		t.Fatalf("success card: %v %+v", err, r1)
	}
	r2, err := g.Charge(ctx, booking.ChargeRequest{IdempotencyKey: "b1", Amount: 100, Currency: "EUR", CardToken: booking.CardSuccess})
	if err != nil || r2 != r1 {
		t.Fatalf("repeat charge: %v %+v, want %+v", err, r2, r1)
	}
	if _, err := g.Charge(ctx, booking.ChargeRequest{IdempotencyKey: "b2", Amount: 100, Currency: "EUR", CardToken: booking.CardDecline}); !errors.Is(err, booking.ErrPaymentDeclined) {
		t.Fatalf("decline card: %v", err)
	}
	if _, err := g.Charge(ctx, booking.ChargeRequest{IdempotencyKey: "b3", Amount: 100, Currency: "EUR", CardToken: booking.CardTimeout}); !errors.Is(err, booking.ErrGatewayTimeout) {
		t.Fatalf("timeout card: %v", err)
	}
	// The timed-out charge went through; the retry gets it instead of a second charge.
	r3, err := g.Charge(ctx, booking.ChargeRequest{IdempotencyKey: "b3", Amount: 100, Currency: "EUR", CardToken: booking.CardTimeout})
	if err != nil || r3.Ref == "" {
		t.Fatalf("retry after timeout: %v %+v", err, r3)
	}
	if g.Charges() != 2 {
		t.Fatalf("charges = %d, want 2 (b1 once, b3 once)", g.Charges())
	}
}

func TestCheckFlight(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	open := booking.Flight{ID: 7, Number: "FB7", DepartureTime: now.Add(time.Hour)}
	tests := []struct {
		name  string
		f     booking.Flight
		found bool
		ok    bool
	}{
		{"open", open, true, true},
		{"unknown", booking.Flight{}, false, false},
		{"cancelled", booking.Flight{ID: 7, Number: "FB7", DepartureTime: now.Add(time.Hour), Cancelled: true}, true, false},
		{"departing now", booking.Flight{ID: 7, Number: "FB7", DepartureTime: now}, true, false},
		{"departed", booking.Flight{ID: 7, Number: "FB7", DepartureTime: now.Add(-time.Minute)}, true, false},
		{"only seen cancelled", booking.Flight{ID: 7, Number: "FB7", Cancelled: true}, true, false},
	}
	for _, tc := range tests {
		err := booking.CheckFlight(7, tc.f, tc.found, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: CheckFlight = %v, want ok %v", tc.name, err, tc.ok)
		}
		if fe, isField := validation.As(err); err != nil && (!isField || len(fe) != 1 || fe[0].Field != "flight_id") {
			t.Errorf("%s: error %v is not one flight_id field error", tc.name, err)
		}
	}
}
