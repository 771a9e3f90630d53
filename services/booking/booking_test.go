package booking_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func held() booking.Booking {
	b := booking.New("b1", "u1", 7, 2, t0).Booking
	return b.SeatsHeld(5000, 10000, "EUR", 10*time.Minute, t0).Booking
}

func with(s booking.Status) booking.Booking {
	b := held()
	b.Status = s
	return b
}

func kinds(c booking.Change) []booking.EffectKind {
	var ks []booking.EffectKind
	for _, e := range c.Effects {
		ks = append(ks, e.Kind)
	}
	return ks
}

func TestSagaInputs(t *testing.T) {
	pending := booking.New("b1", "u1", 7, 2, t0).Booking
	tests := []struct {
		name    string
		apply   func() booking.Change
		status  booking.Status
		effects []booking.EffectKind
	}{
		{"held", func() booking.Change { return pending.SeatsHeld(5000, 10000, "EUR", time.Minute, t0) }, booking.Held, []booking.EffectKind{booking.AnnounceHeld}},
		{"held twice", func() booking.Change { return held().SeatsHeld(5000, 10000, "EUR", time.Minute, t0) }, booking.Held, nil},
		{"held after expiry", func() booking.Change { return with(booking.Expired).SeatsHeld(5000, 10000, "EUR", time.Minute, t0) }, booking.Expired, []booking.EffectKind{booking.RequestRelease}},
		{"held after cancel", func() booking.Change { return with(booking.Cancelled).SeatsHeld(5000, 10000, "EUR", time.Minute, t0) }, booking.Cancelled, []booking.EffectKind{booking.RequestRelease}},
		{"rejected", func() booking.Change { return pending.HoldRejected("sold_out", t0) }, booking.Rejected, []booking.EffectKind{booking.AnnounceRejected}},
		{"rejected after held", func() booking.Change { return held().HoldRejected("sold_out", t0) }, booking.Held, nil},
		{"expire held at expiry", func() booking.Change { return held().Expire(2*time.Minute, t0.Add(10*time.Minute)) }, booking.Expired, []booking.EffectKind{booking.RequestRelease, booking.AnnounceExpired}},
		{"expire held too early", func() booking.Change { return held().Expire(2*time.Minute, t0.Add(9*time.Minute)) }, booking.Held, nil},
		{"expire pending after timeout", func() booking.Change { return pending.Expire(2*time.Minute, t0.Add(2*time.Minute)) }, booking.Expired, []booking.EffectKind{booking.RequestRelease, booking.AnnounceExpired}},
		{"expire confirmed", func() booking.Change { return with(booking.Confirmed).Expire(time.Minute, t0.Add(time.Hour)) }, booking.Confirmed, nil},
	}
	for _, tc := range tests {
		c := tc.apply()
		if c.Booking.Status != tc.status || !equal(kinds(c), tc.effects) {
			t.Errorf("%s: %s %v, want %s %v", tc.name, c.Booking.Status, kinds(c), tc.status, tc.effects)
		}
	}
}

func TestPayAndCancel(t *testing.T) {
	tests := []struct {
		name    string
		b       booking.Booking
		amount  int64
		at      time.Time
		err     error
		effects []booking.EffectKind
	}{
		{"pays", held(), 10000, t0.Add(time.Minute), nil, []booking.EffectKind{booking.RequestConfirm, booking.AnnounceConfirmed}},
		{"wrong amount", held(), 9999, t0.Add(time.Minute), booking.ErrAmountMismatch, nil},
		{"at expiry", held(), 10000, t0.Add(10 * time.Minute), booking.ErrHoldExpired, nil},
		{"expired", with(booking.Expired), 10000, t0, booking.ErrHoldExpired, nil},
		{"twice", with(booking.Confirmed), 10000, t0, booking.ErrAlreadyPaid, nil},
		{"cancelled", with(booking.Cancelled), 10000, t0, booking.ErrNotHeld, nil},
		{"pending", booking.New("b", "u", 1, 1, t0).Booking, 0, t0, booking.ErrNotHeld, nil},
	}
	for _, tc := range tests {
		c, err := tc.b.Pay(tc.amount, "EUR", "p1", tc.at)
		if !errors.Is(err, tc.err) || !equal(kinds(c), tc.effects) {
			t.Errorf("pay %s: %v %v, want %v %v", tc.name, err, kinds(c), tc.err, tc.effects)
		}
	}
	for _, tc := range []struct {
		b      booking.Booking
		err    error
		refund int64
	}{
		{held(), nil, 0},
		{with(booking.Confirmed), nil, 10000},
		{with(booking.Expired), booking.ErrNotCancellable, 0},
		{with(booking.Cancelled), booking.ErrNotCancellable, 0},
		{booking.New("b", "u", 1, 1, t0).Booking, booking.ErrNotCancellable, 0},
	} {
		c, err := tc.b.Cancel(t0)
		if !errors.Is(err, tc.err) {
			t.Errorf("cancel %s: %v, want %v", tc.b.Status, err, tc.err)
			continue
		}
		if err == nil && (c.Booking.Status != booking.Cancelled || c.Effects[0].Kind != booking.RequestRelease || c.Effects[1].Refund != tc.refund) {
			t.Errorf("cancel %s: %+v", tc.b.Status, c)
		}
	}
}

func equal(a, b []booking.EffectKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
