package api_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/booking/api"
	"github.com/flightbook/flightbook/testenv"
)

// newOutboxEnv is newEnv with the service's real Emit hook, so that repairs land in the
// outbox table as the events the relay publishes, and a count of Notify calls.
func newOutboxEnv(t *testing.T, kind string) (*env, *atomic.Int64) {
	t.Helper()
	var notified atomic.Int64
	e := newEnvOn(t, kind, true, func(d *api.Deps) { d.Notify = func() { notified.Add(1) } })
	return e, &notified
}

// outbox returns the subjects of the outbox rows about a booking, in order.
func (e *env) outbox(id string) []string {
	rows, err := e.db.Query(`SELECT subject FROM outbox WHERE aggregate_id = ? ORDER BY id`, id)
	testenv.Fatal(e.t, "outbox", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		testenv.Fatal(e.t, "scan", rows.Scan(&s))
		out = append(out, s)
	}
	return out
}

func TestAdminBookingsAndRepair(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind string) {
		e, notified := newOutboxEnv(t, kind)
		if f := e.do("GET", "/api/v1/admin/flights/9", "admin", nil).json(t); f["flight_number"] != "FB9" || f["cancelled"] != true {
			t.Fatalf("admin flight 9: %v", f)
		}
		e.do("GET", "/api/v1/admin/flights/99", "admin", nil).problem(t, http.StatusNotFound, "not_found")
		if r := e.do("GET", "/api/v1/admin/flights/7", "alice", nil); r.code != http.StatusForbidden {
			t.Fatalf("a customer read the admin flight view: %d", r.code)
		}
		a, b := e.create("alice"), e.create("bob")
		e.hold(b)

		// Every user's bookings of the flight, a page at a time, oldest first.
		r := e.do("GET", "/api/v1/admin/bookings?flight_id=7&limit=1", "admin", nil)
		if r.code != http.StatusOK {
			t.Fatalf("list: %d %s", r.code, r.body)
		}
		page := r.json(t)
		items, _ := page["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["id"] != a || page["next_after"] != a {
			t.Fatalf("first page %s", r.body)
		}
		r = e.do("GET", "/api/v1/admin/bookings?flight_id=7&limit=1&after="+a, "admin", nil)
		page = r.json(t)
		items, _ = page["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["id"] != b || items[0].(map[string]any)["status"] != "HELD" {
			t.Fatalf("second page %s", r.body)
		}
		if r = e.do("GET", "/api/v1/admin/bookings?flight_id=7&after="+b, "admin", nil); len(r.json(t)["items"].([]any)) != 0 {
			t.Fatalf("after the last: %s", r.body)
		}
		if r = e.do("GET", "/api/v1/admin/bookings?flight_id=8", "admin", nil); len(r.json(t)["items"].([]any)) != 0 {
			t.Fatalf("another flight: %s", r.body)
		}

		// A hold request sent again: one more SeatHoldRequested in the outbox, status unchanged.
		holdSubject := events.Topology{}.Subject(events.SeatHoldRequested{}.Subject())
		before := e.outbox(a)
		r = e.do("POST", "/api/v1/admin/bookings/"+a+"/repair", "admin", `{"action":"request_hold"}`)
		if r.code != http.StatusOK {
			t.Fatalf("repair: %d %s", r.code, r.body)
		}
		if got := r.json(t)["booking"].(map[string]any)["status"]; got != "PENDING" {
			t.Errorf("status after repair %v", got)
		}
		if got := e.outbox(a); len(got) != len(before)+1 || got[len(got)-1] != holdSubject {
			t.Errorf("outbox after repair %v (before %v)", got, before)
		}
		if notified.Load() == 0 {
			t.Error("the relay was not notified")
		}

		// A release of a held booking does not fit its status.
		e.do("POST", "/api/v1/admin/bookings/"+b+"/repair", "admin", `{"action":"release"}`).problem(t, http.StatusConflict, "invalid_status")
		// Seats held for a booking this service never had are released.
		orphan := uuid.NewString()
		r = e.do("POST", "/api/v1/admin/bookings/"+orphan+"/repair", "admin", `{"action":"release","flight_id":7,"seats":2}`)
		if r.code != http.StatusOK {
			t.Fatalf("orphan release: %d %s", r.code, r.body)
		}
		releaseSubject := events.Topology{}.Subject(events.SeatReleaseRequested{}.Subject())
		if got := e.outbox(orphan); len(got) != 1 || got[0] != releaseSubject {
			t.Errorf("orphan outbox %v", got)
		}
		e.do("POST", "/api/v1/admin/bookings/"+uuid.NewString()+"/repair", "admin", `{"action":"confirm"}`).problem(t, http.StatusNotFound, "not_found")
		if f := e.do("POST", "/api/v1/admin/bookings/"+a+"/repair", "admin", `{"action":"rebook"}`).problem(t, 422, "validation_failed"); len(f) != 1 || f[0] != "action" {
			t.Errorf("fields %v", f)
		}

		// Customers may not.
		if r = e.do("GET", "/api/v1/admin/bookings?flight_id=7", "alice", nil); r.code != http.StatusForbidden {
			t.Errorf("customer list: %d", r.code)
		}
		if r = e.do("POST", "/api/v1/admin/bookings/"+a+"/repair", "alice", `{"action":"request_hold"}`); r.code != http.StatusForbidden {
			t.Errorf("customer repair: %d", r.code)
		}
	})
}
