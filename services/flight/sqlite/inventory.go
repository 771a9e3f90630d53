package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/flight"
)

// Inventory holds, releases and confirms seats. It implements flight.Inventory with the rules
// of package postgres' Inventory. Every operation runs in a transaction that holds the
// database's write lock from its start (see the package comment), where package postgres
// locks the flight row: it reads the flight and the booking's hold, decides, and writes, with
// no other writer in between.
type Inventory struct {
	db  *sql.DB
	now func() time.Time
}

// NewInventory returns the seat inventory stored in db, a database opened with Open.
func NewInventory(db *sql.DB) *Inventory {
	return &Inventory{db: db, now: time.Now}
}

// Hold holds seats for a booking in its own transaction. See InventoryTx.Hold.
func (inv *Inventory) Hold(ctx context.Context, req flight.HoldRequest) (flight.Hold, error) {
	var h flight.Hold
	err := inTx(ctx, inv.db, func(tx *sql.Tx) (err error) {
		h, err = inv.hold(ctx, tx, req)
		return err
	})
	return h, err
}

// HoldBatch holds seats for several bookings in one transaction. See InventoryTx.HoldBatch.
func (inv *Inventory) HoldBatch(ctx context.Context, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	var hs []flight.Hold
	err := inTx(ctx, inv.db, func(tx *sql.Tx) (err error) {
		hs, err = inv.holdBatch(ctx, tx, reqs)
		return err
	})
	return hs, err
}

// Release gives a booking's seats back in its own transaction. See InventoryTx.Release.
func (inv *Inventory) Release(ctx context.Context, bookingID string, flightID int64) (flight.Hold, error) {
	var h flight.Hold
	err := inTx(ctx, inv.db, func(tx *sql.Tx) (err error) {
		h, err = inv.release(ctx, tx, bookingID, flightID)
		return err
	})
	return h, err
}

// Confirm turns a booking's held seats into sold seats in its own transaction. See
// InventoryTx.Confirm.
func (inv *Inventory) Confirm(ctx context.Context, bookingID string) (flight.Hold, error) {
	var h flight.Hold
	err := inTx(ctx, inv.db, func(tx *sql.Tx) (err error) {
		h, err = inv.confirm(ctx, tx, bookingID)
		return err
	})
	return h, err
}

func (inv *Inventory) hold(ctx context.Context, tx *sql.Tx, req flight.HoldRequest) (flight.Hold, error) {
	hs, err := inv.decide(ctx, tx, []flight.HoldRequest{req})
	if err != nil {
		return flight.Hold{}, fmt.Errorf("hold %s: %w", req.BookingID, err)
	}
	return hs[0], nil
}

func (inv *Inventory) holdBatch(ctx context.Context, tx *sql.Tx, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	hs, err := inv.decide(ctx, tx, reqs)
	if err != nil {
		return nil, fmt.Errorf("hold %d bookings: %w", len(reqs), err)
	}
	return hs, nil
}

// key is the form a booking id is stored in: the UUID's canonical text, or "" when id is no
// UUID (and so has no record).
func key(id string) string {
	u, err := uuid.Parse(id)
	if err != nil {
		return ""
	}
	return u.String()
}

// decide is the hold decision of package postgres' holdTx: outcomes already recorded are
// final, the rest are decided in slice order against the flights as they stand, and the new
// outcomes are recorded with their seats taken off the flights. No other transaction can
// record a booking between the read and the write, since this one holds the write lock.
func (inv *Inventory) decide(ctx context.Context, tx *sql.Tx, reqs []flight.HoldRequest) ([]flight.Hold, error) {
	out := make([]flight.Hold, len(reqs))
	var ids []string
	for i, req := range reqs {
		if reason := req.Check(); reason != "" {
			// Nothing to record: the booking id may not even be a UUID, and the answer is
			// the same however often it is asked.
			out[i] = flight.Hold{BookingID: req.BookingID, FlightID: req.FlightID, Seats: req.Seats,
				Status: flight.HoldRejected, Reason: reason, Detail: "seats must be 1 to 9 and ids valid"}
			continue
		}
		ids = append(ids, key(req.BookingID))
	}
	if len(ids) == 0 {
		return out, nil
	}
	prev, err := holdsOf(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	var flightIDs []int64
	for i, req := range reqs {
		if _, done := prev[key(req.BookingID)]; out[i].Status == "" && !done {
			flightIDs = append(flightIDs, req.FlightID)
		}
	}
	seating, err := seatingOf(ctx, tx, flightIDs)
	if err != nil {
		return nil, err
	}

	now := inv.now()
	first := map[string]int{} // booking key -> index of its first request decided in this batch
	var fresh []flight.Hold
	for i, req := range reqs {
		if out[i].Status != "" {
			continue
		}
		k := key(req.BookingID)
		if h, ok := prev[k]; ok {
			out[i] = previousOutcome(h)
			continue
		}
		if j, ok := first[k]; ok {
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
		out[i], first[k] = h, i
		fresh = append(fresh, h)
	}
	if err := recordHolds(ctx, tx, fresh); err != nil {
		return nil, err
	}
	return out, nil
}

// previousOutcome is the answer to a hold request for a booking that already has a record.
func previousOutcome(h flight.Hold) flight.Hold {
	if h.Status == flight.HoldReleased {
		h.Reason, h.Detail = flight.ReasonInvalidRequest, "the booking was released before or after this hold"
	}
	return h
}

// seatingOf returns what a hold decision needs of each flight; a flight that does not exist
// is absent from the map.
func seatingOf(ctx context.Context, tx *sql.Tx, flightIDs []int64) (map[int64]*flight.Seating, error) {
	seating := map[int64]*flight.Seating{}
	slices.Sort(flightIDs)
	flightIDs = slices.Compact(flightIDs)
	for chunk := range slices.Chunk(flightIDs, maxInList) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, status, departure_time, available_seats, fare_amount, currency
			FROM flights WHERE id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read flights %v: %w", chunk, err)
		}
		for rows.Next() {
			var id int64
			var s flight.Seating
			if err := rows.Scan(&id, &s.Status, tm(&s.Departure), &s.Available, &s.Fare, &s.Currency); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read flights %v: %w", chunk, err)
			}
			seating[id] = &s
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read flights %v: %w", chunk, err)
		}
	}
	return seating, nil
}

// recordHolds writes the new outcomes and takes the granted seats off their flights.
func recordHolds(ctx context.Context, tx *sql.Tx, hs []flight.Hold) error {
	taken := map[int64]int{}
	var flights []int64
	for _, h := range hs {
		if err := insertHold(ctx, tx, h); err != nil {
			return err
		}
		if h.Status == flight.HoldHeld {
			if _, ok := taken[h.FlightID]; !ok {
				flights = append(flights, h.FlightID)
			}
			taken[h.FlightID] += h.Seats
		}
	}
	for _, f := range flights {
		if _, err := tx.ExecContext(ctx, `
			UPDATE flights SET available_seats = available_seats - $2, held_seats = held_seats + $2,
			       version = version + 1, updated_at = `+nowSQL+`
			WHERE id = $1`, f, taken[f]); err != nil {
			return fmt.Errorf("hold %d seats of flight %d: %w", taken[f], f, err)
		}
	}
	return nil
}

func insertHold(ctx context.Context, tx *sql.Tx, h flight.Hold) error {
	// A conflict cannot happen: the transaction read the booking's record under the write
	// lock it still holds. It would be a bug, and the primary key refuses it.
	_, err := tx.ExecContext(ctx, `
		INSERT INTO holds (booking_id, flight_id, seats, status, reason, detail, unit_price, currency)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		key(h.BookingID), h.FlightID, h.Seats, string(h.Status), h.Reason, h.Detail, h.UnitPrice, h.Currency)
	if err != nil {
		return fmt.Errorf("record hold %s: %w", h.BookingID, err)
	}
	return nil
}

// release gives back the seats a booking holds or bought. A release for a booking with no
// hold leaves a tombstone so that a hold arriving later is refused. Releasing twice changes
// nothing the second time. The returned hold's Seats is what was given back by the release
// that took effect (0 for a tombstone or a rejected hold).
func (inv *Inventory) release(ctx context.Context, tx *sql.Tx, bookingID string, flightID int64) (flight.Hold, error) {
	k := key(bookingID)
	if k == "" {
		return flight.Hold{}, fmt.Errorf("release %s: booking id is not a UUID", bookingID)
	}
	h, ok, err := getHold(ctx, tx, k)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	}
	if !ok {
		tomb := flight.Hold{BookingID: bookingID, FlightID: flightID, Status: flight.HoldReleased,
			Reason: flight.ReasonInvalidRequest, Detail: "released before the hold arrived"}
		if err := insertHold(ctx, tx, tomb); err != nil {
			return flight.Hold{}, fmt.Errorf("release %s: tombstone: %w", bookingID, err)
		}
		return tomb, nil
	}
	var column string
	switch h.Status {
	case flight.HoldHeld:
		column = "held_seats"
	case flight.HoldSold:
		column = "sold_seats"
	case flight.HoldRejected:
		h.Seats = 0
		return h, nil
	default: // already released
		return h, nil
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE flights SET available_seats = available_seats + $2, `+column+` = `+column+` - $2,
		       version = version + 1, updated_at = `+nowSQL+`
		WHERE id = $1`, h.FlightID, h.Seats); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: return %d seats to flight %d: %w", bookingID, h.Seats, h.FlightID, err)
	}
	if err := setHoldStatus(ctx, tx, k, flight.HoldReleased); err != nil {
		return flight.Hold{}, fmt.Errorf("release %s: %w", bookingID, err)
	}
	h.Status = flight.HoldReleased
	return h, nil
}

// confirm turns a booking's held seats into sold seats. Confirming twice returns the sold
// hold again; confirming a released hold fails with flight.ErrHoldReleased, one that is not
// there (never held, rejected) with flight.ErrHoldNotFound; neither changes anything.
func (inv *Inventory) confirm(ctx context.Context, tx *sql.Tx, bookingID string) (flight.Hold, error) {
	k := key(bookingID)
	if k == "" {
		return flight.Hold{}, fmt.Errorf("confirm %s: booking id is not a UUID", bookingID)
	}
	h, ok, err := getHold(ctx, tx, k)
	if err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	if !ok {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, flight.ErrHoldNotFound)
	}
	switch h.Status {
	case flight.HoldSold:
		return h, nil
	case flight.HoldHeld:
	case flight.HoldReleased:
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, flight.ErrHoldReleased)
	default:
		return flight.Hold{}, fmt.Errorf("confirm %s: hold is %s: %w", bookingID, h.Status, flight.ErrHoldNotFound)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE flights SET held_seats = held_seats - $2, sold_seats = sold_seats + $2,
		       version = version + 1, updated_at = `+nowSQL+`
		WHERE id = $1`, h.FlightID, h.Seats); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: sell %d seats of flight %d: %w", bookingID, h.Seats, h.FlightID, err)
	}
	if err := setHoldStatus(ctx, tx, k, flight.HoldSold); err != nil {
		return flight.Hold{}, fmt.Errorf("confirm %s: %w", bookingID, err)
	}
	h.Status = flight.HoldSold
	return h, nil
}

// Holds lists every hold recorded for a flight, oldest first.
func (inv *Inventory) Holds(ctx context.Context, flightID int64) ([]flight.Hold, error) {
	return list(ctx, inv.db, fmt.Sprintf("list holds of flight %d", flightID),
		`SELECT `+holdColumns+` FROM holds WHERE flight_id = $1 ORDER BY created_at, booking_id`, []any{flightID}, scanHold)
}

// HoldOf returns the hold recorded for a booking.
func (inv *Inventory) HoldOf(ctx context.Context, bookingID string) (flight.Hold, bool, error) {
	k := key(bookingID)
	if k == "" {
		return flight.Hold{}, false, fmt.Errorf("read hold %s: booking id is not a UUID", bookingID)
	}
	return getHold(ctx, inv.db, k)
}

// HoldsOf returns the holds recorded for the given bookings, by booking id; a booking with
// no record is absent. Ids that are not UUIDs have no record.
func (inv *Inventory) HoldsOf(ctx context.Context, bookingIDs []string) (map[string]flight.Hold, error) {
	var keys []string
	for _, id := range bookingIDs {
		if k := key(id); k != "" {
			keys = append(keys, k)
		}
	}
	return holdsOf(ctx, inv.db, keys)
}

// SeatCounts returns a flight's seat counts.
func (inv *Inventory) SeatCounts(ctx context.Context, flightID int64) (flight.SeatCounts, error) {
	var c flight.SeatCounts
	err := inv.db.QueryRowContext(ctx, `SELECT total_seats, available_seats, held_seats, sold_seats FROM flights WHERE id = $1`, flightID).
		Scan(&c.Total, &c.Available, &c.Held, &c.Sold)
	if err != nil {
		return c, fmt.Errorf("seat counts of flight %d: %w", flightID, err)
	}
	return c, nil
}

// Audit reads a flight's counters and the seats its holds account for, in one statement,
// which reads one snapshot of the database, so the counters and the sums cannot straddle a
// concurrent hold.
func (inv *Inventory) Audit(ctx context.Context, flightID int64) (flight.Audit, error) {
	a := flight.Audit{FlightID: flightID}
	err := inv.db.QueryRowContext(ctx, `
		SELECT f.total_seats, f.available_seats, f.held_seats, f.sold_seats,
		       coalesce(sum(h.seats) FILTER (WHERE h.status = 'held'), 0),
		       coalesce(sum(h.seats) FILTER (WHERE h.status = 'sold'), 0)
		FROM flights f LEFT JOIN holds h ON h.flight_id = f.id
		WHERE f.id = $1
		GROUP BY f.id`, flightID).
		Scan(&a.Counts.Total, &a.Counts.Available, &a.Counts.Held, &a.Counts.Sold, &a.Held, &a.Sold)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("audit flight %d: %w", flightID, flight.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("audit flight %d: %w", flightID, err)
	}
	return a, nil
}

// HoldsPage returns up to q.Limit holds in booking id order, and the cursor of the next page
// ("" on the last page), paging on the primary key as package postgres does.
func (inv *Inventory) HoldsPage(ctx context.Context, q flight.HoldsQuery) ([]flight.Hold, string, error) {
	where, args := ` WHERE 1`, []any{}
	if q.FlightID != 0 {
		args = append(args, q.FlightID)
		where += fmt.Sprintf(` AND flight_id = $%d`, len(args))
	}
	if q.After != "" {
		k := key(q.After)
		if k == "" {
			return nil, "", fmt.Errorf("holds page: cursor %q is not a booking id", q.After)
		}
		args = append(args, k)
		where += fmt.Sprintf(` AND booking_id > $%d`, len(args))
	}
	args = append(args, q.Limit+1)
	hs, err := list(ctx, inv.db, "holds page", `SELECT `+holdColumns+` FROM holds`+where+
		fmt.Sprintf(` ORDER BY booking_id LIMIT $%d`, len(args)), args, scanHold)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(hs) > q.Limit {
		hs = hs[:q.Limit]
		next = hs[len(hs)-1].BookingID
	}
	return hs, next, nil
}

const holdColumns = `booking_id, flight_id, seats, status, reason, detail, unit_price, currency, created_at, updated_at`

func scanHold(row scanner) (flight.Hold, error) {
	var h flight.Hold
	var status string
	err := row.Scan(&h.BookingID, &h.FlightID, &h.Seats, &status, &h.Reason, &h.Detail, &h.UnitPrice, &h.Currency, tm(&h.CreatedAt), tm(&h.UpdatedAt))
	h.Status = flight.HoldStatus(status)
	if h.Status == flight.HoldHeld || h.Status == flight.HoldSold || (h.Status == flight.HoldReleased && h.Seats > 0) {
		h.Total = h.UnitPrice * int64(h.Seats)
	}
	return h, err
}

// maxInList bounds the ids of one IN list, well under SQLite's limit on host parameters.
const maxInList = 500

// placeholders returns "$1, $2, ..., $n".
func placeholders(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	return b.String()
}

// holdsOf returns the holds of the bookings with the given keys, by key.
func holdsOf(ctx context.Context, q querier, keys []string) (map[string]flight.Hold, error) {
	hs := map[string]flight.Hold{}
	for chunk := range slices.Chunk(keys, maxInList) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		list, err := list(ctx, q, "read holds", `SELECT `+holdColumns+` FROM holds WHERE booking_id IN (`+placeholders(len(chunk))+`)`, args, scanHold)
		if err != nil {
			return nil, err
		}
		for _, h := range list {
			hs[h.BookingID] = h
		}
	}
	return hs, nil
}

func getHold(ctx context.Context, q querier, k string) (flight.Hold, bool, error) {
	h, err := scanHold(q.QueryRowContext(ctx, `SELECT `+holdColumns+` FROM holds WHERE booking_id = $1`, k))
	if errors.Is(err, sql.ErrNoRows) {
		return flight.Hold{}, false, nil
	}
	if err != nil {
		return flight.Hold{}, false, fmt.Errorf("read hold: %w", err)
	}
	return h, true, nil
}

func setHoldStatus(ctx context.Context, tx *sql.Tx, k string, s flight.HoldStatus) error {
	if _, err := tx.ExecContext(ctx, `UPDATE holds SET status = $2, updated_at = `+nowSQL+` WHERE booking_id = $1`, k, string(s)); err != nil {
		return fmt.Errorf("set hold %s: %w", s, err)
	}
	return nil
}
