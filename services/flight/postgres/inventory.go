package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/services/flight"
)

// Inventory holds, releases and confirms seats. Every operation locks the flight row
// (SELECT ... FOR UPDATE) before it writes or locks the booking's hold, in that order, so two
// operations on one flight never interleave and never deadlock on each other. A hold reads
// the booking's recorded outcome before taking the lock, without locking it: an outcome, once
// recorded, is the answer, and the insert under the lock catches one recorded in between.
//
// Each operation comes in two forms: Hold opens, commits and retries its own transaction;
// HoldTx runs inside the caller's, so that a message handler records its inbox entry, the
// change of seats and its reply in the outbox atomically.
type Inventory struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewInventory returns the seat inventory stored in pool.
func NewInventory(pool *pgxpool.Pool) *Inventory {
	return &Inventory{pool: pool, now: time.Now}
}

// Hold holds seats for a booking in its own transaction. See HoldTx.
func (inv *Inventory) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	var h flight.Hold
	err := InTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.HoldTx(ctx, tx, req)
		return err
	})
	return h, err
}

// Release gives a booking's seats back in its own transaction. See ReleaseTx.
func (inv *Inventory) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	var h flight.Hold
	err := InTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.ReleaseTx(ctx, tx, bookingID, flightID)
		return err
	})
	return h, err
}

// Confirm turns a booking's held seats into sold seats in its own transaction. See ConfirmTx.
func (inv *Inventory) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	var h flight.Hold
	err := InTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		h, err = inv.ConfirmTx(ctx, tx, bookingID)
		return err
	})
	return h, err
}

// HoldTx holds req.Seats seats on req.FlightID for req.BookingID inside tx, or records why not.
// It is idempotent by booking id: a repeated request returns the first outcome and changes
// nothing. A booking released before its hold arrived is refused.
func (inv *Inventory) HoldTx(ctx context.Context, tx pgx.Tx, req flight.HoldRequest) (flight.Hold, error) {
	hs, err := inv.holdTx(ctx, tx, []flight.HoldRequest{req}, nil, nil)
	if errors.Is(err, errHoldRace) {
		// Another transaction recorded this booking first (the same booking on another
		// flight, or on a flight that does not exist, so no row lock kept them apart).
		// Nothing of ours was written, and that outcome is the booking's outcome.
		h, ok, err := getHold(ctx, tx, req.BookingID)
		if err == nil && !ok {
			err = errors.New("hold vanished")
		}
		if err != nil {
			return flight.Hold{}, fmt.Errorf("hold %s: %w", req.BookingID, err)
		}
		return previousOutcome(h), nil
	}
	if err != nil {
		return flight.Hold{}, fmt.Errorf("hold %s: %w", req.BookingID, err)
	}
	return hs[0], nil
}

// HoldBatch holds seats for several bookings in one transaction. See HoldBatchTx.
func (inv *Inventory) HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	var hs []flight.Hold
	err := InTx(ctx, inv.pool, func(tx pgx.Tx) (err error) {
		hs, err = inv.HoldBatchTx(ctx, tx, reqs)
		return err
	})
	return hs, err
}

// HoldBatchTx decides several hold requests inside tx, taking each flight's row lock once and
// committing them together: a hot flight's queued requests then share one lock wait and one
// commit instead of paying for one each. The outcomes are those HoldTx would give the
// requests one after another in slice order, and out[i] answers reqs[i]; a booking that
// appears twice gets its first outcome twice. Flights are locked in id order, so batches over
// the same flights queue rather than deadlock.
//
// If another transaction records one of the bookings while this one decides (possible only
// for the same booking on another flight, or on an unknown flight), the batch fails with a
// serialization failure (SQLSTATE 40001) and must be rolled back; HoldBatch retries it.
func (inv *Inventory) HoldBatchTx(ctx context.Context, tx pgx.Tx, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	hs, err := inv.holdTx(ctx, tx, reqs, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("hold %d bookings: %w", len(reqs), err)
	}
	return hs, nil
}

// errHoldRace says a booking decided in this transaction was recorded by another one first.
// It carries SQLSTATE 40001 because it is a serialization failure in all but name: the
// transaction decided on a state a concurrent one changed, and rolled back and run again it
// decides right. Every retry loop that knows PostgreSQL (InTx, the message handlers') then
// retries it without being told about it.
var errHoldRace = &pgconn.PgError{Severity: "ERROR", Code: "40001",
	Message: "a concurrent transaction recorded the same booking; retry"}

// holdTx decides reqs inside tx. With a nil later it records the outcomes before it returns;
// otherwise it queues their statement in later, for the caller to send with its COMMIT. read,
// if it covers reqs, is what they need read already; otherwise holdTx reads it.
func (inv *Inventory) holdTx(ctx context.Context, tx pgx.Tx, reqs []flight.HoldRequest, later *pgx.Batch, read *holdRead) ([]flight.Hold, error) {
	out := make([]flight.Hold, len(reqs))
	for i, req := range reqs {
		if reason := req.Check(); reason != "" {
			// Nothing to record: the booking id may not even be a UUID, and the answer is
			// the same however often it is asked.
			out[i] = flight.Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats,
				Status: flight.HoldRejected, Reason: reason, Detail: "seats must be 1 to 9 and ids valid"}
		}
	}
	if !read.covers(reqs) {
		var b pgx.Batch
		if read = queueHoldRead(&b, reqs); read == nil {
			return out, nil // no valid request
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return nil, err
		}
	}
	seating, prev := read.seating, read.prev

	now := inv.now()
	first := map[string]int{} // booking id -> index of its first request decided in this batch
	var fresh []flight.Hold
	for i, req := range reqs {
		if out[i].Status != "" {
			continue
		}
		if h, ok := prev[req.BookingID]; ok {
			out[i] = previousOutcome(h)
			continue
		}
		if j, ok := first[req.BookingID]; ok {
			out[i] = out[j]
			continue
		}
		h := flight.Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats,
			Status: flight.HoldRejected, Reason: flight.ReasonFlightNotFound, Detail: "no such flight"}
		if s, ok := seating[req.FlightID]; ok {
			h = flight.Decide(req, *s, now)
			if h.Status == flight.HoldHeld {
				s.Available -= req.Seats // the next request in the batch sees what is left
			}
		}
		out[i], first[req.BookingID] = h, i
		fresh = append(fresh, h)
	}
	switch {
	case len(fresh) == 0:
	case later != nil:
		queueRecordHolds(later, fresh)
	default:
		if err := recordHolds(ctx, tx, fresh); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// holdRead is what deciding hold requests reads first: their flights' seating, under the
// flights' row locks, and their bookings' recorded outcomes.
type holdRead struct {
	seating  map[int64]*flight.Seating
	prev     holdSet
	bookings map[string]bool // the bookings whose outcomes were read
	flights  map[int64]bool  // the flights locked, and read if they exist
}

// queueHoldRead queues in b the statements that read what the valid requests among reqs need,
// and returns the holdRead they fill once b is sent; nil if no request is valid.
//
// Outcomes already recorded are final: a request whose booking has one gets it again. They
// are read just after the flights' locks are taken: under READ COMMITTED the read then sees
// every hold committed by the transactions this one queued behind, so a redelivery that
// waited for its flight is not taken for new. Read before the locks, a burst of redeliveries
// on one hot flight failed and retried until a batch ran out of retries. One recorded after
// this read (the same booking on another flight, which no lock of ours orders) is caught by
// the insert that records the outcomes.
func queueHoldRead(b *pgx.Batch, reqs []flight.HoldRequest) *holdRead {
	var ids []string
	var flightIDs []int64
	r := &holdRead{bookings: map[string]bool{}, flights: map[int64]bool{}}
	for _, req := range reqs {
		if req.Check() == "" {
			ids = append(ids, req.BookingID)
			flightIDs = append(flightIDs, req.FlightID)
			r.bookings[req.BookingID], r.flights[req.FlightID] = true, true
		}
	}
	if len(ids) == 0 {
		return nil
	}
	r.seating, r.prev = queueLockSeating(b, flightIDs), queueHoldsOf(b, ids)
	return r
}

// covers reports whether r read everything the valid requests among reqs need. A nil r
// covers nothing.
func (r *holdRead) covers(reqs []flight.HoldRequest) bool {
	if r == nil {
		return false
	}
	for _, req := range reqs {
		if req.Check() != "" {
			continue
		}
		if !r.bookings[req.BookingID] || !r.flights[req.FlightID] {
			return false
		}
	}
	return true
}

// previousOutcome is the answer to a hold request for a booking that already has a record.
func previousOutcome(h flight.Hold) flight.Hold {
	if h.Status == flight.HoldReleased {
		h.Reason, h.Detail = flight.ReasonInvalidRequest, "the booking was released before or after this hold"
	}
	return h
}

// queueLockSeating queues in b the statement that locks the flights' rows in id order, and
// returns the map it fills, once b is sent, with what a hold decision needs of each flight. A
// flight that does not exist is absent from the map.
func queueLockSeating(b *pgx.Batch, flightIDs []int64) map[int64]*flight.Seating {
	seating := map[int64]*flight.Seating{}
	b.Queue(`
		SELECT id, status, departure_time, available_seats, fare_amount, currency
		FROM flights WHERE id = ANY($1) ORDER BY id FOR UPDATE`, flightIDs).Query(func(rows pgx.Rows) error {
		var id int64
		var s flight.Seating
		_, err := pgx.ForEachRow(rows, []any{&id, &s.Status, &s.Departure, &s.Available, &s.Fare, &s.Currency}, func() error {
			c := s
			seating[id] = &c
			return nil
		})
		if err != nil {
			return fmt.Errorf("lock flights %v: %w", flightIDs, err)
		}
		return nil
	})
	return seating
}

// recordHolds writes the new outcomes and takes the granted seats off their flights in one
// statement. The flights are updated from the rows actually inserted, so the counters can
// never disagree with the holds table, whatever a concurrent transaction did.
func recordHolds(ctx context.Context, tx pgx.Tx, hs []flight.Hold) error {
	var inserted int
	if err := tx.QueryRow(ctx, recordHoldsQuery+`SELECT count(*) FROM new`, holdsArgs(hs)...).Scan(&inserted); err != nil {
		return fmt.Errorf("record %d holds: %w", len(hs), err)
	}
	if inserted != len(hs) {
		return errHoldRace
	}
	return nil
}

// queueRecordHolds queues recordHolds's statement in b, to go to the server with the
// transaction's COMMIT. Nothing can check its count of inserted rows before the COMMIT runs,
// so the statement checks it itself: it fails with errHoldRace's serialization failure, and
// the COMMIT behind it never runs.
func queueRecordHolds(b *pgx.Batch, hs []flight.Hold) {
	b.Queue(recordHoldsQuery+`SELECT serialization_check(count(*) = $9, $10) FROM new`,
		append(holdsArgs(hs), len(hs), errHoldRace.Message)...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("record %d holds: %w", len(hs), err)
		}
		return nil
	}
}

// recordHoldsQuery inserts the holds given as arrays ($1 to $8), skipping any booking another
// transaction recorded first, and takes their held seats off their flights. The caller adds
// the SELECT over new that ends it.
const recordHoldsQuery = `
		WITH new AS (
			INSERT INTO holds (booking_id, flight_id, seats, status, reason, detail, unit_price, currency)
			SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[])
			ON CONFLICT (booking_id) DO NOTHING
			RETURNING flight_id, seats, status
		), taken AS (
			SELECT flight_id, sum(seats)::int AS seats FROM new WHERE status = 'held' GROUP BY flight_id
		), took AS (
			UPDATE flights f SET available_seats = f.available_seats - taken.seats, held_seats = f.held_seats + taken.seats,
			       version = f.version + 1, updated_at = now()
			FROM taken WHERE f.id = taken.flight_id
		)
		`

// holdsArgs returns recordHoldsQuery's arrays for hs.
func holdsArgs(hs []flight.Hold) []any {
	n := len(hs)
	var (
		ids, statuses, reasons, details, currencies = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		flightIDs, prices                           = make([]int64, n), make([]int64, n)
		seats                                       = make([]int32, n)
	)
	for i, h := range hs {
		ids[i], flightIDs[i], seats[i], statuses[i] = h.BookingID, h.FlightID, int32(h.Seats), string(h.Status)
		reasons[i], details[i], prices[i], currencies[i] = h.Reason, h.Detail, h.UnitPrice, h.Currency
	}
	return []any{ids, flightIDs, seats, statuses, reasons, details, prices, currencies}
}

// ReleaseTx gives back the seats a booking holds or bought, inside tx. A release for a
// booking with no hold leaves a tombstone so that a hold arriving later is refused. Releasing
// twice changes nothing the second time. The returned hold's Seats is what was given back by
// the release that took effect (0 for a tombstone or a rejected hold).
//
// A booking that has a hold is released in two round trips: its flight's lock and the hold
// read under it, then the seats given back and the hold marked released.
func (inv *Inventory) ReleaseTx(ctx context.Context, tx pgx.Tx, bookingID string, flightID int64) (flight.Hold, error) {
	var b pgx.Batch
	r := queueReleaseRead(&b, bookingID)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: lock the flight of the hold: %w", bookingID, err)
	}
	h, ok := r.h, r.ok
	if r.locked {
		flightID = r.flightID
	} else {
		// No hold when the flight's lock was sought, so none was taken, and a hold the read
		// found after that was not read under its flight's lock: lock the flight named and
		// read again.
		if err := lockFlight(ctx, tx, flightID); err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
		}
		var err error
		if h, ok, err = getHold(ctx, tx, bookingID); err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
		}
	}
	if !ok {
		tomb := flight.Hold{BookingID: bookingID, FlightID: flightID, Status: flight.HoldReleased,
			Reason: flight.ReasonInvalidRequest, Detail: "released before the hold arrived"}
		inserted, err := insertHold(ctx, tx, tomb)
		if err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: tombstone: %w", bookingID, err)
		}
		if !inserted {
			// The booking's hold was recorded meanwhile on another flight than the one
			// named; rolled back and retried, this release finds it and gives its seats back.
			return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, errHoldRace)
		}
		return tomb, nil
	}
	b = pgx.Batch{}
	h = queueGiveBack(&b, h)
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: return %d seats to flight %d: %w", bookingID, h.Seats, h.FlightID, err)
		}
	}
	return h, nil
}

// releaseRead is what a release reads first: its hold's flight, locked, and then the hold.
type releaseRead struct {
	locked   bool  // the booking had a hold when its flight's lock was sought, and it is taken
	flightID int64 // the hold's flight, if locked
	h        flight.Hold
	ok       bool // the hold read after the lock was there
}

// queueReleaseRead queues in b the statements of a release's first round trip and returns
// the releaseRead they fill once b is sent.
func queueReleaseRead(b *pgx.Batch, bookingID string) *releaseRead {
	r := &releaseRead{}
	b.Queue(lockHoldFlightQuery, bookingID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.flightID, nil)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		r.locked = err == nil
		return err
	})
	queueOneHold(b, getHoldQuery, bookingID, &r.h, &r.ok)
	return r
}

// queueGiveBack queues in b the writes that release h, read under its flight's lock: its
// seats back to the flight and the hold marked released. It returns the release's answer; a
// hold already released or rejected queues nothing.
func queueGiveBack(b *pgx.Batch, h flight.Hold) flight.Hold {
	var column string
	switch h.Status {
	case flight.HoldHeld:
		column = "held_seats"
	case flight.HoldSold:
		column = "sold_seats"
	case flight.HoldRejected:
		h.Seats = 0
		return h
	default: // already released
		return h
	}
	b.Queue(`
		UPDATE flights SET available_seats = available_seats + $2, `+column+` = `+column+` - $2,
		       version = version + 1, updated_at = now()
		WHERE id = $1`, h.FlightID, h.Seats)
	b.Queue(setHoldStatusQuery, h.BookingID, string(flight.HoldReleased))
	h.Status = flight.HoldReleased
	return h
}

// ConfirmTx turns a booking's held seats into sold seats inside tx. Confirming twice returns
// the sold hold again; confirming a released hold fails with flight.ErrHoldReleased, one that
// is not there (never held, rejected) with flight.ErrHoldNotFound; neither changes anything.
//
// It is two statements in one round trip: the flight's lock (found through the hold), then
// the hold read and, if it is held, the hold and the flight's counters changed, in one
// (sellHoldQuery). The server runs the second once the first has its lock. Every change to a
// hold's status takes its flight's lock first, so the hold read under the lock is the one the
// change applies to.
func (inv *Inventory) ConfirmTx(ctx context.Context, tx pgx.Tx, bookingID string) (flight.Hold, error) {
	var (
		b  pgx.Batch
		h  flight.Hold
		ok bool
	)
	queueConfirm(&b, bookingID, &h, &ok)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: sell hold: %w", bookingID, err)
	}
	return confirmed(bookingID, h, ok)
}

// queueConfirm queues in b ConfirmTx's two statements for bookingID; once b is sent, h and ok
// are the hold as it was before, for confirmed.
func queueConfirm(b *pgx.Batch, bookingID string, h *flight.Hold, ok *bool) {
	b.Queue(lockHoldFlightQuery, bookingID)
	queueOneHold(b, sellHoldQuery, bookingID, h, ok)
}

// confirmed is ConfirmTx's answer for a booking whose hold was h before the sale (ok false:
// none).
func confirmed(bookingID string, h flight.Hold, ok bool) (flight.Hold, error) {
	if !ok {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, flight.ErrHoldNotFound)
	}
	switch h.Status {
	case flight.HoldSold:
		return h, nil
	case flight.HoldHeld:
		h.Status = flight.HoldSold
		return h, nil
	case flight.HoldReleased:
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, flight.ErrHoldReleased)
	default:
		return flight.Hold{}, fmt.Errorf("confirm %s: hold is %s: %w", bookingID, h.Status, flight.ErrHoldNotFound)
	}
}

// sellHoldQuery returns a booking's hold as it was, and if it was held, marks it sold and
// moves its seats from held to sold on its flight. The statement's parts share one snapshot,
// so the hold it returns is the one before the change.
const sellHoldQuery = `
		WITH old AS (
			SELECT ` + holdColumns + ` FROM holds WHERE booking_id = $1
		), sold AS (
			UPDATE holds SET status = 'sold', updated_at = now()
			WHERE booking_id = $1 AND status = 'held'
			RETURNING flight_id, seats
		), counted AS (
			UPDATE flights f SET held_seats = f.held_seats - sold.seats, sold_seats = f.sold_seats + sold.seats,
			       version = f.version + 1, updated_at = now()
			FROM sold WHERE f.id = sold.flight_id
		)
		SELECT * FROM old`

// Holds lists every hold recorded for a flight, oldest first.
func (inv *Inventory) Holds(ctx context.Context, flightID int64) ([]flight.Hold, error) {
	rows, err := inv.pool.Query(ctx, `SELECT `+holdColumns+` FROM holds WHERE flight_id = $1 ORDER BY created_at, booking_id`, flightID)
	if err != nil {
		return nil, fmt.Errorf("list holds of flight %d: %w", flightID, err)
	}
	hs, err := pgx.CollectRows(rows, scanHold)
	if err != nil {
		return nil, fmt.Errorf("list holds of flight %d: %w", flightID, err)
	}
	return hs, nil
}

// HoldOf returns the hold recorded for a booking.
func (inv *Inventory) HoldOf(ctx context.Context, bookingID string) (flight.Hold, bool, error) {
	return getHold(ctx, inv.pool, bookingID)
}

// HoldsOf returns the holds recorded for the given bookings, by booking id; a booking with
// no record is absent. Ids that are not UUIDs have no record.
func (inv *Inventory) HoldsOf(ctx context.Context, bookingIDs []string) (map[string]flight.Hold, error) {
	valid := bookingIDs[:0:0]
	for _, id := range bookingIDs {
		if _, err := uuid.Parse(id); err == nil {
			valid = append(valid, id)
		}
	}
	hs, err := holdsOf(ctx, inv.pool, valid)
	if err != nil {
		return nil, err
	}
	return hs, nil
}

// SeatCounts returns a flight's seat counts.
func (inv *Inventory) SeatCounts(ctx context.Context, flightID int64) (flight.SeatCounts, error) {
	var c flight.SeatCounts
	err := inv.pool.QueryRow(ctx, `SELECT total_seats, available_seats, held_seats, sold_seats FROM flights WHERE id = $1`, flightID).
		Scan(&c.Total, &c.Available, &c.Held, &c.Sold)
	if err != nil {
		return c, fmt.Errorf("seat counts of flight %d: %w", flightID, err)
	}
	return c, nil
}

// Audit reads a flight's counters and the seats its holds account for, from one snapshot, so
// that reconciliation and the load tool can check the invariant with Audit.Problems. It takes
// no lock: holds go on while it runs.
func (inv *Inventory) Audit(ctx context.Context, flightID int64) (flight.Audit, error) {
	a := flight.Audit{FlightID: flightID}
	// One statement is one snapshot under READ COMMITTED: the counters and the sums
	// cannot straddle a concurrent hold.
	err := inv.pool.QueryRow(ctx, `
		SELECT f.total_seats, f.available_seats, f.held_seats, f.sold_seats,
		       coalesce(sum(h.seats) FILTER (WHERE h.status = 'held'), 0)::int,
		       coalesce(sum(h.seats) FILTER (WHERE h.status = 'sold'), 0)::int
		FROM flights f LEFT JOIN holds h ON h.flight_id = f.id
		WHERE f.id = $1
		GROUP BY f.id`, flightID).
		Scan(&a.Counts.Total, &a.Counts.Available, &a.Counts.Held, &a.Counts.Sold, &a.Held, &a.Sold)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("audit flight %d: %w", flightID, flight.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("audit flight %d: %w", flightID, err)
	}
	return a, nil
}

// holdSet is recorded holds by booking id.
type holdSet map[string]flight.Hold

func holdsOf(ctx context.Context, q querier, bookingIDs []string) (holdSet, error) {
	hs := holdSet{}
	if len(bookingIDs) == 0 {
		return hs, nil
	}
	rows, err := q.Query(ctx, holdsOfQuery, bookingIDs)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	if err := hs.collect(rows); err != nil {
		return nil, err
	}
	return hs, nil
}

// queueHoldsOf queues holdsOf's query in b and returns the set it fills once b is sent.
func queueHoldsOf(b *pgx.Batch, bookingIDs []string) holdSet {
	hs := holdSet{}
	b.Queue(holdsOfQuery, bookingIDs).Query(hs.collect)
	return hs
}

const holdsOfQuery = `SELECT ` + holdColumns + ` FROM holds WHERE booking_id = ANY($1::uuid[])`

// collect adds the holds rows returns to s.
func (s holdSet) collect(rows pgx.Rows) error {
	list, err := pgx.CollectRows(rows, scanHold)
	if err != nil {
		return fmt.Errorf("read holds: %w", err)
	}
	for _, h := range list {
		s[h.BookingID] = h
	}
	return nil
}

const holdColumns = `booking_id::text, flight_id, seats, status, reason, detail, unit_price, currency, created_at, updated_at`

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func scanHold(row pgx.CollectableRow) (flight.Hold, error) {
	var h flight.Hold
	var status string
	err := row.Scan(&h.BookingID, &h.FlightID, &h.Seats, &status, &h.Reason, &h.Detail, &h.UnitPrice, &h.Currency, &h.CreatedAt, &h.UpdatedAt)
	h.Status = flight.HoldStatus(status)
	if h.Status == flight.HoldHeld || h.Status == flight.HoldSold || (h.Status == flight.HoldReleased && h.Seats > 0) {
		h.Total = h.UnitPrice * int64(h.Seats)
	}
	return h, err
}

func getHold(ctx context.Context, q querier, bookingID string) (flight.Hold, bool, error) {
	h, ok, err := oneHold(q.Query(ctx, getHoldQuery, bookingID))
	if err != nil {
		return flight.Hold{}, false, fmt.Errorf("read hold: %w", err)
	}
	return h, ok, nil
}

const getHoldQuery = `SELECT ` + holdColumns + ` FROM holds WHERE booking_id = $1 FOR UPDATE`

// queueOneHold queues query, with bookingID as its argument, in b; once b is sent, h holds
// the one hold it returned and ok says whether it returned one.
func queueOneHold(b *pgx.Batch, query, bookingID string, h *flight.Hold, ok *bool) {
	b.Queue(query, bookingID).Query(func(rows pgx.Rows) (err error) {
		*h, *ok, err = oneHold(rows, nil)
		return err
	})
}

// oneHold reads the one hold a query returned; ok is false when it returned none.
func oneHold(rows pgx.Rows, err error) (flight.Hold, bool, error) {
	if err != nil {
		return flight.Hold{}, false, err
	}
	h, err := pgx.CollectExactlyOneRow(rows, scanHold)
	if errors.Is(err, pgx.ErrNoRows) {
		return flight.Hold{}, false, nil
	}
	if err != nil {
		return flight.Hold{}, false, err
	}
	return h, true, nil
}

// lockHoldFlightQuery locks the flight of a booking's hold and returns its id, and no row when
// the booking has no hold: one statement instead of a read and a lock. A hold whose flight is
// gone locks nothing, as lockFlight does.
const lockHoldFlightQuery = `
		SELECT h.flight_id, (SELECT true FROM flights f WHERE f.id = h.flight_id FOR UPDATE)
		FROM holds h WHERE h.booking_id = $1`

func lockFlight(ctx context.Context, tx pgx.Tx, flightID int64) error {
	// A missing flight is fine here: the hold row is then the only thing to lock.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM flights WHERE id = $1 FOR UPDATE`, flightID); err != nil {
		return fmt.Errorf("lock flight %d: %w", flightID, err)
	}
	return nil
}

func insertHold(ctx context.Context, tx pgx.Tx, h flight.Hold) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO holds (booking_id, flight_id, seats, status, reason, detail, unit_price, currency)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (booking_id) DO NOTHING`,
		h.BookingID, h.FlightID, h.Seats, string(h.Status), h.Reason, h.Detail, h.UnitPrice, h.Currency)
	if err != nil {
		return false, fmt.Errorf("record hold: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

const setHoldStatusQuery = `UPDATE holds SET status = $2, updated_at = now() WHERE booking_id = $1`
