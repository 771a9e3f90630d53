package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// worker is one simulated client: its own user (token) and random source.
type worker struct {
	token string
	rng   *rand.Rand
}

// action is one thing a user of the mixed scenario does.
type action int

const (
	actSearch action = iota
	actBook
	actPay
	actCancel
)

func (a action) String() string {
	return [...]string{"search", "book", "pay", "cancel"}[a]
}

// share is an action's weight in a mix.
type share struct {
	action action
	weight float64
}

// mixedShares is the mixed scenario's traffic. Most visitors only search (60% of operations);
// a quarter of operations is a booking (22%); most bookings that reach HELD are paid (15%, so
// about two in three), a few are cancelled (3%, one in seven), and the rest (about one in five)
// are left HELD to expire on the booking service's hold TTL, as abandoned baskets do. A payment
// or cancellation with no HELD booking to act on yet becomes a search, so the shares settle
// after the first few seconds.
var mixedShares = []share{
	{actSearch, 60},
	{actBook, 22},
	{actPay, 15},
	{actCancel, 3},
}

// pick returns the action that x, uniform in [0, 1), selects from shares in proportion to
// their weights.
func pick(shares []share, x float64) action {
	var total float64
	for _, s := range shares {
		total += s.weight
	}
	x *= total
	for _, s := range shares {
		if x < s.weight {
			return s.action
		}
		x -= s.weight
	}
	return shares[len(shares)-1].action
}

// partySize is how many seats a mixed-scenario booking asks for: mostly one traveller,
// sometimes a couple, now and then a family.
func partySize(x float64) int {
	switch {
	case x < 0.70:
		return 1
	case x < 0.90:
		return 2
	case x < 0.97:
		return 3
	default:
		return 4
	}
}

// operate runs one operation of the configured scenario.
func (r *runner) operate(ctx context.Context, w *worker) {
	switch r.cfg.Scenario {
	case ScenarioHot, ScenarioBurst:
		_, _ = r.book(ctx, w, r.cat.flights[0], 1)
	case ScenarioSpread:
		_, _ = r.book(ctx, w, r.cat.flights[w.rng.IntN(len(r.cat.flights))], 1)
	case ScenarioSaga:
		r.saga(ctx, w)
	case ScenarioMixed:
		r.mixed(ctx, w)
	}
}

// saga books one seat, waits until the booking leaves PENDING, pays it if it is HELD and waits
// until it is CONFIRMED, recording how long each step took.
func (r *runner) saga(ctx context.Context, w *worker) {
	start := time.Now()
	b, err := r.bookHeld(ctx, w, r.cat.flights[w.rng.IntN(len(r.cat.flights))], 1)
	if err != nil || b.Status != StatusHeld {
		return
	}
	paid := time.Now()
	c, err := r.pay(ctx, w.token, b)
	if err != nil {
		return
	}
	if c.Status == StatusHeld { // a gateway that confirms asynchronously
		if c, err = r.awaitChange(ctx, w, c); err != nil {
			return
		}
	}
	if c.Status == StatusConfirmed {
		r.rec.Saga(sagaPayToConfirmed, time.Since(paid))
		r.rec.Saga(sagaPostToConfirmed, time.Since(start))
	}
}

// mixed does one action drawn from mixedShares.
func (r *runner) mixed(ctx context.Context, w *worker) {
	act := pick(mixedShares, w.rng.Float64())
	switch act {
	case actBook:
		b, err := r.bookHeld(ctx, w, r.cat.flights[w.rng.IntN(len(r.cat.flights))], partySize(w.rng.Float64()))
		if err == nil && b.Status == StatusHeld {
			r.ledger.pushHeld(b.ID)
		}
		return
	case actPay, actCancel:
		b, ok := r.ledger.takeHeld(w.rng)
		if !ok {
			break // nothing to pay or cancel yet: search instead
		}
		// The booking is any worker's, and only its owner may pay for it or cancel it.
		held := Booking{ID: b.id, Status: b.status, Total: b.total, Currency: b.currency}
		if act == actPay {
			start := time.Now()
			if c, err := r.pay(ctx, b.token, held); err == nil && c.Status == StatusConfirmed {
				r.rec.Saga(sagaPayToConfirmed, time.Since(start))
			}
		} else {
			_ = r.cancel(ctx, b.token, held)
		}
		return
	}
	r.search(ctx, w)
}

// search asks for the run's route on its day, as an anonymous visitor would.
func (r *runner) search(ctx context.Context, w *worker) {
	q := searchQuery(r.cat.from, r.cat.to, r.cat.date, partySize(w.rng.Float64()), 20)
	_, _ = r.c.do(ctx, request{endpoint: epSearch, method: http.MethodGet, url: r.cfg.FlightURL + pathFlights + q})
}

// bookHeld books and waits until the booking leaves PENDING (through Prefer: wait, then by
// polling), recording POST to HELD when it gets there.
func (r *runner) bookHeld(ctx context.Context, w *worker, flight ID, seats int) (Booking, error) {
	start := time.Now()
	b, err := r.book(ctx, w, flight, seats)
	if err != nil {
		return b, err
	}
	if b.Status == StatusPending {
		if b, err = r.awaitChange(ctx, w, b); err != nil {
			return b, err
		}
	}
	if b.Status == StatusHeld {
		r.rec.Saga(sagaPostToHeld, time.Since(start))
	}
	return b, nil
}

// book asks for seats on flight with a fresh Idempotency-Key, retrying with the same key while
// no answer comes. A request whose outcome stays unknown is kept, so the verification can ask
// again with its key.
func (r *runner) book(ctx context.Context, w *worker, flight ID, seats int) (Booking, error) {
	key := uuid.NewString()
	b, err := r.postBooking(ctx, r.c, w.token, key, flight, seats, r.cfg.Wait, r.cfg.RetryFor)
	if err != nil && unknownOutcome(err) {
		r.ledger.addUnknown(attempt{key: key, flightID: flight, seats: seats, token: w.token})
	}
	return b, err
}

// postBooking sends POST /bookings with key, retrying for up to retryFor, and records the
// booking in the ledger when it is accepted.
func (r *runner) postBooking(ctx context.Context, c *client, token, key string, flight ID, seats, wait int, retryFor time.Duration) (Booking, error) {
	header := map[string]string{headerIdempotencyKey: key}
	if wait > 0 {
		header[headerPrefer] = fmt.Sprintf("wait=%d", wait)
	}
	var b Booking
	err := retry(ctx, retryFor, true, func() error {
		b = Booking{}
		_, err := c.do(ctx, request{
			endpoint: epBook, method: http.MethodPost, url: r.cfg.BookingURL + pathBookings, token: token,
			header: header, in: bookingRequest{FlightID: flight, Seats: seats}, out: &b,
			wait: time.Duration(wait) * time.Second,
		})
		return err
	})
	if err != nil {
		return Booking{}, err
	}
	if b.ID == "" {
		return Booking{}, errNoID
	}
	r.accepted.Add(1)
	r.ledger.add(booking{id: b.ID, flightID: flight, seats: seats, token: token, status: b.Status, total: b.Total, currency: b.Currency})
	return b, nil
}

// errNoID is a 2xx booking response the tool could not read an id from: the API and api.go
// disagree. Its outcome is unknown to the tool.
var errNoID = errors.New("POST /bookings: response has no id")

// unknownOutcome says whether a failed booking request may have made a booking anyway: it got
// no answer, a 5xx, a 409 (still in progress), or an answer the tool could not read.
func unknownOutcome(err error) bool {
	s := statusOf(err)
	return s == 0 || s >= 500 || s == http.StatusConflict
}

// awaitChange polls the booking until its status differs from b's, backing off from 10 ms to
// 250 ms, for at most a minute.
func (r *runner) awaitChange(ctx context.Context, w *worker, b Booking) (Booking, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return b, fmt.Errorf("booking %s still %s: %w", b.ID, b.Status, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 250*time.Millisecond)
		var now Booking
		if _, err := r.c.do(ctx, request{endpoint: epBooking, method: http.MethodGet, url: r.cfg.BookingURL + bookingPath(b.ID), token: w.token, out: &now}); err != nil {
			continue
		}
		r.ledger.update(now)
		if now.Status != b.Status {
			return now, nil
		}
	}
}

// pay pays a HELD booking's total with the gateway's succeeding test card.
func (r *runner) pay(ctx context.Context, token string, b Booking) (Booking, error) {
	header := map[string]string{headerIdempotencyKey: uuid.NewString()}
	var out Booking
	err := retry(ctx, r.cfg.RetryFor, false, func() error {
		_, err := r.c.do(ctx, request{
			endpoint: epPay, method: http.MethodPost, url: r.cfg.BookingURL + paymentsPath(b.ID), token: token,
			header: header, in: paymentRequest{Amount: b.Total, Currency: b.Currency, CardToken: cardSuccess}, out: &out,
		})
		return err
	})
	if err != nil {
		return Booking{}, err
	}
	if out.ID != b.ID || out.Status == "" {
		// The payment answered with a payment, not the booking: read the booking itself.
		out = Booking{}
		if _, err := r.c.do(ctx, request{endpoint: epBooking, method: http.MethodGet, url: r.cfg.BookingURL + bookingPath(b.ID), token: token, out: &out}); err != nil {
			return Booking{}, err
		}
	}
	r.ledger.update(out)
	return out, nil
}

// cancel cancels a booking.
func (r *runner) cancel(ctx context.Context, token string, b Booking) error {
	header := map[string]string{headerIdempotencyKey: uuid.NewString()}
	var out Booking
	err := retry(ctx, r.cfg.RetryFor, false, func() error {
		_, err := r.c.do(ctx, request{
			endpoint: epCancel, method: http.MethodPost, url: r.cfg.BookingURL + cancelPath(b.ID), token: token,
			header: header, out: &out,
		})
		return err
	})
	if err != nil {
		return err
	}
	if out.ID == b.ID && out.Status != "" {
		r.ledger.update(out)
	}
	return nil
}

// retry calls f until it succeeds, fails in a way retryable says not to retry, or retryFor
// has passed, backing off from 50 ms to 1 s. Every caller sends an Idempotency-Key, which is
// what makes sending the same request again safe.
func retry(ctx context.Context, retryFor time.Duration, conflictIsInProgress bool, f func() error) error {
	deadline := time.Now().Add(retryFor)
	delay := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || !retryable(err, conflictIsInProgress) || time.Now().Add(delay).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}
