package storetest

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

func testCreateGetHistory(t *testing.T, e *env) {
	ctx := context.Background()
	b, err := e.store.Create(ctx, "alice", 7, 3)
	testenv.Fatal(t, "create", err)
	got, err := e.store.Get(ctx, b.ID)
	testenv.Fatal(t, "get", err)
	// Equal field by field, times included: the store keeps the microseconds Now returns.
	if got != b || b.Status != booking.Pending || b.Version != 1 || len(b.ID) != 36 {
		t.Fatalf("read back %+v, created %+v", got, b)
	}
	if !b.CreatedAt.Equal(e.clock.Now().Truncate(time.Microsecond)) {
		t.Fatalf("created at %v, clock %v", b.CreatedAt, e.clock.Now())
	}
	if ks := e.emitted(t, b.ID); !slices.Equal(ks, []string{"request_hold"}) {
		t.Fatalf("emitted %v", ks)
	}
	h, err := e.store.History(ctx, b.ID)
	testenv.Fatal(t, "history", err)
	if len(h) != 1 || h[0].Seq != 1 || h[0].From != "" || h[0].To != booking.Pending || !h[0].At.Equal(b.CreatedAt) {
		t.Fatalf("history %+v", h)
	}
	if _, err := e.store.Get(ctx, "nope"); !errors.Is(err, booking.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := e.store.Create(ctx, "alice", 7, 10); err == nil {
		t.Fatal("created a booking of 10 seats")
	}
	testenv.Fatal(t, "ping", e.store.Ping(ctx))
}

// testBatchClaimAndLock is the reply consumer's batch: claim several messages at once (one of
// them processed before, one listed twice), lock several bookings at once (one unknown), and
// apply two inputs to one locked booking in turn, each seeing the other's change. Then the
// same batch again changes nothing.
func testBatchClaimAndLock(t *testing.T, e *env) {
	ctx := context.Background()
	b1, err := e.store.Create(ctx, "alice", 7, 1)
	testenv.Fatal(t, "create", err)
	b2, err := e.store.Create(ctx, "bob", 7, 2)
	testenv.Fatal(t, "create", err)
	err = e.store.InTx(ctx, func(tx booking.Tx) error {
		_, err := tx.ClaimMessage(ctx, "booking.seats-held", "old")
		return err
	})
	testenv.Fatal(t, "claim old", err)

	msgs := []booking.Message{
		{Consumer: "booking.seats-held", ID: "h1"},
		{Consumer: "booking.seats-held", ID: "old"},
		{Consumer: "booking.seats-confirmed", ID: "h1"}, // another consumer's inbox
		{Consumer: "booking.seats-held", ID: "h2"},
		{Consumer: "booking.seats-held", ID: "h2"},
	}
	batch := func() (first []bool, changes []booking.Change, err error) {
		err = e.store.InTx(ctx, func(tx booking.Tx) error {
			changes = nil
			// The claims and the locks in one step, an unknown booking among them.
			first, err = tx.ClaimMessages(ctx, msgs, []string{b1.ID, b2.ID, "01900000-0000-7000-8000-000000000000"})
			if err != nil {
				return err
			}
			for _, step := range []struct {
				id string
				in booking.Input
			}{
				{b1.ID, booking.SeatsHeld{UnitPrice: 100, Total: 100, Currency: "EUR"}},
				{b2.ID, booking.SeatsHeld{UnitPrice: 100, Total: 200, Currency: "EUR"}},
				{b2.ID, booking.Cancel{}},
			} {
				c, err := tx.Apply(ctx, step.id, step.in)
				if err != nil {
					return err
				}
				changes = append(changes, c)
			}
			return nil
		})
		return first, changes, err
	}
	first, changes, err := batch()
	testenv.Fatal(t, "batch", err)
	if want := []bool{true, false, true, true, false}; !slices.Equal(first, want) {
		t.Fatalf("claims %v, want %v", first, want)
	}
	if changes[0].Booking.Status != booking.Held || changes[1].Booking.Status != booking.Held ||
		changes[2].From != booking.Held || changes[2].Booking.Status != booking.Cancelled || changes[2].Booking.Version != 3 {
		t.Fatalf("changes %+v", changes)
	}
	for id, want := range map[string]booking.Status{b1.ID: booking.Held, b2.ID: booking.Cancelled} {
		if got, _ := e.store.Get(ctx, id); got.Status != want {
			t.Fatalf("booking %s: %s, want %s", id, got.Status, want)
		}
	}
	if h, _ := e.store.History(ctx, b2.ID); len(h) != 3 {
		t.Fatalf("history of %s: %d lines, want 3", b2.ID, len(h))
	}

	// Redelivered: every claim says processed, and the unknown booking is reported by Apply.
	first, _, err = batch()
	if !slices.Equal(first, []bool{false, false, false, false, false}) {
		t.Fatalf("claims again %v", first)
	}
	if !errors.Is(err, booking.ErrInvalidTransition) {
		t.Fatalf("applying again: %v, want the cancelled booking's refusal", err)
	}
	err = e.store.InTx(ctx, func(tx booking.Tx) error {
		if err := tx.Lock(ctx, []string{"01900000-0000-7000-8000-000000000000"}); err != nil {
			return err
		}
		_, err := tx.Apply(ctx, "01900000-0000-7000-8000-000000000000", booking.SeatsReleased{})
		return err
	})
	if !errors.Is(err, booking.ErrNotFound) {
		t.Fatalf("unknown booking after Lock: %v", err)
	}
}

// testSaga walks one booking through every input, as the consumers and the api apply them.
func testSaga(t *testing.T, e *env) {
	ctx := context.Background()
	b, err := e.store.Create(ctx, "alice", 7, 2)
	testenv.Fatal(t, "create", err)

	// The consumer's path: the inbox claim and the change in one transaction, twice (a
	// redelivery), and a different message with the same content (a duplicate reply).
	for i, msgID := range []string{"m1", "m1", "m2"} {
		var first bool
		var c booking.Change
		err := e.store.InTx(ctx, func(tx booking.Tx) error {
			var err error
			if first, err = tx.ClaimMessage(ctx, "booking.seats-held", msgID); err != nil || !first {
				return err
			}
			c, err = tx.Apply(ctx, b.ID, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
			return err
		})
		testenv.Fatal(t, "seats held", err)
		if want := i != 1; first != want || (first && c.Noop() != (i == 2)) {
			t.Fatalf("delivery %d of %s: first %v, noop %v", i, msgID, first, c.Noop())
		}
	}
	b, _ = e.store.Get(ctx, b.ID)
	if b.Status != booking.Held || b.Total != 10000 || b.UnitPrice != 5000 || b.Currency != "EUR" ||
		!b.HoldExpiresAt.Equal(e.clock.Now().Truncate(time.Microsecond).Add(rules.HoldTTL)) {
		t.Fatalf("held: %+v", b)
	}
	p := payment(t, b.ID, "ch_1")
	c, err := confirm(ctx, e.store, p)
	testenv.Fatal(t, "confirm", err)
	if c.Booking.Status != booking.Confirmed || c.Booking.PaymentID != p.ID {
		t.Fatalf("confirmed: %+v", c.Booking)
	}
	if got, _ := e.store.Get(ctx, b.ID); got != c.Booking {
		t.Fatalf("read back %+v, confirmed %+v", got, c.Booking)
	}
	// Paying again is refused and writes nothing.
	if _, err := confirm(ctx, e.store, payment(t, b.ID, "ch_2")); !errors.Is(err, booking.ErrAlreadyPaid) {
		t.Fatalf("second payment: %v", err)
	}
	_, err = e.store.Apply(ctx, b.ID, booking.SeatsConfirmed{})
	testenv.Fatal(t, "seats confirmed", err)

	// Cancel the confirmed booking: release, refund owed, then refunded through the gateway.
	_, err = e.store.Apply(ctx, b.ID, booking.Cancel{})
	testenv.Fatal(t, "cancel", err)
	gw := booking.NewFakeGateway()
	n, err := e.store.RefundDue(ctx, gw, b.ID)
	if err != nil || n != 1 || gw.Refunds() != 1 {
		t.Fatalf("refund: %d %v (gateway %d)", n, err, gw.Refunds())
	}
	if n, _ := e.store.RefundDue(ctx, gw, b.ID); n != 0 {
		t.Fatalf("refunded twice: %d", n)
	}
	if _, err := e.store.Apply(ctx, b.ID, booking.Cancel{}); !errors.Is(err, booking.ErrInvalidTransition) {
		t.Fatalf("cancel twice: %v", err)
	}
	// A late SeatsHeld for the cancelled booking gives the seats back.
	_, err = e.store.Apply(ctx, b.ID, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
	testenv.Fatal(t, "late hold", err)
	_, err = e.store.Apply(ctx, b.ID, booking.SeatsReleased{})
	testenv.Fatal(t, "released", err)

	want := []string{"request_hold", "announce_held", "request_confirm", "announce_confirmed",
		"request_release:cancelled", "announce_cancelled", "request_release:late_hold"}
	if got := e.emitted(t, b.ID); !slices.Equal(got, want) {
		t.Errorf("emitted %v\nwant    %v", got, want)
	}
	wantCauses := []string{"requested", "seats_held", "paid", "seats_confirmed", "cancelled", "late_hold", "seats_released"}
	if got := e.causes(t, b.ID); !slices.Equal(got, wantCauses) {
		t.Errorf("history %v\nwant    %v", got, wantCauses)
	}
	b, _ = e.store.Get(ctx, b.ID)
	if b.Status != booking.Cancelled || b.Version != int64(len(wantCauses)) {
		t.Errorf("final %s version %d", b.Status, b.Version)
	}
	ps, _ := e.store.Payments(ctx, b.ID)
	if len(ps) != 1 || ps[0].Status != booking.PaymentRefunded || ps[0].ID != p.ID || ps[0].GatewayRef != "ch_1" || ps[0].Amount != 10000 {
		t.Errorf("payments %+v", ps)
	}
}

func testRejectedAndUnknown(t *testing.T, e *env) {
	ctx := context.Background()
	b, _ := e.store.Create(ctx, "alice", 999, 1)
	for range 2 {
		_, err := e.store.Apply(ctx, b.ID, booking.SeatHoldRejected{Reason: "flight_not_found"})
		testenv.Fatal(t, "rejected", err)
	}
	b, _ = e.store.Get(ctx, b.ID)
	if b.Status != booking.Rejected || b.RejectReason != "flight_not_found" || b.Version != 2 {
		t.Fatalf("rejected: %+v", b)
	}
	if got := e.emitted(t, b.ID); !slices.Equal(got, []string{"request_hold", "announce_rejected:flight_not_found"}) {
		t.Fatalf("emitted %v", got)
	}
	if _, err := e.store.Apply(ctx, "0190aaaa-0000-7000-8000-000000000000", booking.SeatsHeld{}); !errors.Is(err, booking.ErrNotFound) {
		t.Fatalf("unknown booking: %v", err)
	}
}

// A failing Emit (the outbox) undoes the whole change, and so does an error later in the
// same transaction.
func testEmitFailureRollsBack(t *testing.T, e *env) {
	ctx := context.Background()
	b := e.held(t, "alice")
	failing := e.adapter.Open(Config{Rules: rules, Now: e.clock.Now, KeyStaleAfter: time.Minute,
		Emit: func(context.Context, outbox.Execer, booking.Booking, []booking.Effect) error {
			return errors.New("outbox down")
		}})
	if _, err := failing.Apply(ctx, b.ID, booking.Cancel{}); err == nil {
		t.Fatal("cancel succeeded without its effects")
	}
	errLater := errors.New("later")
	err := e.store.InTx(ctx, func(tx booking.Tx) error {
		if _, err := tx.Apply(ctx, b.ID, booking.Cancel{}); err != nil {
			return err
		}
		return errLater
	})
	if !errors.Is(err, errLater) {
		t.Fatalf("InTx returned %v", err)
	}
	after, _ := e.store.Get(ctx, b.ID)
	if after != b || len(e.causes(t, b.ID)) != 2 || len(e.emitted(t, b.ID)) != 2 {
		t.Fatalf("booking changed: %+v, history %v, emitted %v", after, e.causes(t, b.ID), e.emitted(t, b.ID))
	}
}

func testListPages(t *testing.T, e *env) {
	ctx := context.Background()
	var ids []string
	for i := range 7 {
		b, err := e.store.Create(ctx, "alice", int64(i+1), 1)
		testenv.Fatal(t, "create", err)
		ids = append(ids, b.ID)
	}
	_, _ = e.store.Create(ctx, "bob", 1, 1)
	_, err := e.store.Apply(ctx, ids[2], booking.SeatsHeld{UnitPrice: 1, Total: 1, Currency: "EUR"})
	testenv.Fatal(t, "hold", err)

	var got []string
	cursor := ""
	pages := 0
	for {
		page, next, err := e.store.List(ctx, booking.ListQuery{UserID: "alice", Before: cursor, Limit: 3})
		testenv.Fatal(t, "list", err)
		pages++
		for _, b := range page {
			got = append(got, b.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := slices.Clone(ids) // UUIDv7: creation order, even within a millisecond
	slices.Reverse(want)
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("pages %d: %v\nwant %v", pages, got, want)
	}
	held, next, err := e.store.List(ctx, booking.ListQuery{UserID: "alice", Status: booking.Held, Limit: 10})
	if err != nil || len(held) != 1 || held[0].ID != ids[2] || next != "" {
		t.Fatalf("held filter: %v %v %q", held, err, next)
	}
	if none, next, err := e.store.List(ctx, booking.ListQuery{UserID: "carol", Limit: 10}); err != nil || len(none) != 0 || next != "" {
		t.Fatalf("carol: %v %v %q", none, err, next)
	}
}

func testExpireDue(t *testing.T, e *env) {
	ctx := context.Background()
	start := e.clock.Now()
	pending, _ := e.store.Create(ctx, "alice", 1, 1)
	held := e.held(t, "alice")
	paid := e.held(t, "alice")
	_, err := confirm(ctx, e.store, payment(t, paid.ID, "ch_paid"))
	testenv.Fatal(t, "pay", err)

	// Nothing due yet.
	if claimed, expired, err := booking.ExpireDue(ctx, e.store, 10); claimed != 0 || expired != 0 || err != nil {
		t.Fatalf("early: %d %d %v", claimed, expired, err)
	}
	// Past the pending timeout, before the hold's expiry: only the pending one.
	e.clock.Set(start.Add(rules.PendingTimeout))
	if claimed, expired, err := booking.ExpireDue(ctx, e.store, 10); claimed != 1 || expired != 1 || err != nil {
		t.Fatalf("pending timeout: %d %d %v", claimed, expired, err)
	}
	e.clock.Set(start.Add(rules.HoldTTL + time.Second))
	if claimed, expired, err := booking.ExpireDue(ctx, e.store, 10); claimed != 1 || expired != 1 || err != nil {
		t.Fatalf("hold expiry: %d %d %v", claimed, expired, err)
	}
	for id, want := range map[string]booking.Status{pending.ID: booking.Expired, held.ID: booking.Expired, paid.ID: booking.Confirmed} {
		b, _ := e.store.Get(ctx, id)
		if b.Status != want {
			t.Errorf("%s: %s, want %s", id, b.Status, want)
		}
	}
	if got := e.emitted(t, pending.ID); !slices.Equal(got, []string{"request_hold", "request_release:expired", "announce_expired:PENDING"}) {
		t.Errorf("pending emitted %v", got)
	}
	if got := e.emitted(t, held.ID); !slices.Equal(got, []string{"request_hold", "announce_held", "request_release:expired", "announce_expired:HELD"}) {
		t.Errorf("held emitted %v", got)
	}

	// A claim is limited, oldest first.
	for range 3 {
		e.held(t, "carol")
	}
	e.clock.Advance(rules.HoldTTL)
	ids, err := e.store.ClaimExpired(ctx, 2)
	if err != nil || len(ids) != 2 {
		t.Fatalf("claim 2: %v %v", ids, err)
	}

	// The scheduler loop drains a backlog bigger than one batch.
	for range 25 {
		e.held(t, "bob")
	}
	e.clock.Advance(rules.HoldTTL)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- booking.RunExpiry(runCtx, e.store, time.Hour, 10, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _, err := e.store.List(ctx, booking.ListQuery{UserID: "bob", Status: booking.Held, Limit: 100})
		testenv.Fatal(t, "list held", err)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bookings still HELD", len(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunExpiry: %v", err)
	}
}

// testPayCancelExpireRace races a payment, a cancel and the expiry of the same booking, for
// many bookings at the same instant. The payer's clock is just before the hold's expiry and
// the expirer's just after, so each transition is valid on its own: only the booking's lock
// decides. Exactly one of payment, cancel and expiry may end the HELD booking; after a
// payment only the cancel still applies (with a refund). Every outcome must carry exactly its
// own effects and payments.
func testPayCancelExpireRace(t *testing.T, e *env) {
	ctx := context.Background()
	const n = 150
	start := e.clock.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.held(t, "racer").ID
	}
	expiry := start.Truncate(time.Microsecond).Add(rules.HoldTTL)
	payer := e.withClock(func() time.Time { return expiry.Add(-time.Microsecond) })
	expirer := e.withClock(func() time.Time { return expiry })

	var wg sync.WaitGroup
	gate := make(chan struct{})
	payErrs, cancelErrs, expErrs := make([]error, n), make([]error, n), make([]error, n)
	expired := make([]bool, n)
	for i, id := range ids {
		wg.Go(func() {
			<-gate
			p, err := booking.NewPayment(id, booking.PaymentResult{Ref: "ch_" + id, Amount: 10000, Currency: "EUR"})
			if err != nil {
				payErrs[i] = err
				return
			}
			_, payErrs[i] = confirm(ctx, payer, p)
		})
		wg.Go(func() {
			<-gate
			_, cancelErrs[i] = e.store.Apply(ctx, id, booking.Cancel{})
		})
		wg.Go(func() {
			<-gate
			c, err := expirer.Apply(ctx, id, booking.Expire{})
			expired[i], expErrs[i] = !c.Noop(), err
		})
	}
	close(gate)
	wg.Wait()

	outcomes := map[string]int{}
	for i, id := range ids {
		if expErrs[i] != nil {
			t.Fatalf("expire %s: %v", id, expErrs[i])
		}
		b, err := e.store.Get(ctx, id)
		testenv.Fatal(t, "get", err)
		causes := e.causes(t, id)[2:]   // after requested, seats_held
		effects := e.emitted(t, id)[2:] // after request_hold, announce_held
		ps, err := e.store.Payments(ctx, id)
		testenv.Fatal(t, "payments", err)
		ok := false
		switch {
		case slices.Equal(causes, []string{"expired"}):
			ok = b.Status == booking.Expired && expired[i] && len(ps) == 0 &&
				errors.Is(payErrs[i], booking.ErrHoldExpired) && errors.Is(cancelErrs[i], booking.ErrInvalidTransition) &&
				slices.Equal(effects, []string{"request_release:expired", "announce_expired:HELD"})
		case slices.Equal(causes, []string{"cancelled"}):
			ok = b.Status == booking.Cancelled && !expired[i] && len(ps) == 0 &&
				errors.Is(payErrs[i], booking.ErrInvalidTransition) && cancelErrs[i] == nil &&
				slices.Equal(effects, []string{"request_release:cancelled", "announce_cancelled"})
		case slices.Equal(causes, []string{"paid", "cancelled"}):
			ok = b.Status == booking.Cancelled && !expired[i] && len(ps) == 1 && ps[0].Status == booking.PaymentSucceeded &&
				payErrs[i] == nil && cancelErrs[i] == nil &&
				slices.Equal(effects, []string{"request_confirm", "announce_confirmed", "request_release:cancelled", "announce_cancelled"})
		}
		if !ok {
			t.Errorf("%s ended %s after %v: pay %v, cancel %v, expired %v, emitted %v, payments %+v",
				id, b.Status, causes, payErrs[i], cancelErrs[i], expired[i], effects, ps)
		}
		outcomes[strings.Join(causes, "+")]++
	}
	t.Logf("outcomes %v", outcomes)
}

// A charge that comes back after the booking expired is recorded and refunded; the same
// charge seen twice is refunded once, and the charge that paid a booking is never refunded.
func testLatePayment(t *testing.T, e *env) {
	ctx := context.Background()
	b := e.held(t, "alice")
	e.clock.Advance(rules.HoldTTL)
	_, err := e.store.Apply(ctx, b.ID, booking.Expire{})
	testenv.Fatal(t, "expire", err)
	p := payment(t, b.ID, "ch_late")
	if _, err := confirm(ctx, e.store, p); !errors.Is(err, booking.ErrHoldExpired) {
		t.Fatalf("confirm after expiry: %v", err)
	}
	for range 2 {
		owed, err := e.store.RecordLatePayment(ctx, p)
		if err != nil || !owed {
			t.Fatalf("late payment: %v %v", owed, err)
		}
	}
	gw := booking.NewFakeGateway()
	if n, err := e.store.RefundDue(ctx, gw, b.ID); n != 1 || err != nil {
		t.Fatalf("refunds %d %v", n, err)
	}
	if ps, _ := e.store.Payments(ctx, b.ID); len(ps) != 1 || ps[0].Status != booking.PaymentRefunded {
		t.Fatalf("payments %+v", ps)
	}

	paid := e.held(t, "bob")
	_, err = confirm(ctx, e.store, payment(t, paid.ID, "ch_paid"))
	testenv.Fatal(t, "pay", err)
	if owed, err := e.store.RecordLatePayment(ctx, payment(t, paid.ID, "ch_paid")); owed || err != nil {
		t.Fatalf("the paying charge was owed a refund: %v %v", owed, err)
	}
	if n, err := e.store.RefundDue(ctx, gw, paid.ID); n != 0 || err != nil {
		t.Fatalf("refunded the paying charge: %d %v", n, err)
	}
}
