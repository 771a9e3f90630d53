// Package api serves the booking service's REST API with gin: it decodes requests, runs them
// through the booking store (booking.Store: MySQL in production, SQLite in the dev mode) and
// the payment gateway, and encodes the answers. Every route
// needs a bearer token; a booking is visible to its owner and to admins only.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/validation"
	"github.com/flightbook/flightbook/web"
)

// Headers the API reads and writes.
const (
	HeaderIdempotencyKey    = "Idempotency-Key"
	HeaderReplayed          = "Idempotent-Replayed"
	HeaderPrefer            = "Prefer"
	HeaderPreferenceApplied = "Preference-Applied"
)

// MaxWait is the longest Prefer: wait=N honoured.
const MaxWait = 10 * time.Second

// Deps is what the handlers need.
type Deps struct {
	// Store keeps the bookings and the idempotency keys.
	Store   booking.Store
	Gateway booking.PaymentGateway
	Auth    *auth.Authenticator
	// Notify, when set, is called after a commit that queued effects (it wakes the outbox
	// relay, which otherwise finds them on its next poll).
	Notify func()
	// Changes, when set, wakes a Prefer: wait request as soon as its booking has changed: at
	// once for a change this process made, and for another replica's once its event is
	// published (messaging.WakeOnEvents).
	Changes *booking.Changes
	// PollEvery is how long a Prefer: wait request waits before it re-reads the booking anyway,
	// in case a wake-up was missed (another replica's event while NATS was away); each further
	// wait is twice the last, up to ten times PollEvery. 500 ms when zero: every change
	// wakes the request, so the poll only matters when a wake-up is lost, and under load the
	// polls were a third of MariaDB's reads (docs/performance.md, "sixth session").
	PollEvery time.Duration
	// FlightCacheTTL is how long a flight read from the local catalogue is trusted by
	// POST /bookings; 1 s when zero, and a negative value reads it on every request.
	FlightCacheTTL time.Duration
}

type server struct {
	Deps
	flights *flightCache
	creates *creator
}

// Routes registers the booking API under /api/v1 on r.
func Routes(r gin.IRouter, d Deps) {
	if d.Notify == nil {
		d.Notify = func() {}
	}
	if d.PollEvery <= 0 {
		d.PollEvery = 500 * time.Millisecond
	}
	if d.FlightCacheTTL == 0 {
		d.FlightCacheTTL = time.Second
	}
	s := &server{Deps: d}
	s.flights = &flightCache{ttl: d.FlightCacheTTL, load: d.Store.Flight, now: time.Now}
	s.creates = newCreator(d.Store)
	v1 := r.Group("/api/v1", d.Auth.Required())
	v1.POST("/bookings", s.create)
	v1.GET("/bookings", s.list)
	v1.GET("/bookings/:id", s.get)
	v1.GET("/bookings/:id/history", s.history)
	v1.POST("/bookings/:id/payments", s.pay)
	v1.POST("/bookings/:id/cancel", s.cancel)
	s.admin(v1)
}

// Handlers pass c.Request.Context(), never the *gin.Context, to the store: database/sql
// watches the context from a goroutine that can outlive the handler, and gin reuses its
// Context for the next request.

// fail is the one place an error becomes an HTTP answer.
func fail(c *gin.Context, err error) {
	if fe, ok := validation.As(err); ok { // also booking.ErrAmountMismatch, which names its fields
		web.AbortInvalid(c, fe)
		return
	}
	status, code := 0, ""
	switch {
	case errors.Is(err, booking.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, booking.ErrAlreadyPaid):
		status, code = http.StatusConflict, "already_paid"
	case errors.Is(err, booking.ErrHoldExpired):
		status, code = http.StatusConflict, "hold_expired"
	case errors.Is(err, booking.ErrInvalidTransition):
		status, code = http.StatusConflict, "invalid_status"
	case errors.Is(err, booking.ErrKeyReused):
		status, code = http.StatusUnprocessableEntity, "idempotency_key_reused"
	case errors.Is(err, booking.ErrKeyInProgress):
		status, code = http.StatusConflict, "idempotency_key_in_progress"
	case errors.Is(err, booking.ErrPaymentDeclined):
		status, code = http.StatusPaymentRequired, "payment_declined"
	case errors.Is(err, booking.ErrGatewayTimeout):
		status, code = http.StatusGatewayTimeout, "payment_gateway_timeout"
	case errors.Is(err, booking.ErrGatewayUnavailable):
		status, code = http.StatusServiceUnavailable, "payment_gateway_unavailable"
	default:
		web.AbortInternal(c, err)
		return
	}
	web.AbortStatus(c, status, code, err.Error())
}

// bookingView is a booking as the API shows it.
type bookingView struct {
	ID            string         `json:"id"`
	UserID        string         `json:"user_id"`
	FlightID      int64          `json:"flight_id"`
	Seats         int            `json:"seats"`
	Status        booking.Status `json:"status"`
	UnitPrice     int64          `json:"unit_price"`
	Total         int64          `json:"total"`
	Currency      string         `json:"currency,omitempty"`
	HoldExpiresAt *time.Time     `json:"hold_expires_at,omitempty"`
	RejectReason  string         `json:"reject_reason,omitempty"`
	PaymentID     string         `json:"payment_id,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
	Version       int64          `json:"version"`
}

func view(b booking.Booking) bookingView {
	v := bookingView{ID: b.ID, UserID: b.UserID, FlightID: b.FlightID, Seats: b.Seats, Status: b.Status,
		UnitPrice: b.UnitPrice, Total: b.Total, Currency: b.Currency, RejectReason: b.RejectReason,
		PaymentID: b.PaymentID, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, Version: b.Version}
	if !b.HoldExpiresAt.IsZero() {
		t := b.HoldExpiresAt
		v.HoldExpiresAt = &t
	}
	return v
}

func bookingPath(id string) string { return "/api/v1/bookings/" + id }

// user returns the authenticated caller (auth.Required ran before).
func user(c *gin.Context) auth.User {
	u, _ := auth.FromContext(c)
	return u
}

// owned reads the booking of the :id parameter if the caller may see it: its owner or an
// admin. Anyone else gets the same 404 as for a booking that does not exist, so ids of other
// people's bookings cannot be probed.
func (s *server) owned(c *gin.Context) (booking.Booking, bool) {
	id := c.Param("id")
	b, err := s.Store.Get(c.Request.Context(), id)
	if err == nil {
		if u := user(c); b.UserID != u.ID && !u.IsAdmin() {
			err = fmt.Errorf("booking %s: %w", id, booking.ErrNotFound)
		}
	}
	if err != nil {
		fail(c, err)
		return booking.Booking{}, false
	}
	return b, true
}

// rawBody reads the request body (up to one byte past web.MaxBodyBytes, so DecodeJSON still
// answers 413 for a larger one) and puts it back for DecodeJSON: the idempotency key is
// checked against a hash of exactly these bytes.
func rawBody(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, nil
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, web.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(raw))
	return raw, nil
}

// idempotencyKey reads the Idempotency-Key header into a key for this request (nil when
// absent), answering 400 for a malformed one.
func idempotencyKey(c *gin.Context, body []byte) (*booking.Key, bool) {
	k := c.GetHeader(HeaderIdempotencyKey)
	if k == "" {
		return nil, true
	}
	if len(k) > 255 || strings.ContainsFunc(k, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		web.AbortStatus(c, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
		return nil, false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", c.Request.Method, c.Request.URL.Path)
	h.Write(body)
	return &booking.Key{UserID: user(c).ID, Key: k, Hash: hex.EncodeToString(h.Sum(nil))}, true
}

// replay answers with a stored response.
func replay(c *gin.Context, r *booking.Response) {
	c.Header(HeaderReplayed, "true")
	c.Data(r.Status, "application/json; charset=utf-8", r.Body)
}

// inKeyedTx runs work in one transaction with the claim of key (when not nil) and the storing
// of the response work returns, so a request either happened with its key recorded or not at
// all. It returns the stored response to replay when key was already completed.
func (s *server) inKeyedTx(ctx context.Context, key *booking.Key, work func(tx booking.Tx) (int, booking.Booking, error)) (booking.Response, bool, booking.Booking, error) {
	var k keyed
	err := s.Store.InTx(ctx, func(tx booking.Tx) error {
		return k.run(ctx, tx, key, work)
	})
	return k.resp, k.replayed, k.b, err
}

// keyed is the outcome of one keyed request's work in a transaction.
type keyed struct {
	resp     booking.Response
	replayed bool // resp is the key's stored response; the work did not run
	b        booking.Booking
}

// run claims key (when not nil), does work unless the key replays, and completes the key
// with the response, all in tx.
func (k *keyed) run(ctx context.Context, tx booking.Tx, key *booking.Key, work func(tx booking.Tx) (int, booking.Booking, error)) error {
	*k = keyed{} // a retried transaction starts over
	if key != nil {
		r, err := tx.ClaimKey(ctx, *key)
		if err != nil {
			return err
		}
		if r != nil {
			k.resp, k.replayed = *r, true
			return nil
		}
	}
	status, b, err := work(tx)
	if err != nil {
		return err
	}
	body, err := json.Marshal(view(b))
	if err != nil {
		return fmt.Errorf("encode booking: %w", err)
	}
	k.resp, k.b = booking.Response{Status: status, Body: body}, b
	if key != nil {
		return tx.CompleteKey(ctx, *key, k.resp)
	}
	return nil
}

type createRequest struct {
	FlightID int64 `json:"flight_id"`
	Seats    int   `json:"seats"`
}

// create records a PENDING booking and its hold request. The flight is checked against the
// booking service's own copy of the catalogue (an unknown, cancelled or departed flight is a
// 422 on flight_id, and nothing is written); whether it has the seats is the flight service's
// answer through the saga. No request path calls another service (ARCHITECTURE.md).
func (s *server) create(c *gin.Context) {
	raw, err := rawBody(c)
	if err != nil {
		fail(c, err)
		return
	}
	key, ok := idempotencyKey(c, raw)
	var req createRequest
	if !ok || !web.DecodeJSON(c, &req) {
		return
	}
	if err := booking.ValidateRequest(req.FlightID, req.Seats); err != nil {
		fail(c, err)
		return
	}
	if err := s.checkFlight(c.Request.Context(), req.FlightID); err != nil {
		fail(c, err)
		return
	}
	wait, waitOK := preferWait(c.Request.Header.Values(HeaderPrefer))
	if !waitOK {
		web.AbortStatus(c, http.StatusBadRequest, "invalid_prefer", fmt.Sprintf("Prefer: wait must be a whole number of seconds (at most %d are honoured)", int(MaxWait/time.Second)))
		return
	}
	resp, replayed, b, err := s.creates.create(c.Request.Context(), creation{key: key, userID: user(c).ID, flightID: req.FlightID, seats: req.Seats})
	if err != nil {
		fail(c, err)
		return
	}
	if replayed {
		var v struct{ ID string }
		if json.Unmarshal(resp.Body, &v) == nil && v.ID != "" {
			c.Header("Location", bookingPath(v.ID))
		}
		replay(c, &resp)
		return
	}
	// Watch before the relay is woken to send the hold request, so the reply cannot come
	// first; should the relay's own poll be faster still, the fallback poll sees the reply.
	var changed <-chan booking.Booking
	if wait > 0 {
		var stop func()
		changed, stop = s.Changes.Watch(b.ID)
		defer stop()
	}
	s.Notify()
	c.Header("Location", bookingPath(b.ID))
	if wait <= 0 {
		c.Data(resp.Status, "application/json; charset=utf-8", resp.Body)
		return
	}
	c.Header(HeaderPreferenceApplied, "wait="+strconv.Itoa(int(wait/time.Second)))
	b = s.await(c, b, wait, changed)
	status := http.StatusAccepted
	if b.Status != booking.Pending {
		status = http.StatusOK
	}
	c.JSON(status, view(b))
}

// checkFlight refuses a booking on a flight the local catalogue does not have open.
func (s *server) checkFlight(ctx context.Context, id int64) error {
	f, found, err := s.flights.get(ctx, id)
	if err != nil {
		return err
	}
	return booking.CheckFlight(id, f, found, s.Store.Now())
}

// preferWait reads wait=N from the Prefer headers (RFC 7240): 0 when absent, capped at
// MaxWait; ok is false for a wait that is not a whole number of seconds.
func preferWait(values []string) (time.Duration, bool) {
	for _, v := range values {
		for pref := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 0 {
				return 0, false
			}
			return min(time.Duration(n)*time.Second, MaxWait), true
		}
	}
	return 0, true
}

// await waits until b leaves PENDING, wait passes or the client goes away, and returns it as
// it then stands. When changed brings b as this process committed it, that is the answer;
// otherwise it reads b, when changed says b has changed and after PollEvery anyway,
// backing off to ten times that. The backoff matters under load: when the saga runs slowly,
// every waiting request polling at a fixed 100 ms multiplied the database's reads just when
// it had least to spare (a saga run at 200/s spent a fifth of the booking process's CPU in
// await, docs/performance.md).
func (s *server) await(c *gin.Context, b booking.Booking, wait time.Duration, changed <-chan booking.Booking) booking.Booking {
	ctx, cancel := context.WithTimeout(c.Request.Context(), wait)
	defer cancel()
	poll := s.PollEvery
	t := time.NewTimer(poll)
	defer t.Stop()
	for b.Status == booking.Pending {
		select {
		case <-ctx.Done():
			return b
		case nb := <-changed:
			if nb.Version > b.Version {
				b = nb // committed, so reading it back would return the same
				continue
			}
		case <-t.C:
			poll = min(2*poll, 10*s.PollEvery)
			t.Reset(poll)
		}
		nb, err := s.Store.Get(ctx, b.ID)
		if err != nil {
			return b // the deadline, or a transient read error: answer with what we have
		}
		b = nb
	}
	return b
}

func (s *server) get(c *gin.Context) {
	if b, ok := s.owned(c); ok {
		c.JSON(http.StatusOK, view(b))
	}
}

type historyView struct {
	Seq    int64          `json:"seq"`
	From   booking.Status `json:"from_status,omitempty"`
	To     booking.Status `json:"to_status"`
	Cause  string         `json:"cause"`
	Detail string         `json:"detail,omitempty"`
	At     time.Time      `json:"at"`
}

func (s *server) history(c *gin.Context) {
	b, ok := s.owned(c)
	if !ok {
		return
	}
	h, err := s.Store.History(c.Request.Context(), b.ID)
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]historyView, len(h))
	for i, l := range h {
		items[i] = historyView{Seq: l.Seq, From: l.From, To: l.To, Cause: l.Cause, Detail: l.Detail, At: l.At}
	}
	c.JSON(http.StatusOK, gin.H{"booking_id": b.ID, "items": items})
}

// list answers the caller's own bookings, newest first, a page at a time: ?status=HELD,
// ?limit=1..100 (20), ?cursor= from the previous page's next_cursor.
func (s *server) list(c *gin.Context) {
	q := booking.ListQuery{UserID: user(c).ID, Limit: 20}
	var v validation.Errors
	if st := c.Query("status"); st != "" {
		q.Status = booking.Status(strings.ToUpper(st))
		v.Check(q.Status.Valid(), "status", "must be one of PENDING, HELD, CONFIRMED, REJECTED, EXPIRED, CANCELLED")
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		v.Check(err == nil && n >= 1 && n <= 100, "limit", "must be an integer from 1 to 100")
		q.Limit = n
	}
	if cur := c.Query("cursor"); cur != "" {
		id, err := base64.RawURLEncoding.DecodeString(cur)
		v.Check(err == nil && len(id) == 36, "cursor", "must be a next_cursor returned by this endpoint")
		q.Before = string(id)
	}
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	bs, next, err := s.Store.List(c.Request.Context(), q)
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]bookingView, len(bs))
	for i, b := range bs {
		items[i] = view(b)
	}
	out := gin.H{"items": items}
	if next != "" {
		out["next_cursor"] = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	c.JSON(http.StatusOK, out)
}

// cancel cancels a HELD or CONFIRMED booking; a confirmed one is refunded. The body may be
// empty or {}.
func (s *server) cancel(c *gin.Context) {
	raw, err := rawBody(c)
	if err != nil {
		fail(c, err)
		return
	}
	key, ok := idempotencyKey(c, raw)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		var empty struct{}
		if !web.DecodeJSON(c, &empty) {
			return
		}
	}
	b, ok := s.owned(c)
	if !ok {
		return
	}
	resp, replayed, _, err := s.inKeyedTx(c.Request.Context(), key, func(tx booking.Tx) (int, booking.Booking, error) {
		ch, err := tx.Apply(c.Request.Context(), b.ID, booking.Cancel{})
		return http.StatusOK, ch.Booking, err
	})
	if err != nil {
		fail(c, err)
		return
	}
	if replayed {
		replay(c, &resp)
		return
	}
	s.Notify()
	// The cancellation stands whatever the gateway says; a refund it refused stays pending
	// in the refunds table for a retry.
	if _, err := s.Store.RefundDue(context.WithoutCancel(c.Request.Context()), s.Gateway, b.ID); err != nil {
		web.Logger(c.Request.Context()).Error("refund after cancel", "booking_id", b.ID, "error", err)
	}
	c.Data(resp.Status, "application/json; charset=utf-8", resp.Body)
}

type paymentRequest struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	CardToken string `json:"card_token"`
}

// pay charges the booking's total and confirms it. The charge is made outside any
// transaction (it is slow and cannot be rolled back); the confirmation then re-checks the
// booking under its row lock, and a charge that lost the race (the hold expired, the booking
// was cancelled) is recorded and refunded, and the client gets 409.
func (s *server) pay(c *gin.Context) {
	raw, err := rawBody(c)
	if err != nil {
		fail(c, err)
		return
	}
	key, ok := idempotencyKey(c, raw)
	if !ok {
		return
	}
	if key == nil {
		web.AbortStatus(c, http.StatusBadRequest, "idempotency_key_required", "payments need an Idempotency-Key header, so that a retry cannot charge twice")
		return
	}
	var req paymentRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	var v validation.Errors
	v.Check(req.Amount > 0, "amount", "must be a positive amount in minor units")
	v.Check(len(req.Currency) == 3 && strings.ToUpper(req.Currency) == req.Currency && !strings.ContainsFunc(req.Currency, func(r rune) bool { return r < 'A' || r > 'Z' }),
		"currency", "must be a three-letter ISO 4217 code")
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	b, ok := s.owned(c)
	if !ok {
		return
	}
	stored, err := s.Store.ClaimKey(c.Request.Context(), *key)
	if err != nil {
		fail(c, err)
		return
	}
	if stored != nil {
		replay(c, stored)
		return
	}
	// From here on the key is in progress; any answer but success frees it for a retry.
	done := false
	defer func() {
		if !done {
			if err := s.Store.ReleaseKey(context.WithoutCancel(c.Request.Context()), *key); err != nil {
				web.Logger(c.Request.Context()).Error("release idempotency key", "error", err)
			}
		}
	}()

	// Refuse what cannot succeed before taking any money: paid, expired, wrong amount...
	in := booking.Pay{Amount: req.Amount, Currency: req.Currency}
	if _, err := s.Store.Rules().Apply(b, in, s.Store.Now()); err != nil {
		fail(c, err)
		return
	}
	res, err := s.Gateway.Charge(c.Request.Context(), booking.ChargeRequest{IdempotencyKey: b.ID, Amount: req.Amount, Currency: req.Currency, CardToken: req.CardToken})
	if err != nil {
		fail(c, fmt.Errorf("charge booking %s: %w", b.ID, err))
		return
	}
	p, err := booking.NewPayment(b.ID, res)
	if err != nil {
		fail(c, err)
		return
	}
	// The money is taken: finish even if the client hangs up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 30*time.Second)
	defer cancel()
	resp, _, _, err := s.inKeyedTx(ctx, nil, func(tx booking.Tx) (int, booking.Booking, error) {
		ch, err := tx.ConfirmPayment(ctx, p)
		if err != nil {
			return 0, booking.Booking{}, err
		}
		body, err := json.Marshal(view(ch.Booking))
		if err != nil {
			return 0, booking.Booking{}, err
		}
		return http.StatusOK, ch.Booking, tx.CompleteKey(ctx, *key, booking.Response{Status: http.StatusOK, Body: body})
	})
	if err != nil {
		fail(c, s.settleLatePayment(ctx, p, err))
		return
	}
	done = true
	s.Notify()
	c.Data(resp.Status, "application/json; charset=utf-8", resp.Body)
}

// settleLatePayment handles a charge whose confirmation failed with err. If the booking
// moved on meanwhile (expired, cancelled, paid by a concurrent request), the charge is
// recorded and refunded unless it is the very charge that paid the booking.
func (s *server) settleLatePayment(ctx context.Context, p booking.Payment, err error) error {
	if !errors.Is(err, booking.ErrHoldExpired) && !errors.Is(err, booking.ErrInvalidTransition) && !errors.Is(err, booking.ErrAlreadyPaid) {
		return err // e.g. the database is down: the charge is repeated safely by a retry
	}
	owed, rerr := s.Store.RecordLatePayment(ctx, p)
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	if !owed {
		return err
	}
	if _, rerr := s.Store.RefundDue(ctx, s.Gateway, p.BookingID); rerr != nil {
		web.Logger(ctx).Error("refund late payment", "booking_id", p.BookingID, "error", rerr)
		return fmt.Errorf("%w; the charge %s will be refunded", err, p.GatewayRef)
	}
	return fmt.Errorf("%w; the charge %s was refunded", err, p.GatewayRef)
}
