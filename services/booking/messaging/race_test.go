package messaging_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

// TestPaymentRacesExpiryThroughTheSaga holds 200 bookings, then pays and expires each at the
// same instant (the payer's clock just before the hold's end, the expirer's just after, so
// either may win). Each booking must end CONFIRMED with its seat sold on the flight, or
// EXPIRED with its seat back on sale: never both, never neither.
func TestPaymentRacesExpiryThroughTheSaga(t *testing.T) {
	t.Parallel()
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			paymentRacesExpiry(t, startOn(t, dialect, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}))
		})
	}
}

func paymentRacesExpiry(t *testing.T, s *system) {
	const n = 200
	ctx := context.Background()
	f := s.flight(t, n)
	ids := make([]string, n)
	for i := range ids {
		b, err := s.bookings.Create(ctx, "racer", f, 1)
		testenv.Fatal(t, "create", err)
		ids[i] = b.ID
	}
	await(t, "every booking HELD", func() bool { return statuses(t, s, ids)[booking.Held] == n })

	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, id := range ids {
		b, err := s.bookings.Get(ctx, id)
		testenv.Fatal(t, "get", err)
		end := b.HoldExpiresAt
		payer := s.withClock(func() time.Time { return end.Add(-time.Microsecond) })
		expirer := s.withClock(func() time.Time { return end })
		wg.Go(func() {
			<-gate
			p, err := booking.NewPayment(id, booking.PaymentResult{Ref: "ch_" + id, Amount: b.Total, Currency: b.Currency})
			if err != nil {
				t.Error(err)
				return
			}
			// Losing to the expiry is an expected outcome here.
			_ = payer.InTx(ctx, func(tx booking.Tx) error { _, err := tx.ConfirmPayment(ctx, p); return err })
		})
		wg.Go(func() {
			<-gate
			if _, err := expirer.Apply(ctx, id, booking.Expire{}); err != nil {
				t.Errorf("expire %s: %v", id, err)
			}
		})
	}
	close(gate)
	wg.Wait()

	got := statuses(t, s, ids)
	if got[booking.Confirmed]+got[booking.Expired] != n {
		t.Fatalf("statuses %v: every booking must end CONFIRMED or EXPIRED", got)
	}
	await(t, "the flight to agree with the bookings", func() bool {
		avail, held, sold := s.seats(t, f)
		return held == 0 && sold == got[booking.Confirmed] && avail == got[booking.Expired]
	})
	t.Logf("%d confirmed, %d expired", got[booking.Confirmed], got[booking.Expired])
}
