package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/testenv"
)

// bookingTypes are the public events' CloudEvents types, short names for assertions.
const (
	typeHeld      = "dev.flightbook.booking.held.v1"
	typeConfirmed = "dev.flightbook.booking.confirmed.v1"
	typeRejected  = "dev.flightbook.booking.rejected.v1"
	typeExpired   = "dev.flightbook.booking.expired.v1"
	typeCancelled = "dev.flightbook.booking.cancelled.v1"
)

// TestBookingLifecycleOverHTTP books, pays, cancels and sells out through the two services'
// REST APIs, and checks what a plain subscriber to booking.> sees.
func TestBookingLifecycleOverHTTP(t *testing.T) {
	t.Parallel()
	storages(t, func(t *testing.T, sqlite bool) {
		s := startE2E(t, e2eOptions{sqlite: sqlite})
		seen := s.publicEvents()
		newFlight := s.catalogue()
		f := newFlight(10)

		// Book two seats and wait for the hold in the same request.
		b := s.must(200, "booking", "POST", "/api/v1/bookings", "alice", fmt.Sprintf(`{"flight_id":%d,"seats":2}`, f),
			"Prefer", "wait=10", "Idempotency-Key", "alice-1")
		id := b.str("id")
		if b.str("status") != "HELD" || b.num("total") != 840000 || b.str("currency") != "INR" || b.str("hold_expires_at") == "" {
			t.Fatalf("booking after wait: %s", b.raw)
		}
		if _, avail, held, _ := s.seats(f); avail != 8 || held != 2 {
			t.Fatalf("after the hold: available %d held %d", avail, held)
		}
		// Paying with the wrong amount is refused and changes nothing; the right amount confirms.
		s.must(422, "booking", "POST", "/api/v1/bookings/"+id+"/payments", "alice",
			`{"amount":1,"currency":"INR","card_token":"tok_success"}`, "Idempotency-Key", "alice-1-pay-wrong")
		p := s.must(200, "booking", "POST", "/api/v1/bookings/"+id+"/payments", "alice",
			`{"amount":840000,"currency":"INR","card_token":"tok_success"}`, "Idempotency-Key", "alice-1-pay")
		if p.str("status") != "CONFIRMED" {
			t.Fatalf("after payment: %s", p.raw)
		}
		s.await("the seats sold", func() bool { _, _, held, sold := s.seats(f); return held == 0 && sold == 2 })
		s.await("BookingHeld and BookingConfirmed on booking.>", func() bool {
			return slices.Equal(seen(id), []string{typeHeld, typeConfirmed})
		})
		// Paying again is a conflict, not a second charge.
		s.must(409, "booking", "POST", "/api/v1/bookings/"+id+"/payments", "alice",
			`{"amount":840000,"currency":"INR","card_token":"tok_success"}`, "Idempotency-Key", "alice-1-pay-again")
		// Another user cannot see it.
		s.must(404, "booking", "GET", "/api/v1/bookings/"+id, "mallory", "")

		// Cancel the confirmed booking: refund recorded, seats back on sale.
		c := s.must(200, "booking", "POST", "/api/v1/bookings/"+id+"/cancel", "alice", "", "Idempotency-Key", "alice-1-cancel")
		if c.str("status") != "CANCELLED" {
			t.Fatalf("after cancel: %s", c.raw)
		}
		s.await("the sold seats back on sale", func() bool { _, avail, _, sold := s.seats(f); return avail == 10 && sold == 0 })

		// Cancel a held booking.
		h := s.must(200, "booking", "POST", "/api/v1/bookings", "bob", fmt.Sprintf(`{"flight_id":%d,"seats":3}`, f),
			"Prefer", "wait=10", "Idempotency-Key", "bob-1")
		if h.str("status") != "HELD" {
			t.Fatalf("bob's booking: %s", h.raw)
		}
		s.must(200, "booking", "POST", "/api/v1/bookings/"+h.str("id")+"/cancel", "bob", "", "Idempotency-Key", "bob-1-cancel")
		s.await("the held seats back", func() bool { _, avail, held, _ := s.seats(f); return avail == 10 && held == 0 })
		s.await("BookingCancelled on booking.>", func() bool {
			return slices.Equal(seen(h.str("id")), []string{typeHeld, typeCancelled})
		})
		hist := s.must(200, "booking", "GET", "/api/v1/bookings/"+h.str("id")+"/history", "bob", "")
		if len(hist.raw) == 0 || !slices.Contains(causes(hist), "seats_released") {
			s.await("the release in the history", func() bool {
				return slices.Contains(causes(s.must(200, "booking", "GET", "/api/v1/bookings/"+h.str("id")+"/history", "bob", "")), "seats_released")
			})
		}

		// Sold out: more seats than the flight has left.
		small := newFlight(2)
		r := s.must(200, "booking", "POST", "/api/v1/bookings", "carol", fmt.Sprintf(`{"flight_id":%d,"seats":3}`, small),
			"Prefer", "wait=10", "Idempotency-Key", "carol-1")
		if r.str("status") != "REJECTED" || r.str("reject_reason") != "sold_out" {
			t.Fatalf("booking 3 of 2 seats: %s", r.raw)
		}
		s.await("BookingRejected on booking.>", func() bool { return slices.Equal(seen(r.str("id")), []string{typeRejected}) })
		if _, avail, held, _ := s.seats(small); avail != 2 || held != 0 {
			t.Fatalf("a rejected booking changed the flight: available %d held %d", avail, held)
		}
	})
}

// TestBadBookingsOverHTTP sends bookings the services must refuse before writing anything:
// each gets a problem+json naming the wrong field, and the user owns no booking afterwards.
// An unknown or cancelled flight is refused from the booking service's own copy of the
// catalogue, which it keeps from the flight service's catalogue events.
func TestBadBookingsOverHTTP(t *testing.T) {
	t.Parallel()
	s := startE2E(t, e2eOptions{})
	newFlight := s.catalogue()
	open, cancelled := newFlight(10), newFlight(10)
	s.must(200, "flight", "POST", fmt.Sprintf("/api/v1/flights/%d/cancel", cancelled), "ops", "")
	s.await("the booking service to see the cancellation", func() bool {
		r, err := s.call("booking", "GET", fmt.Sprintf("/api/v1/admin/flights/%d", cancelled), "ops", "")
		return err == nil && r.body["cancelled"] == true
	})
	tests := []struct {
		name, body string
		status     int
		field      string
	}{
		{"zero seats", fmt.Sprintf(`{"flight_id":%d,"seats":0}`, open), 422, "seats"},
		{"100 seats", fmt.Sprintf(`{"flight_id":%d,"seats":100}`, open), 422, "seats"},
		{"seats as text", fmt.Sprintf(`{"flight_id":%d,"seats":"two"}`, open), 422, "seats"},
		{"unknown flight", `{"flight_id":999999,"seats":1}`, 422, "flight_id"},
		{"cancelled flight", fmt.Sprintf(`{"flight_id":%d,"seats":1}`, cancelled), 422, "flight_id"},
		{"malformed", `{"flight_id":`, 400, ""},
		{"huge", `{"flight_id":1,"seats":1,"pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ""},
	}
	for i, tc := range tests {
		r := s.must(tc.status, "booking", "POST", "/api/v1/bookings", "erin", tc.body, "Idempotency-Key", fmt.Sprintf("bad-%d", i))
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: content type %q", tc.name, ct)
		}
		if tc.field != "" {
			errs, _ := r.body["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["field"] != tc.field {
				t.Errorf("%s: %s, want one error naming %s", tc.name, r.raw, tc.field)
			}
		}
	}
	if list := s.must(200, "booking", "GET", "/api/v1/bookings", "erin", ""); len(list.body["items"].([]any)) != 0 {
		t.Fatalf("refused bookings were written: %s", list.raw)
	}
	if _, avail, held, _ := s.seats(cancelled); avail != 10 || held != 0 {
		t.Errorf("the cancelled flight's seats changed: available %d held %d", avail, held)
	}
	// Another user's booking is not found, not forbidden: its existence is not disclosed.
	b := s.must(200, "booking", "POST", "/api/v1/bookings", "frank", fmt.Sprintf(`{"flight_id":%d,"seats":1}`, open),
		"Prefer", "wait=10", "Idempotency-Key", "frank-1")
	s.must(404, "booking", "GET", "/api/v1/bookings/"+b.str("id"), "erin", "")
	s.must(404, "booking", "POST", "/api/v1/bookings/"+b.str("id")+"/cancel", "erin", "", "Idempotency-Key", "erin-cancel")
	if got := s.booking("frank", b.str("id")).str("status"); got != "HELD" {
		t.Fatalf("frank's booking is %s after erin's attempt to cancel it", got)
	}
}

// TestStatusOverHTTP reads both services' /readyz detail through `flightbook status`: every
// route of both services with its durable consumer, and once the saga is quiet, empty outboxes
// and no dead letters.
func TestStatusOverHTTP(t *testing.T) {
	t.Parallel()
	s := startE2E(t, e2eOptions{})
	f := s.catalogue()(5)
	s.must(200, "booking", "POST", "/api/v1/bookings", "gina", fmt.Sprintf(`{"flight_id":%d,"seats":1}`, f),
		"Prefer", "wait=10", "Idempotency-Key", "gina-1")
	args := []string{"status", "--flight-url", "http://" + s.addrs["flight"], "--booking-url", "http://" + s.addrs["booking"]}
	s.await("both outboxes drained", func() bool {
		for _, svc := range []string{"flight", "booking"} {
			r := s.must(200, svc, "GET", "/readyz", "", "")
			detail, _ := r.body["detail"].(map[string]any)
			ob, _ := detail["outbox"].(map[string]any)
			if ob == nil || ob["pending"] != float64(0) {
				return false
			}
		}
		return true
	})
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("flightbook status: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"seat-hold", "seat-release", "seats-confirm", "seats-held", "seat-hold-rejected", "seats-released", "seats-confirmed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks route %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	testenv.Fatal(t, "status --json", run(context.Background(), append(args, "--json"), &out, &errOut))
	var docs map[string]readyDoc
	testenv.Fatal(t, "decode status", json.Unmarshal(out.Bytes(), &docs))
	for svc, d := range docs {
		if d.Status != "ok" || d.Detail == nil || d.Detail.DLQ.Count != 0 || len(d.Detail.Consumers) == 0 {
			t.Errorf("%s: %+v", svc, d)
		}
	}
	s.kill("booking")
	if err := run(context.Background(), args, &out, &errOut); err == nil {
		t.Fatal("status succeeded with the booking service down")
	}
}

// causes lists the causes of a booking's history response.
func causes(r response) []string {
	var out []string
	items, _ := r.body["items"].([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			c, _ := m["cause"].(string)
			out = append(out, c)
		}
	}
	return out
}

// TestHoldExpiresOverHTTP lets a hold run out: the booking ends EXPIRED, its seats go back,
// and paying it afterwards is a 409.
func TestHoldExpiresOverHTTP(t *testing.T) {
	t.Parallel()
	s := startE2E(t, e2eOptions{env: []string{
		"FLIGHTBOOK_BOOKING_HOLD_TTL=1s",
		"FLIGHTBOOK_BOOKING_EXPIRY_INTERVAL=100ms",
	}})
	seen := s.publicEvents()
	f := s.catalogue()(5)
	b := s.must(200, "booking", "POST", "/api/v1/bookings", "dave", fmt.Sprintf(`{"flight_id":%d,"seats":2}`, f),
		"Prefer", "wait=10", "Idempotency-Key", "dave-1")
	id := b.str("id")
	if b.str("status") != "HELD" {
		t.Fatalf("booking: %s", b.raw)
	}
	s.await("EXPIRED", func() bool { return s.booking("dave", id).str("status") == "EXPIRED" })
	s.await("the seats back", func() bool { _, avail, held, _ := s.seats(f); return avail == 5 && held == 0 })
	s.await("BookingExpired on booking.>", func() bool { return slices.Equal(seen(id), []string{typeHeld, typeExpired}) })
	p := s.must(409, "booking", "POST", "/api/v1/bookings/"+id+"/payments", "dave",
		`{"amount":840000,"currency":"INR","card_token":"tok_success"}`, "Idempotency-Key", "dave-1-pay")
	if p.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("payment after expiry answered %s with %q", p.raw, p.header.Get("Content-Type"))
	}
	if got := s.booking("dave", id).str("status"); got != "EXPIRED" {
		t.Fatalf("after the refused payment the booking is %s", got)
	}
}

// TestBurstOverHTTP sends 500 single-seat bookings at once for a 100-seat flight: exactly 100
// are held, 400 rejected, none left pending, and the flight's counters agree.
func TestBurstOverHTTP(t *testing.T) {
	t.Parallel()
	storages(t, func(t *testing.T, sqlite bool) {
		s := startE2E(t, e2eOptions{sqlite: sqlite})
		f := s.catalogue()(100)
		const n = 500
		ids := make([]string, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := range n {
			wg.Go(func() {
				<-start
				r, err := s.call("booking", "POST", "/api/v1/bookings", fmt.Sprintf("user%d", i),
					fmt.Sprintf(`{"flight_id":%d,"seats":1}`, f), "Idempotency-Key", fmt.Sprintf("burst-%d", i))
				if err != nil || r.status != 202 && r.status != 200 {
					failed.Add(1)
					t.Errorf("booking %d: %v %d %s", i, err, r.status, r.raw)
					return
				}
				ids[i] = r.str("id")
			})
		}
		close(start)
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
		count := func() map[string]int {
			n := map[string]int{}
			for i, id := range ids {
				n[s.booking(fmt.Sprintf("user%d", i), id).str("status")]++
			}
			return n
		}
		s.await("no booking PENDING", func() bool { return count()["PENDING"] == 0 })
		if got := count(); got["HELD"] != 100 || got["REJECTED"] != 400 || len(got) != 2 {
			t.Fatalf("statuses %v, want 100 HELD and 400 REJECTED", got)
		}
		if total, avail, held, sold := s.seats(f); total != 100 || avail != 0 || held != 100 || sold != 0 {
			t.Fatalf("flight seats total %d available %d held %d sold %d", total, avail, held, sold)
		}
	})
}

// TestCrashesMidBurstOverHTTP books 300 single seats on a 100-seat flight from 16 clients
// while the booking service is killed with SIGKILL and restarted, then the flight service,
// then NATS. Clients retry a failed request with the same Idempotency-Key, as the API asks.
// Every booking must reach HELD or REJECTED, each client must own exactly one booking, and
// the flight must have exactly 100 seats held and none lost.
func TestCrashesMidBurstOverHTTP(t *testing.T) {
	t.Parallel()
	storages(t, func(t *testing.T, sqlite bool) {
		s := startE2E(t, e2eOptions{embedNATS: true, sqlite: sqlite})
		f := s.catalogue()(100)
		const n, clients = 300, 16
		ids := make([]string, n)
		work := make(chan int)
		var accepted atomic.Int32
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for i := range work {
					deadline := time.Now().Add(2 * time.Minute)
					for {
						r, err := s.call("booking", "POST", "/api/v1/bookings", fmt.Sprintf("crash%d", i),
							fmt.Sprintf(`{"flight_id":%d,"seats":1}`, f), "Idempotency-Key", fmt.Sprintf("crash-%d", i))
						if err == nil && (r.status == 202 || r.status == 200) {
							ids[i] = r.str("id")
							accepted.Add(1)
							break
						}
						if time.Now().After(deadline) {
							t.Errorf("booking %d not accepted within 2 minutes: %v %d %s", i, err, r.status, r.raw)
							break
						}
						time.Sleep(20 * time.Millisecond) // the service is restarting
					}
				}
			})
		}
		go func() {
			for i := range n {
				work <- i
			}
			close(work)
		}()
		waitAccepted := func(k int32) {
			s.await(fmt.Sprintf("%d bookings accepted", k), func() bool { return accepted.Load() >= k })
		}
		waitAccepted(50)
		s.kill("booking")
		s.start("booking")
		waitAccepted(120)
		s.kill("flight")
		s.start("flight")
		waitAccepted(200)
		s.restartNATS()
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		statuses := func() map[string]int {
			got := map[string]int{}
			for i, id := range ids {
				got[s.booking(fmt.Sprintf("crash%d", i), id).str("status")]++
			}
			return got
		}
		s.await("every booking out of PENDING", func() bool { return statuses()["PENDING"] == 0 })
		if got := statuses(); got["HELD"] != 100 || got["REJECTED"] != 200 || len(got) != 2 {
			t.Errorf("statuses %v, want 100 HELD and 200 REJECTED", got)
		}
		if total, avail, held, sold := s.seats(f); total != 100 || avail != 0 || held != 100 || sold != 0 {
			t.Errorf("flight seats total %d available %d held %d sold %d", total, avail, held, sold)
		}
		for i := range n {
			list := s.must(200, "booking", "GET", "/api/v1/bookings", fmt.Sprintf("crash%d", i), "")
			if items, _ := list.body["items"].([]any); len(items) != 1 {
				t.Fatalf("client %d owns %d bookings after retrying through the crashes, want 1: %s", i, len(items), list.raw)
			}
		}
	})
}

// TestBookingStreamLostOverHTTP deletes the BOOKING stream while bookings are in flight, then
// recovers as the runbook says: `flightbook outbox republish` recreates the stream and
// publishes the retained outbox again. Every booking reaches HELD, none is held twice, and
// the flight service's consumer comes back on its own.
func TestBookingStreamLostOverHTTP(t *testing.T) {
	t.Parallel()
	s := startE2E(t, e2eOptions{env: []string{"FLIGHTBOOK_CONSUMER_CHECK_INTERVAL=200ms"}})
	f := s.catalogue()(60)
	since := time.Now().Add(-time.Minute).UTC()
	book := func(i int, wait bool) string {
		h := []string{"Idempotency-Key", fmt.Sprintf("lost-%d", i)}
		status := 202
		if wait {
			h, status = append(h, "Prefer", "wait=10"), 200
		}
		return s.must(status, "booking", "POST", "/api/v1/bookings", fmt.Sprintf("lost%d", i), fmt.Sprintf(`{"flight_id":%d,"seats":1}`, f), h...).str("id")
	}
	ids := make([]string, 40)
	for i := range 20 {
		ids[i] = book(i, true)
	}

	nc, err := nats.Connect(s.natsURL)
	testenv.Fatal(t, "nats", err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	testenv.Fatal(t, "jetstream", err)
	stream := events.Topology{Namespace: s.namespace}.StreamName(events.StreamBooking)
	testenv.Fatal(t, "delete the BOOKING stream", js.DeleteStream(context.Background(), stream))
	for i := 20; i < 40; i++ {
		ids[i] = book(i, false)
	}

	cmd := exec.Command(os.Args[0], "outbox", "republish", "--service", "booking", "--since", since.Format(time.RFC3339))
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), s.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("outbox republish: %v\n%s", err, out)
	}

	statuses := func() map[string]int {
		got := map[string]int{}
		for i, id := range ids {
			got[s.booking(fmt.Sprintf("lost%d", i), id).str("status")]++
		}
		return got
	}
	s.await("every booking HELD", func() bool { return statuses()["HELD"] == 40 })
	if total, avail, held, sold := s.seats(f); total != 60 || avail != 20 || held != 40 || sold != 0 {
		t.Fatalf("flight seats total %d available %d held %d sold %d", total, avail, held, sold)
	}
}
