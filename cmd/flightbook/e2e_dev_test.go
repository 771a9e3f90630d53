package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flightbook/flightbook/testenv"
)

// TestDevModeRestarts runs `flightbook dev` as `make run` does, books a seat and pays until
// CONFIRMED, stops it with Ctrl-C (SIGINT) and starts it again on the same data: the booking,
// the demo catalogue (not seeded twice) and the embedded NATS streams are all still there, and
// booking still works. It runs once with nothing but the data directory (SQLite files and the
// embedded NATS server, what `make run` does on a fresh machine) and once pointed at the
// PostgreSQL and MariaDB servers.
func TestDevModeRestarts(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); devModeRestarts(t, nil) })
	t.Run("servers", func(t *testing.T) {
		t.Parallel()
		devModeRestarts(t, []string{"FLIGHTBOOK_POSTGRES_URL=" + testenv.Postgres(t), "FLIGHTBOOK_MYSQL_DSN=" + testenv.MySQL(t)})
	})
}

func devModeRestarts(t *testing.T, storage []string) {
	s := &e2eSystem{
		t: t, dir: t.TempDir(), procs: map[string]*proc{},
		addrs:  map[string]string{"flight": freeAddr(t), "booking": freeAddr(t)},
		client: testClient(),
	}
	s.env = append([]string{
		"FLIGHTBOOK_FLIGHT_HTTP_ADDR=" + s.addrs["flight"],
		"FLIGHTBOOK_BOOKING_HTTP_ADDR=" + s.addrs["booking"],
		"FLIGHTBOOK_OUTBOX_LOCK_NAME=e2e-dev-" + filepath.Base(s.dir),
	}, storage...)
	data := filepath.Join(s.dir, "data")
	t.Cleanup(s.stopAll)

	start := func() *proc {
		logf, err := os.OpenFile(filepath.Join(s.dir, "dev.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		testenv.Fatal(t, "log", err)
		cmd := exec.Command(os.Args[0], "dev", "--data", data)
		cmd.Env = append(append(withoutStorage(os.Environ()), childEnv+"=1"), s.env...)
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		_ = logf.Close()
		testenv.Fatal(t, "start dev", err)
		p := newProc(cmd)
		s.procs["dev"] = p
		s.await("both services ready", func() bool {
			for _, svc := range []string{"flight", "booking"} {
				r, err := s.call(svc, "GET", "/readyz", "", "")
				if err != nil || r.status != 200 {
					return false
				}
			}
			return true
		})
		return p
	}
	interrupt := func(p *proc) {
		testenv.Fatal(t, "SIGINT", p.cmd.Process.Signal(syscall.SIGINT))
		select {
		case <-p.done:
			delete(s.procs, "dev")
			if p.err != nil {
				s.dumpLog("dev")
				t.Fatalf("dev exited with %v after Ctrl-C", p.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("dev did not stop within 30s of Ctrl-C")
		}
		delete(s.procs, "dev")
	}
	flights := func() int {
		r := s.must(200, "flight", "GET", "/api/v1/flights?from=DEL&to=BOM&limit=100", "", "")
		items, _ := r.body["items"].([]any)
		return len(items)
	}

	p := start()
	// dev seeds the catalogue while the services start, then prints its banner.
	banners := func() int {
		b, _ := os.ReadFile(filepath.Join(s.dir, "dev.log"))
		return strings.Count(string(b), "flightbook is running")
	}
	s.await("the banner after seeding", func() bool { return banners() == 1 })
	before := flights()
	if before == 0 {
		t.Fatal("the demo catalogue has no DEL-BOM flights")
	}
	first := s.must(200, "flight", "GET", "/api/v1/flights?from=DEL&to=BOM&limit=1", "", "").body["items"].([]any)[0].(map[string]any)
	flightID := int64(first["id"].(float64))
	s.awaitFlight(flightID)
	b := s.must(200, "booking", "POST", "/api/v1/bookings", "alice", fmt.Sprintf(`{"flight_id":%d,"seats":1}`, flightID),
		"Prefer", "wait=10", "Idempotency-Key", "dev-1")
	if b.str("status") != "HELD" {
		t.Fatalf("booking before the restart: %s", b.raw)
	}
	pay := s.must(200, "booking", "POST", "/api/v1/bookings/"+b.str("id")+"/payments", "alice",
		fmt.Sprintf(`{"amount":%d,"currency":%q,"card_token":"tok_success"}`, b.num("total"), b.str("currency")), "Idempotency-Key", "dev-1-pay")
	if pay.str("status") != "CONFIRMED" {
		t.Fatalf("after payment: %s", pay.raw)
	}
	s.await("the seat sold", func() bool { _, _, held, sold := s.seats(flightID); return held == 0 && sold == 1 })
	interrupt(p)

	p = start()
	s.await("the banner of the second start", func() bool { return banners() == 2 })
	if got := s.booking("alice", b.str("id")).str("status"); got != "CONFIRMED" {
		t.Fatalf("after the restart the booking is %s", got)
	}
	if after := flights(); after != before {
		t.Fatalf("DEL-BOM flights: %d before the restart, %d after (seeded twice?)", before, after)
	}
	c := s.must(200, "booking", "POST", "/api/v1/bookings", "alice", fmt.Sprintf(`{"flight_id":%d,"seats":2}`, flightID),
		"Prefer", "wait=10", "Idempotency-Key", "dev-2")
	if c.str("status") != "HELD" {
		t.Fatalf("booking after the restart: %s", c.raw)
	}
	if _, _, held, sold := s.seats(flightID); held != 2 || sold != 1 {
		t.Fatalf("after the restart %d seats held and %d sold, want 2 and 1", held, sold)
	}
	interrupt(p)
}

// withoutStorage drops the database settings from env, so a child started with it uses the
// dev mode's SQLite files unless the test sets them.
func withoutStorage(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FLIGHTBOOK_POSTGRES_URL=") && !strings.HasPrefix(kv, "FLIGHTBOOK_MYSQL_DSN=") {
			out = append(out, kv)
		}
	}
	return out
}
