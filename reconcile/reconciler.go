package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Sources are where a Reconciler reads and repairs. Client provides all three; a service
// may read its own side from its store instead.
type Sources struct {
	Bookings func(ctx context.Context, flightID int64) ([]Booking, error) // flightID 0: every flight
	Holds    func(ctx context.Context, flightID int64) ([]Hold, error)
	Repair   func(ctx context.Context, d Divergence) error // nil: report only
}

// FromClient returns the sources of c.
func FromClient(c *Client) Sources {
	return Sources{Bookings: c.Bookings, Holds: c.Holds, Repair: c.Repair}
}

// Reconciler checks flights for divergences and repairs them, and remembers the outcome of
// its last check for health reporting.
type Reconciler struct {
	src   Sources
	rules Rules
	now   func() time.Time

	mu   sync.Mutex
	last int
	at   time.Time
}

// New returns a Reconciler reading src with rules.
func New(src Sources, rules Rules) *Reconciler {
	return &Reconciler{src: src, rules: rules, now: time.Now}
}

// Last returns the number of divergences the last completed check found and when it
// completed; at is zero before the first.
func (r *Reconciler) Last() (divergences int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.at
}

// Check returns the divergences of the given flights, or of every flight when none is given.
//
// The flight service's holds are read before the bookings and again after them. A hold that
// appears only in the second read, for a booking the bookings do not contain, belongs to a
// booking created after the bookings were read and is left out; any other hold is judged by
// its second, later read. So a hold is never taken for an orphan because its booking is
// newer than the snapshot, and the flight side, which follows the booking side in the saga,
// is never older than the booking it is compared with.
func (r *Reconciler) Check(ctx context.Context, flights ...int64) ([]Divergence, error) {
	if len(flights) == 0 {
		flights = []int64{0}
	}
	var out []Divergence
	for _, f := range flights {
		ds, err := r.checkFlight(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	r.mu.Lock()
	r.last, r.at = len(out), r.now()
	r.mu.Unlock()
	return out, nil
}

func (r *Reconciler) checkFlight(ctx context.Context, flightID int64) ([]Divergence, error) {
	what := "every flight"
	if flightID != 0 {
		what = fmt.Sprintf("flight %d", flightID)
	}
	before, err := r.src.Holds(ctx, flightID)
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: holds: %w", what, err)
	}
	bookings, err := r.src.Bookings(ctx, flightID)
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: bookings: %w", what, err)
	}
	after, err := r.src.Holds(ctx, flightID)
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: holds: %w", what, err)
	}
	known := make(map[string]bool, len(bookings)+len(before))
	for _, b := range bookings {
		known[b.ID] = true
	}
	for _, h := range before {
		known[h.BookingID] = true
	}
	holds := after[:0:0]
	for _, h := range after {
		if known[h.BookingID] {
			holds = append(holds, h)
		}
	}
	return Compare(bookings, holds, r.now(), r.rules), nil
}

// Fix asks for the repair of every divergence that has one, and returns the divergences that
// remain: those that need a person and those whose repair failed (with the errors). A
// repaired divergence disappears once the saga has carried the command out; the next check
// shows it.
func (r *Reconciler) Fix(ctx context.Context, ds []Divergence) (remaining []Divergence, errs []error) {
	for _, d := range ds {
		if d.NeedsHuman() {
			remaining = append(remaining, d)
			continue
		}
		if r.src.Repair == nil {
			remaining = append(remaining, d)
			errs = append(errs, fmt.Errorf("booking %s: no way to repair configured", d.BookingID))
			continue
		}
		if err := r.src.Repair(ctx, d); err != nil {
			remaining = append(remaining, d)
			errs = append(errs, fmt.Errorf("repair %s of booking %s: %w", d.Fix, d.BookingID, err))
		}
	}
	return remaining, errs
}

// Run checks every flight every interval until ctx ends, reporting only: it logs how many
// divergences it found, and each one at debug level. An interval of zero or less turns it
// off. A failed check is logged and tried again at the next tick.
func (r *Reconciler) Run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ds, err := r.Check(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("reconcile check failed", "error", err)
			continue
		}
		level := slog.LevelInfo
		if len(ds) > 0 {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "reconcile check", "divergences", len(ds))
		for _, d := range ds {
			log.Debug("divergence", "booking_id", d.BookingID, "flight_id", d.FlightID, "kind", d.Kind, "fix", d.Fix, "note", d.Note)
		}
	}
}
