package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/testenv"
)

// setting returns the value of a FLIGHTBOOK_* setting the services were started with.
func (s *e2eSystem) setting(name string) string {
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	s.t.Fatalf("no setting %s", name)
	return ""
}

// TestReconcileOverHTTP breaks the agreement between the two services behind their backs, in
// each way reconcile knows, and checks that `flightbook reconcile` finds every case through
// the admin APIs, that --fix repairs the repairable ones through the saga, and that a second
// run finds nothing. A released hold under a HELD booking, which no command can repair, is
// reported as needing a person and keeps the exit status at 1.
func TestReconcileOverHTTP(t *testing.T) {
	t.Parallel()
	s := startE2E(t, e2eOptions{env: []string{"FLIGHTBOOK_RECONCILE_INTERVAL=200ms"}})
	ctx := context.Background()
	newFlight := s.catalogue()
	f, f2 := newFlight(20), newFlight(20)

	held := func(user string, flight int64, seats int) string {
		b := s.must(200, "booking", "POST", "/api/v1/bookings", user, fmt.Sprintf(`{"flight_id":%d,"seats":%d}`, flight, seats),
			"Prefer", "wait=10", "Idempotency-Key", user+"-1")
		if b.str("status") != "HELD" {
			t.Fatalf("%s's booking: %s", user, b.raw)
		}
		return b.str("id")
	}
	lost := held("ann", f, 2)      // its hold will vanish
	ended := held("ben", f, 3)     // cancelled, then its seats taken again
	released := held("cat", f2, 1) // its hold released behind its back
	held("dan", f, 1)              // left alone
	s.must(200, "booking", "POST", "/api/v1/bookings/"+ended+"/cancel", "ben", "")
	s.await("ben's seats released", func() bool { _, avail, held, _ := s.seats(f); return avail == 17 && held == 3 })

	pool, err := pgxpool.New(ctx, s.setting("FLIGHTBOOK_POSTGRES_URL"))
	testenv.Fatal(t, "postgres", err)
	defer pool.Close()
	mcfg, err := gomysql.ParseDSN(s.setting("FLIGHTBOOK_MYSQL_DSN"))
	testenv.Fatal(t, "mysql dsn", err)
	mcfg.ParseTime, mcfg.Loc = true, time.UTC
	conn, err := gomysql.NewConnector(mcfg)
	testenv.Fatal(t, "mysql", err)
	db := sql.OpenDB(conn)
	defer db.Close()

	// Each change keeps the flight's own invariant (available + held + sold == total), as a
	// bug or a hand edit that left the counters consistent would: only the other service
	// disagrees. The holds are dated an hour back so that the booking service's periodic
	// check, which waits for the saga to settle, sees them too.
	pgExec := func(what, q string, args ...any) {
		t.Helper()
		_, err := pool.Exec(ctx, q, args...)
		testenv.Fatal(t, what, err)
	}
	pgExec("lose ann's hold", `WITH h AS (DELETE FROM holds WHERE booking_id = $1 RETURNING flight_id, seats)
		UPDATE flights f SET available_seats = available_seats + h.seats, held_seats = held_seats - h.seats FROM h WHERE f.id = h.flight_id`, lost)
	pgExec("hold ben's seats again", `WITH h AS (UPDATE holds SET status = 'held', updated_at = now() - interval '1 hour' WHERE booking_id = $1 RETURNING flight_id, seats)
		UPDATE flights f SET available_seats = available_seats - h.seats, held_seats = held_seats + h.seats FROM h WHERE f.id = h.flight_id`, ended)
	pgExec("release cat's hold", `WITH h AS (UPDATE holds SET status = 'released', updated_at = now() - interval '1 hour' WHERE booking_id = $1 RETURNING flight_id, seats)
		UPDATE flights f SET available_seats = available_seats + h.seats, held_seats = held_seats - h.seats FROM h WHERE f.id = h.flight_id`, released)
	orphan := uuid.NewString()
	pgExec("hold seats for nobody", `INSERT INTO holds (booking_id, flight_id, seats, status, unit_price, currency, created_at, updated_at)
		VALUES ($1, $2, 2, 'held', 420000, 'INR', now() - interval '1 hour', now() - interval '1 hour')`, orphan, f)
	pgExec("count the orphan's seats", `UPDATE flights SET available_seats = available_seats - 2, held_seats = held_seats + 2 WHERE id = $1`, f)
	// A booking whose SeatHoldRequested never reached the outbox.
	pendingID := uuid.Must(uuid.NewV7()).String()
	created := time.Now().UTC().Add(-5 * time.Second)
	_, err = db.ExecContext(ctx, `INSERT INTO bookings (id, user_id, flight_id, seats, status, created_at, updated_at, version)
		VALUES (?, 'eve', ?, 1, 'PENDING', ?, ?, 1)`, pendingID, f, created, created)
	testenv.Fatal(t, "insert pending booking", err)
	_, err = db.ExecContext(ctx, `INSERT INTO booking_history (booking_id, seq, from_status, to_status, cause, detail, at)
		VALUES (?, 1, '', 'PENDING', 'requested', '1 seat(s) requested', ?)`, pendingID, created)
	testenv.Fatal(t, "insert pending history", err)

	reconcileArgs := func(flight int64, extra ...string) []string {
		return append([]string{"reconcile", "--flight-url", "http://" + s.addrs["flight"], "--booking-url", "http://" + s.addrs["booking"],
			"--flight", strconv.FormatInt(flight, 10), "--settle", "0s", "--pending-after", "1s"}, extra...)
	}
	reconcileRun := func(args []string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, args, &out, &errOut)
		return out.String() + errOut.String(), err
	}

	// Found, each with its repair; the dry run sends nothing.
	out, err := reconcileRun(reconcileArgs(f))
	if err == nil {
		t.Fatalf("reconcile found nothing to report:\n%s", out)
	}
	for _, want := range []string{
		lost + ": held_without_seats (booking HELD, hold missing, 2 seat(s)); fix: request_hold",
		ended + ": ended_booking_has_seats (booking CANCELLED, hold held, 3 seat(s)); fix: release",
		orphan + ": orphan_hold (booking missing, hold held, 2 seat(s)); fix: release",
		pendingID + ": pending_stuck (booking PENDING, hold missing, 1 seat(s)); fix: request_hold",
		"4 divergence(s): 4 repairable, 0 need a human",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reconcile output lacks %q:\n%s", want, out)
		}
	}
	out, err = reconcileRun(reconcileArgs(f, "--fix", "--dry-run"))
	if err == nil || strings.Count(out, "would send") != 4 {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if out, err := reconcileRun(reconcileArgs(f)); err == nil || !strings.Contains(out, "4 divergence(s)") {
		t.Fatalf("after the dry run: %v\n%s", err, out)
	}
	out, err = reconcileRun(reconcileArgs(f2))
	if err == nil || !strings.Contains(out, released+": held_without_seats (booking HELD, hold released, 1 seat(s)); NEEDS A HUMAN") {
		t.Fatalf("flight 2: %v\n%s", err, out)
	}

	// The booking service's own periodic check saw them too (it leaves alone what changed in
	// the last 30s, so not all of them).
	logged := regexp.MustCompile(`"msg":"reconcile check".*"divergences":[1-9]`)
	s.await("the periodic check logging divergences", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.dir, "booking.log"))
		return logged.Match(b)
	})

	// Repaired through the saga; a second run finds nothing.
	if out, err := reconcileRun(reconcileArgs(f, "--fix")); err != nil || !strings.Contains(out, "sent 4 repair(s)") {
		t.Fatalf("reconcile --fix: %v\n%s", err, out)
	}
	s.await("a clean reconcile of flight 1", func() bool { _, err := reconcileRun(reconcileArgs(f)); return err == nil })
	out, _ = reconcileRun(reconcileArgs(f))
	if !strings.Contains(out, "0 divergence(s)") {
		t.Fatalf("second run:\n%s", out)
	}
	// ann's and eve's seats held (2 + 1), dan's still (1); ben's and the orphan's back.
	if total, avail, held, sold := s.seats(f); total != 20 || avail != 16 || held != 4 || sold != 0 {
		t.Fatalf("flight 1 after the repairs: total %d available %d held %d sold %d", total, avail, held, sold)
	}
	if st := s.booking("eve", pendingID).str("status"); st != "HELD" {
		t.Fatalf("eve's booking is %s, want HELD", st)
	}
	if c := causes(s.must(200, "booking", "GET", "/api/v1/bookings/"+lost+"/history", "ann", "")); !slices.Contains(c, "reconcile_request_hold") {
		t.Fatalf("ann's history %v lacks the repair", c)
	}

	// The booking service's periodic check reports in /readyz: cat's booking is the one left.
	s.await("the periodic reconcile in /readyz", func() bool {
		d, _ := s.must(200, "booking", "GET", "/readyz", "", "").body["detail"].(map[string]any)
		rec, _ := d["reconcile"].(map[string]any)
		return rec != nil && rec["divergences"] == float64(1)
	})

	// No command repairs cat's booking: --fix leaves it, and says so with exit status 1.
	out, err = reconcileRun(reconcileArgs(f2, "--fix"))
	if err == nil || !strings.Contains(out, "sent 0 repair(s) through the booking outbox; 1 divergence(s) remain (1 need a human, 0 repair(s) failed)") {
		t.Fatalf("flight 2 --fix: %v\n%s", err, out)
	}
}
