package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/reconcile"
	"github.com/flightbook/flightbook/services/booking"
)

// flightIDs is a repeatable --flight flag.
type flightIDs []int64

func (f *flightIDs) String() string {
	s := make([]string, len(*f))
	for i, id := range *f {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ",")
}

func (f *flightIDs) Set(v string) error {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("flight id %q: must be a positive integer", v)
	}
	*f = append(*f, id)
	return nil
}

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var flights flightIDs
	fs.Var(&flights, "flight", "flight id to check (repeat for several); every flight when absent")
	fix := fs.Bool("fix", false, "repair each divergence that has a repair, through the booking service's outbox")
	dryRun := fs.Bool("dry-run", false, "with --fix: say what would be repaired, send nothing")
	flightURL := fs.String("flight-url", "http://127.0.0.1:8081", "flight service base URL")
	bookingURL := fs.String("booking-url", "http://127.0.0.1:8082", "booking service base URL")
	pendingAfter := fs.Duration("pending-after", time.Minute, "a PENDING booking older than this with no answer is a divergence")
	settle := fs.Duration("settle", 30*time.Second, "leave alone bookings and holds that changed more recently than this (the saga is still at work)")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each HTTP request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: flightbook reconcile [--flight N ...] [--fix [--dry-run]] [--flight-url U] [--booking-url U]

Compares the booking service's bookings with the flight service's holds through their admin
APIs (with an admin token signed with FLIGHTBOOK_AUTH_SECRET) and prints every divergence.
--fix sends each repairable one's saga command again through the booking outbox; the saga
carries it out shortly after, and a second run shows what is left. Exits with status 1 when
divergences remain: without --fix, when any is found; with it, those needing a person and
those whose repair failed.

flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dryRun && !*fix {
		return errors.New("reconcile: --dry-run only goes with --fix")
	}
	var cfg struct{ Auth auth.Config }
	if err := config.Load(&cfg); err != nil {
		return err
	}
	authn, err := auth.New(cfg.Auth, nil)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	client := &reconcile.Client{
		FlightURL: strings.TrimRight(*flightURL, "/"), BookingURL: strings.TrimRight(*bookingURL, "/"),
		Token: adminToken(authn), HTTP: &http.Client{Timeout: *timeout},
	}
	r := reconcile.New(reconcile.FromClient(client), reconcile.Rules{PendingAfter: *pendingAfter, Settle: *settle})

	ds, err := r.Check(ctx, flights...)
	if err != nil {
		return err
	}
	for _, d := range ds {
		fmt.Fprintln(stdout, d)
	}
	human := 0
	for _, d := range ds {
		if d.NeedsHuman() {
			human++
		}
	}
	fmt.Fprintf(stdout, "%d divergence(s): %d repairable, %d need a human\n", len(ds), len(ds)-human, human)
	if len(ds) == 0 {
		return nil
	}
	if !*fix {
		return fmt.Errorf("reconcile: %d divergence(s) found", len(ds))
	}
	if *dryRun {
		for _, d := range ds {
			if !d.NeedsHuman() {
				fmt.Fprintf(stdout, "would send %s for booking %s\n", d.Fix, d.BookingID)
			}
		}
		return fmt.Errorf("reconcile: %d divergence(s) found (dry run: nothing sent)", len(ds))
	}
	remaining, errs := r.Fix(ctx, ds)
	for _, err := range errs {
		fmt.Fprintln(stdout, "repair failed:", err)
	}
	fmt.Fprintf(stdout, "sent %d repair(s) through the booking outbox; %d divergence(s) remain (%d need a human, %d repair(s) failed)\n",
		len(ds)-len(remaining), len(remaining), human, len(errs))
	if len(remaining) > 0 {
		return fmt.Errorf("reconcile: %d divergence(s) remain", len(remaining))
	}
	return nil
}

// adminToken mints a short-lived admin token for each request, so a long run never sends an
// expired one.
func adminToken(a *auth.Authenticator) func() (string, error) {
	return func() (string, error) { return a.Token("reconcile", auth.RoleAdmin, 5*time.Minute) }
}

// newBookingReconciler is the booking service's periodic, report-only reconciliation: its
// own bookings come from its store, the holds from the flight service's admin API.
func newBookingReconciler(cfg bookingConfig, store booking.Store, a *auth.Authenticator) (*reconcile.Reconciler, error) {
	if cfg.ReconcileInterval > 0 && cfg.FlightServiceURL == "" {
		return nil, errors.New("booking: FLIGHTBOOK_RECONCILE_INTERVAL needs FLIGHTBOOK_FLIGHT_SERVICE_URL, the flight service to compare with")
	}
	client := &reconcile.Client{FlightURL: strings.TrimRight(cfg.FlightServiceURL, "/"), Token: adminToken(a), HTTP: &http.Client{Timeout: 30 * time.Second}}
	bookings := func(ctx context.Context, flightID int64) ([]reconcile.Booking, error) {
		var out []reconcile.Booking
		q := booking.FlightQuery{FlightID: flightID, Limit: 1000}
		for {
			bs, next, err := store.ListByFlight(ctx, q)
			if err != nil {
				return nil, err
			}
			for _, b := range bs {
				out = append(out, reconcile.Booking{ID: b.ID, FlightID: b.FlightID, Seats: b.Seats, Status: b.Status, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt})
			}
			if next == "" {
				return out, nil
			}
			q.After = next
		}
	}
	return reconcile.New(reconcile.Sources{Bookings: bookings, Holds: client.Holds}, reconcile.Rules{PendingAfter: time.Minute, Settle: 30 * time.Second}), nil
}
