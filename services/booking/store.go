package booking

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Store keeps bookings, their history, payments and idempotency keys, and runs the saga's
// transitions so that payment, cancel and expiry of one booking exclude one another. The api
// and the expiry scheduler use it; the mysql package implements it for production and the
// sqlite package for the dev mode, and one contract suite (package storetest) holds both to
// the same behaviour.
//
// Every method that changes a booking reads it under the adapter's write lock for that row,
// applies Rules.Apply, and writes the row, a history line and the change's effects (through
// the adapter's Emit hook, into the outbox) in one transaction.
type Store interface {
	// InTx runs fn in one transaction, committing when fn returns nil and rolling back
	// otherwise. fn may run more than once (an adapter retries a transaction the database
	// aborted for a deadlock), so it must do nothing outside tx.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	// Get returns the booking with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Booking, error)
	// List returns up to q.Limit of a user's bookings, newest first, and the cursor of the
	// next page ("" on the last page).
	List(ctx context.Context, q ListQuery) ([]Booking, string, error)
	// ListByFlight returns up to q.Limit bookings of any user in id (creation) order, and the
	// cursor of the next page ("" on the last page).
	ListByFlight(ctx context.Context, q FlightQuery) ([]Booking, string, error)
	// History returns every recorded change of the booking, oldest first.
	History(ctx context.Context, id string) ([]HistoryEntry, error)
	// Payments returns the booking's payments, oldest first.
	Payments(ctx context.Context, bookingID string) ([]Payment, error)

	// RecordFlight applies a catalogue event to the local copy of flight f.ID: f is the
	// flight as the event states it, with AnnouncedAt its ce-time. It is idempotent and
	// order-tolerant: a cancellation is final, and a schedule older than the one recorded
	// changes nothing.
	RecordFlight(ctx context.Context, f Flight) error
	// Flight returns the local copy of a flight, or ErrFlightNotFound.
	Flight(ctx context.Context, id int64) (Flight, error)

	// Create records a new PENDING booking and its hold request in a transaction of its own.
	Create(ctx context.Context, userID string, flightID int64, seats int) (Booking, error)
	// Apply applies in to the booking in a transaction of its own; see Tx.Apply.
	Apply(ctx context.Context, id string, in Input) (Change, error)
	// Repair re-sends the flight service the command r for the booking, under its row lock,
	// with a history line and no change of status (see Repair.Apply).
	Repair(ctx context.Context, id string, r Repair) (Change, error)
	// ReleaseOrphan asks the flight service to give back seats it holds for a booking this
	// service has no record of; it fails with ErrInvalidTransition when the booking exists.
	ReleaseOrphan(ctx context.Context, id string, flightID int64, seats int) error
	// ClaimExpired returns up to limit ids of bookings due to expire, oldest first. A claim
	// is a hint: Expire re-checks each booking under its lock.
	ClaimExpired(ctx context.Context, limit int) ([]string, error)

	// RecordLatePayment records a charge that could not confirm its booking and owes its
	// refund, unless it is the charge that paid the booking. It reports whether a refund is
	// owed.
	RecordLatePayment(ctx context.Context, p Payment) (refundOwed bool, err error)
	// RefundDue sends the booking's pending refunds to the gateway and marks them done,
	// returning how many it sent.
	RefundDue(ctx context.Context, gw PaymentGateway, bookingID string) (int, error)

	// ClaimKey claims an idempotency key in a transaction of its own and commits it, for a
	// request that does work outside the database (a payment); see Tx.ClaimKey.
	ClaimKey(ctx context.Context, k Key) (*Response, error)
	// ReleaseKey forgets a claimed key whose request failed, so the client may retry with it.
	ReleaseKey(ctx context.Context, k Key) error

	// Rules returns the saga timings the store applies.
	Rules() Rules
	// Now returns the store's current time in UTC, to the microsecond the store keeps.
	Now() time.Time
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
}

// Tx is what a handler does inside one transaction of a Store: everything it does commits
// together or not at all.
type Tx interface {
	// Create records a new PENDING booking and its hold request.
	Create(ctx context.Context, userID string, flightID int64, seats int) (Booking, error)
	// Apply locks the booking, applies in at the store's time, and unless the change is a
	// no-op writes the row, a history line and the effects. It returns the change (Noop for a
	// duplicate or a message that no longer applies) or the domain's error wrapped with the
	// id; ErrNotFound for an unknown booking.
	Apply(ctx context.Context, id string, in Input) (Change, error)
	// ConfirmPayment confirms the booking with a charge already made: it applies Pay under
	// the lock and records the payment. If the booking moved on since the charge (expired,
	// cancelled, paid), it returns the domain's error and writes nothing.
	ConfirmPayment(ctx context.Context, p Payment) (Change, error)
	// ClaimKey claims an idempotency key for a request whose work happens in this
	// transaction. It returns the stored response when the key was completed with the same
	// request, ErrKeyReused when it was used for another request, and ErrKeyInProgress when
	// another request holds it (a key in progress for too long is taken over).
	ClaimKey(ctx context.Context, k Key) (*Response, error)
	// CompleteKey stores the response of the request that claimed k.
	CompleteKey(ctx context.Context, k Key, r Response) error
	// ClaimMessage records that consumer processed the message msgID (the inbox). It returns
	// false when the message was already processed; the handler then changes nothing.
	ClaimMessage(ctx context.Context, consumer, msgID string) (first bool, err error)
	// ClaimMessages is ClaimMessage for several messages at once, answering for each in order;
	// a message listed twice is first only the first time. It then takes the row locks of the
	// bookings lock, as Lock does, in the same step: an adapter may send the claims and the
	// locks together. Name every booking the messages are about, since which messages are
	// first is not known until the claims have run.
	ClaimMessages(ctx context.Context, msgs []Message, lock []string) (first []bool, err error)
	// Lock takes the row locks of the bookings ids at once, in id order, for the Apply calls
	// that follow: an adapter may then read each booking only once. Ids of bookings that do
	// not exist are ignored (Apply reports them).
	Lock(ctx context.Context, ids []string) error
}

// Message names a message a consumer processes, for the inbox.
type Message struct {
	Consumer string
	ID       string
}

// ListQuery selects a user's bookings, newest first.
type ListQuery struct {
	UserID string
	Status Status // empty for any
	Before string // cursor: only bookings with an id below this one
	Limit  int
}

// FlightQuery selects a page of every user's bookings, oldest first, for reconciliation.
type FlightQuery struct {
	FlightID int64  // 0 for every flight
	After    string // cursor: only bookings with an id above this one
	Limit    int
}

// Idempotency errors; the api answers 422 and 409.
var (
	ErrKeyReused     = errors.New("idempotency key was already used with a different request")
	ErrKeyInProgress = errors.New("a request with this idempotency key is still in progress")
)

// Key identifies one client request: the user's Idempotency-Key and a hash of the request
// (method, path and body), so that the same key cannot be replayed for another request. Keys
// live in the database, never in memory, so a retry that reaches another replica or a
// restarted process is recognised.
type Key struct {
	UserID string
	Key    string
	Hash   string // hex SHA-256
}

// Response is a stored response, replayed to a retry with the same key and request.
type Response struct {
	Status int
	Body   []byte
}

// NewPayment returns a payment for a charge the gateway made for booking id, with a fresh id.
func NewPayment(bookingID string, r PaymentResult) (Payment, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Payment{}, fmt.Errorf("payment id: %w", err)
	}
	return Payment{ID: id.String(), BookingID: bookingID, Amount: r.Amount, Currency: r.Currency, GatewayRef: r.Ref}, nil
}

// Repair is a command to the flight service that reconciliation sends again, because the
// flight service's record of a booking's seats disagrees with the booking.
type Repair string

// Repairs, each one of the saga's commands.
const (
	RepairRelease     Repair = "release"      // SeatReleaseRequested: the booking ended but its seats are still taken
	RepairRequestHold Repair = "request_hold" // SeatHoldRequested: the booking waits for seats the flight service never recorded
	RepairConfirm     Repair = "confirm"      // SeatsConfirmRequested: the booking is paid but its seats are only held
)

// Valid reports whether r is a known repair.
func (r Repair) Valid() bool {
	return r == RepairRelease || r == RepairRequestHold || r == RepairConfirm
}

// Apply returns the change that re-sends r for b at now: the command as its one effect, a
// history line with cause "reconcile_<r>", and the status left alone. It fails with
// ErrInvalidTransition when r does not fit b's status: a repair only re-sends what the saga
// would have sent for a booking in that status, so it can never take the saga somewhere the
// state machine would not. The flight service's handlers are idempotent by booking id, so a
// repair that turns out not to have been needed changes nothing there.
func (r Repair) Apply(b Booking, now time.Time) (Change, error) {
	var e Effect
	switch {
	case r == RepairRelease && b.Status == Cancelled:
		e = Effect{Kind: RequestRelease, Reason: ReleaseCancelled}
	case r == RepairRelease && b.Status == Expired:
		e = Effect{Kind: RequestRelease, Reason: ReleaseExpired}
	case r == RepairRelease && b.Status == Rejected:
		// A rejected booking never had seats; any it has were held after the rejection.
		e = Effect{Kind: RequestRelease, Reason: ReleaseLateHold}
	case r == RepairRequestHold && (b.Status == Pending || b.Status == Held):
		e = Effect{Kind: RequestHold}
	case r == RepairConfirm && b.Status == Confirmed:
		e = Effect{Kind: RequestConfirm}
	default:
		return Change{}, fmt.Errorf("%s for a %s booking: %w", r, b.Status, ErrInvalidTransition)
	}
	return Change{From: b.Status, Booking: b.to(b.Status, now), Effects: []Effect{e},
		Cause: "reconcile_" + string(r), Detail: fmt.Sprintf("reconcile sent the flight service %s again", e.Kind)}, nil
}
