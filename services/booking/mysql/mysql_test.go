package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/testenv"
)

var rules = booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute}

// env is a fresh database with the booking schema, a store whose effects land in the test
// table emitted (inside the store's transaction, so rolled-back effects are not there), and a
// clock the test moves.
type env struct {
	db    *sql.DB
	store *mysql.Store
	clock *clock
}

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := mysql.Open(ctx, testenv.MySQL(t), 50, slog.New(slog.DiscardHandler))
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { db.Close() })
	_, err = db.ExecContext(ctx, `CREATE TABLE emitted (
		n BIGINT AUTO_INCREMENT PRIMARY KEY, booking_id CHAR(36) NOT NULL, status VARCHAR(16) NOT NULL,
		kind VARCHAR(32) NOT NULL, reason VARCHAR(32) NOT NULL, refund BIGINT NOT NULL, payment_id VARCHAR(36) NOT NULL)`)
	testenv.Fatal(t, "create emitted", err)
	c := &clock{}
	c.Set(time.Now())
	return &env{db: db, store: mysql.NewStore(db, rules, recordEffects).WithClock(c.Now), clock: c}
}

func recordEffects(ctx context.Context, tx *sql.Tx, b booking.Booking, effects []booking.Effect) error {
	for _, e := range effects {
		reason := e.Reason
		if e.PreviousStatus != "" {
			reason = string(e.PreviousStatus)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO emitted (booking_id, status, kind, reason, refund, payment_id) VALUES (?, ?, ?, ?, ?, ?)`,
			b.ID, b.Status, e.Kind, reason, e.Refund, e.PaymentID); err != nil {
			return err
		}
	}
	return nil
}

// emitted returns the booking's effects as "kind" or "kind:reason", in order.
func (e *env) emitted(t *testing.T, id string) []string {
	t.Helper()
	rows, err := e.db.Query(`SELECT kind, reason FROM emitted WHERE booking_id = ? ORDER BY n`, id)
	testenv.Fatal(t, "read emitted", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, r string
		testenv.Fatal(t, "scan", rows.Scan(&k, &r))
		if r != "" {
			k += ":" + r
		}
		out = append(out, k)
	}
	return out
}

func (e *env) causes(t *testing.T, id string) []string {
	t.Helper()
	h, err := e.store.History(context.Background(), id)
	testenv.Fatal(t, "history", err)
	var out []string
	for _, l := range h {
		out = append(out, l.Cause)
	}
	return out
}

func (e *env) held(t *testing.T, user string) booking.Booking {
	t.Helper()
	ctx := context.Background()
	b, err := e.store.Create(ctx, user, 7, 2)
	testenv.Fatal(t, "create", err)
	c, err := e.store.Apply(ctx, b.ID, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
	testenv.Fatal(t, "hold", err)
	return c.Booking
}

func TestCreateGetHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b, err := e.store.Create(ctx, "alice", 7, 3)
	testenv.Fatal(t, "create", err)
	got, err := e.store.Get(ctx, b.ID)
	testenv.Fatal(t, "get", err)
	if got != b || b.Status != booking.Pending || b.Version != 1 || len(b.ID) != 36 {
		t.Fatalf("read back %+v, created %+v", got, b)
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
}

func TestSagaThroughTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b, err := e.store.Create(ctx, "alice", 7, 2)
	testenv.Fatal(t, "create", err)

	// The consumer's path: ApplySeatsHeld in its own transaction, twice (redelivery).
	for range 2 {
		err := mysql.InTx(ctx, e.db, func(tx *sql.Tx) error {
			_, err := e.store.ApplySeatsHeld(ctx, tx, b.ID, booking.SeatsHeld{UnitPrice: 5000, Total: 10000, Currency: "EUR"})
			return err
		})
		testenv.Fatal(t, "seats held", err)
	}
	b, _ = e.store.Get(ctx, b.ID)
	if b.Status != booking.Held || b.Total != 10000 || !b.HoldExpiresAt.Equal(e.clock.Now().Truncate(time.Microsecond).Add(rules.HoldTTL)) {
		t.Fatalf("held: %+v", b)
	}
	p, err := mysql.NewPayment(b.ID, booking.PaymentResult{Ref: "ch_1", Amount: 10000, Currency: "EUR"})
	testenv.Fatal(t, "payment", err)
	var c booking.Change
	err = mysql.InTx(ctx, e.db, func(tx *sql.Tx) error {
		var err error
		c, err = e.store.ConfirmPaymentTx(ctx, tx, p)
		return err
	})
	testenv.Fatal(t, "confirm", err)
	if c.Booking.Status != booking.Confirmed || c.Booking.PaymentID != p.ID {
		t.Fatalf("confirmed: %+v", c.Booking)
	}
	// Paying again is refused and writes nothing.
	p2, _ := mysql.NewPayment(b.ID, booking.PaymentResult{Ref: "ch_2", Amount: 10000, Currency: "EUR"})
	err = mysql.InTx(ctx, e.db, func(tx *sql.Tx) error { _, err := e.store.ConfirmPaymentTx(ctx, tx, p2); return err })
	if !errors.Is(err, booking.ErrAlreadyPaid) {
		t.Fatalf("second payment: %v", err)
	}
	_, err = e.store.Apply(ctx, b.ID, booking.SeatsConfirmed{})
	testenv.Fatal(t, "seats confirmed", err)

	// Cancel the confirmed booking: release, refund owed, then refunded through the gateway.
	c, err = e.store.Cancel(ctx, b.ID)
	testenv.Fatal(t, "cancel", err)
	gw := booking.NewFakeGateway()
	n, err := e.store.RefundDue(ctx, gw, b.ID)
	if err != nil || n != 1 || gw.Refunds() != 1 {
		t.Fatalf("refund: %d %v (gateway %d)", n, err, gw.Refunds())
	}
	if n, _ := e.store.RefundDue(ctx, gw, b.ID); n != 0 {
		t.Fatalf("refunded twice: %d", n)
	}
	if _, err := e.store.Cancel(ctx, b.ID); !errors.Is(err, booking.ErrInvalidTransition) {
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
	if len(ps) != 1 || ps[0].Status != booking.PaymentRefunded {
		t.Errorf("payments %+v", ps)
	}
}

func TestRejectedAndUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b, _ := e.store.Create(ctx, "alice", 999, 1)
	for range 2 {
		err := mysql.InTx(ctx, e.db, func(tx *sql.Tx) error {
			_, err := e.store.ApplySeatHoldRejected(ctx, tx, b.ID, booking.SeatHoldRejected{Reason: "flight_not_found"})
			return err
		})
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

// A failing Emit (the outbox) undoes the whole change.
func TestEmitFailureRollsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b := e.held(t, "alice")
	failing := mysql.NewStore(e.db, rules, func(context.Context, *sql.Tx, booking.Booking, []booking.Effect) error {
		return errors.New("outbox down")
	})
	if _, err := failing.Cancel(ctx, b.ID); err == nil {
		t.Fatal("cancel succeeded without its effects")
	}
	after, _ := e.store.Get(ctx, b.ID)
	if after != b || len(e.causes(t, b.ID)) != 2 {
		t.Fatalf("booking changed: %+v, history %v", after, e.causes(t, b.ID))
	}
}

func TestListPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var ids []string
	for i := range 7 {
		b, err := e.store.Create(ctx, "alice", int64(i+1), 1)
		testenv.Fatal(t, "create", err)
		ids = append(ids, b.ID)
		e.clock.Advance(time.Millisecond) // UUIDv7 order follows the clock's milliseconds
	}
	_, _ = e.store.Create(ctx, "bob", 1, 1)
	_, err := e.store.Apply(ctx, ids[2], booking.SeatsHeld{UnitPrice: 1, Total: 1, Currency: "EUR"})
	testenv.Fatal(t, "hold", err)

	var got []string
	cursor := ""
	pages := 0
	for {
		page, next, err := e.store.List(ctx, mysql.ListQuery{UserID: "alice", Before: cursor, Limit: 3})
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
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("pages %d: %v\nwant %v", pages, got, want)
	}
	held, next, err := e.store.List(ctx, mysql.ListQuery{UserID: "alice", Status: booking.Held, Limit: 10})
	if err != nil || len(held) != 1 || held[0].ID != ids[2] || next != "" {
		t.Fatalf("held filter: %v %v %q", held, err, next)
	}
}

func TestExpireDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	start := e.clock.Now()
	pending, _ := e.store.Create(ctx, "alice", 1, 1)
	held := e.held(t, "alice")
	paid := e.held(t, "alice")
	p, _ := mysql.NewPayment(paid.ID, booking.PaymentResult{Ref: "ch_paid", Amount: 10000, Currency: "EUR"})
	testenv.Fatal(t, "pay", mysql.InTx(ctx, e.db, func(tx *sql.Tx) error { _, err := e.store.ConfirmPaymentTx(ctx, tx, p); return err }))

	// Nothing due yet.
	if claimed, expired, err := e.store.ExpireDue(ctx, 10); claimed != 0 || expired != 0 || err != nil {
		t.Fatalf("early: %d %d %v", claimed, expired, err)
	}
	// Past the pending timeout, before the hold's expiry: only the pending one.
	e.clock.Set(start.Add(rules.PendingTimeout))
	if claimed, expired, err := e.store.ExpireDue(ctx, 10); claimed != 1 || expired != 1 || err != nil {
		t.Fatalf("pending timeout: %d %d %v", claimed, expired, err)
	}
	e.clock.Set(start.Add(rules.HoldTTL + time.Second))
	if claimed, expired, err := e.store.ExpireDue(ctx, 10); claimed != 1 || expired != 1 || err != nil {
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

	// The scheduler loop drains a backlog bigger than one batch.
	for range 25 {
		e.held(t, "bob")
	}
	e.clock.Set(start.Add(3 * rules.HoldTTL))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.store.RunExpiry(runCtx, time.Hour, 10, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		testenv.Fatal(t, "count", e.db.QueryRow(`SELECT COUNT(*) FROM bookings WHERE status = 'HELD'`).Scan(&n))
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bookings still HELD", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunExpiry: %v", err)
	}
}

// TestPayRacesExpiry races a payment against the expiry of the same booking, 200 times at
// the same instant. The payer's clock is just before the hold's expiry and the expirer's just
// after, so either transition is valid on its own: only the row lock decides, and exactly one
// must win, with exactly its own effects.
func TestPayRacesExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 200
	start := e.clock.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.held(t, fmt.Sprintf("user%d", i)).ID
	}
	expiry := start.Truncate(time.Microsecond).Add(rules.HoldTTL)
	payer := e.store.WithClock(func() time.Time { return expiry.Add(-time.Microsecond) })
	expirer := e.store.WithClock(func() time.Time { return expiry })

	var wg sync.WaitGroup
	gate := make(chan struct{})
	payErrs := make([]error, n)
	expired := make([]bool, n)
	expErrs := make([]error, n)
	for i, id := range ids {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-gate
			p, _ := mysql.NewPayment(id, booking.PaymentResult{Ref: "ch_" + id, Amount: 10000, Currency: "EUR"})
			payErrs[i] = mysql.InTx(ctx, e.db, func(tx *sql.Tx) error { _, err := payer.ConfirmPaymentTx(ctx, tx, p); return err })
		}()
		go func() {
			defer wg.Done()
			<-gate
			c, err := expirer.Expire(ctx, id)
			expired[i], expErrs[i] = !c.Noop(), err
		}()
	}
	close(gate)
	wg.Wait()

	var confirmed, expiredN int
	for i, id := range ids {
		if expErrs[i] != nil {
			t.Fatalf("expire %s: %v", id, expErrs[i])
		}
		b, err := e.store.Get(ctx, id)
		testenv.Fatal(t, "get", err)
		got := e.emitted(t, id)[2:] // after request_hold, announce_held
		switch b.Status {
		case booking.Confirmed:
			confirmed++
			if payErrs[i] != nil || expired[i] || !slices.Equal(got, []string{"request_confirm", "announce_confirmed"}) {
				t.Errorf("%s confirmed: pay %v, expired %v, emitted %v", id, payErrs[i], expired[i], got)
			}
		case booking.Expired:
			expiredN++
			if !errors.Is(payErrs[i], booking.ErrHoldExpired) || !expired[i] || !slices.Equal(got, []string{"request_release:expired", "announce_expired:HELD"}) {
				t.Errorf("%s expired: pay %v, expired %v, emitted %v", id, payErrs[i], expired[i], got)
			}
		default:
			t.Errorf("%s ended %s", id, b.Status)
		}
	}
	var paymentRows int
	testenv.Fatal(t, "count payments", e.db.QueryRow(`SELECT COUNT(*) FROM payments`).Scan(&paymentRows))
	if paymentRows != confirmed {
		t.Errorf("%d payment rows for %d confirmed bookings", paymentRows, confirmed)
	}
	t.Logf("%d confirmed, %d expired", confirmed, expiredN)
}

// A charge that comes back after the booking expired is recorded and refunded; the same
// charge seen twice is refunded once, and the charge that paid a booking is never refunded.
func TestLatePayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	b := e.held(t, "alice")
	e.clock.Advance(rules.HoldTTL)
	_, err := e.store.Expire(ctx, b.ID)
	testenv.Fatal(t, "expire", err)
	p, _ := mysql.NewPayment(b.ID, booking.PaymentResult{Ref: "ch_late", Amount: 10000, Currency: "EUR"})
	err = mysql.InTx(ctx, e.db, func(tx *sql.Tx) error { _, err := e.store.ConfirmPaymentTx(ctx, tx, p); return err })
	if !errors.Is(err, booking.ErrHoldExpired) {
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

	paid := e.held(t, "bob")
	p2, _ := mysql.NewPayment(paid.ID, booking.PaymentResult{Ref: "ch_paid", Amount: 10000, Currency: "EUR"})
	testenv.Fatal(t, "pay", mysql.InTx(ctx, e.db, func(tx *sql.Tx) error { _, err := e.store.ConfirmPaymentTx(ctx, tx, p2); return err }))
	dup, _ := mysql.NewPayment(paid.ID, booking.PaymentResult{Ref: "ch_paid", Amount: 10000, Currency: "EUR"})
	if owed, err := e.store.RecordLatePayment(ctx, dup); owed || err != nil {
		t.Fatalf("the paying charge was owed a refund: %v %v", owed, err)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	keys := mysql.NewKeys(e.db, time.Minute)
	k := mysql.Key{UserID: "alice", Key: "k1", Hash: "h1"}

	// First use: claimed, work and response committed together.
	err := mysql.InTx(ctx, e.db, func(tx *sql.Tx) error {
		r, err := keys.ClaimTx(ctx, tx, k)
		if err != nil || r != nil {
			return fmt.Errorf("first claim: %v %v", r, err)
		}
		return keys.CompleteTx(ctx, tx, k, mysql.Response{Status: 202, Body: []byte(`{"id":"x"}`)})
	})
	testenv.Fatal(t, "first", err)
	r, err := keys.Claim(ctx, k)
	if err != nil || r == nil || r.Status != 202 || string(r.Body) != `{"id":"x"}` {
		t.Fatalf("replay: %+v %v", r, err)
	}
	if _, err := keys.Claim(ctx, mysql.Key{UserID: "alice", Key: "k1", Hash: "other"}); !errors.Is(err, mysql.ErrKeyReused) {
		t.Fatalf("reuse: %v", err)
	}
	// Keys are per user.
	if r, err := keys.Claim(ctx, mysql.Key{UserID: "bob", Key: "k1", Hash: "h2"}); r != nil || err != nil {
		t.Fatalf("bob's k1: %v %v", r, err)
	}
	// Held by a running request: 409; released: free again.
	k2 := mysql.Key{UserID: "alice", Key: "k2", Hash: "h"}
	if _, err := keys.Claim(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Claim(ctx, k2); !errors.Is(err, mysql.ErrKeyInProgress) {
		t.Fatalf("in progress: %v", err)
	}
	testenv.Fatal(t, "release", keys.Release(ctx, k2))
	if r, err := keys.Claim(ctx, k2); r != nil || err != nil {
		t.Fatalf("after release: %v %v", r, err)
	}
	// A stale in-progress key (its request crashed) is taken over.
	stale := mysql.NewKeys(e.db, 0)
	if r, err := stale.Claim(ctx, k2); r != nil || err != nil {
		t.Fatalf("take over: %v %v", r, err)
	}
	// A rolled-back request leaves no key.
	k3 := mysql.Key{UserID: "alice", Key: "k3", Hash: "h"}
	_ = mysql.InTx(ctx, e.db, func(tx *sql.Tx) error {
		if _, err := keys.ClaimTx(ctx, tx, k3); err != nil {
			return err
		}
		return errors.New("work failed")
	})
	if r, err := keys.Claim(ctx, k3); r != nil || err != nil {
		t.Fatalf("after rollback: %v %v", r, err)
	}
}
