package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/api"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
	"github.com/flightbook/flightbook/web"
)

const secret = "test-secret-test-secret-test-secret"

type client struct {
	t     *testing.T
	srv   *httptest.Server
	admin string
	user  string
}

func newClient(t *testing.T) *client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := postgres.Open(context.Background(), testenv.Postgres(t), 10, log)
	testenv.Fatal(t, "open", err)
	t.Cleanup(pool.Close)
	a, err := auth.New(auth.Config{Secret: secret, Issuer: "flightbook"}, nil)
	testenv.Fatal(t, "auth", err)
	engine := web.NewEngine(log)
	api.Routes(engine, postgres.NewCatalog(pool), postgres.NewInventory(pool), a)
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	admin, _ := a.Token("root", auth.RoleAdmin, time.Hour)
	user, _ := a.Token("u1", "", time.Hour)
	return &client{t: t, srv: srv, admin: admin, user: user}
}

// do sends a request and decodes the JSON answer into out (when not nil), returning the status.
func (c *client) do(method, path, token string, body any, out any) int {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.srv.URL+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Fatal(c.t, method+" "+path, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != web.ProblemContentType {
		c.t.Errorf("%s %s: error %d with content type %q", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

func (c *client) want(status, got int, what string) {
	c.t.Helper()
	if got != status {
		c.t.Fatalf("%s: status %d, want %d", what, got, status)
	}
}

// seed creates a city, DEL and BOM, and an airplane of the given capacity.
func (c *client) seed(capacity int) (planeID int64) {
	var city flight.City
	c.want(201, c.do("POST", "/api/v1/cities", c.admin, map[string]any{"name": "Delhi", "country": "IN"}, &city), "create city")
	for _, code := range []string{"DEL", "BOM", "BLR"} {
		c.want(201, c.do("POST", "/api/v1/airports", c.admin, map[string]any{"code": code, "name": code + " airport", "city_id": city.ID}, nil), "create airport")
	}
	var plane flight.Airplane
	c.want(201, c.do("POST", "/api/v1/airplanes", c.admin, map[string]any{"model": "A320", "capacity": capacity}, &plane), "create airplane")
	return plane.ID
}

func newFlight(plane int64, from, to string, dep time.Time, fare int64) map[string]any {
	return map[string]any{
		"flight_number": "AI101", "airplane_id": plane, "departure_airport": from, "arrival_airport": to,
		"departure_time": dep.Format(time.RFC3339), "arrival_time": dep.Add(2 * time.Hour).Format(time.RFC3339),
		"fare_amount": fare, "currency": "INR", "boarding_gate": "A1",
	}
}

type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Errors []struct {
		Field string `json:"field"`
	} `json:"errors"`
}

func (p problem) fields() []string {
	var fs []string
	for _, e := range p.Errors {
		fs = append(fs, e.Field)
	}
	sort.Strings(fs)
	return fs
}

func TestCatalogLifecycle(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	plane := c.seed(180)

	var city flight.City
	c.want(200, c.do("GET", "/api/v1/cities/1", "", nil, &city), "get city")
	c.want(200, c.do("PUT", "/api/v1/cities/1", c.admin, map[string]any{"name": "New Delhi", "country": "IN"}, &city), "update city")
	if city.Name != "New Delhi" {
		t.Fatalf("city after update: %+v", city)
	}
	var p problem
	c.want(409, c.do("DELETE", "/api/v1/cities/1", c.admin, nil, &p), "delete city with airports")
	if p.Code != "in_use" || p.Detail != "city 1 is used by 3 airports; delete or change those first" {
		t.Errorf("409 detail: %q", p.Detail)
	}
	c.want(409, c.do("POST", "/api/v1/airports", c.admin, map[string]any{"code": "DEL", "name": "again", "city_id": 1}, nil), "duplicate airport")
	c.want(404, c.do("GET", "/api/v1/cities/999", "", nil, nil), "missing city")
	c.want(404, c.do("GET", "/api/v1/airports/XXX", "", nil, nil), "missing airport")

	var f flight.Flight
	dep := time.Now().Add(72 * time.Hour).Truncate(time.Second).UTC()
	c.want(201, c.do("POST", "/api/v1/flights", c.admin, newFlight(plane, "DEL", "BOM", dep, 450000), &f), "create flight")
	if f.Total != 180 || f.Available != 180 || f.Status != flight.StatusScheduled || !f.DepartureTime.Equal(dep) {
		t.Fatalf("new flight: %+v", f)
	}
	for path, detail := range map[string]string{
		"/api/v1/airports/BOM":                   "airport BOM is used by 1 flight; delete or change those first",
		"/api/v1/airplanes/" + fmt.Sprint(plane): fmt.Sprintf("airplane %d is used by 1 flight; delete or change those first", plane),
	} {
		var p problem
		c.want(409, c.do("DELETE", path, c.admin, nil, &p), "delete "+path+" used by a flight")
		if p.Code != "in_use" || p.Detail != detail {
			t.Errorf("DELETE %s: code %q detail %q, want in_use %q", path, p.Code, p.Detail, detail)
		}
	}
	c.want(422, c.do("PUT", "/api/v1/airplanes/"+fmt.Sprint(plane), c.admin, map[string]any{"model": "A319", "capacity": 100}, nil), "shrink airplane below a flight")

	later := dep.Add(time.Hour)
	c.want(200, c.do("PATCH", fmt.Sprintf("/api/v1/flights/%d", f.ID), c.admin, map[string]any{"departure_time": later, "arrival_time": later.Add(2 * time.Hour), "boarding_gate": "B7"}, &f), "reschedule")
	if !f.DepartureTime.Equal(later) || f.BoardingGate != "B7" {
		t.Fatalf("rescheduled: %+v", f)
	}
	c.want(422, c.do("PATCH", fmt.Sprintf("/api/v1/flights/%d", f.ID), c.admin, map[string]any{"arrival_time": later.Add(-time.Hour)}, nil), "arrival before departure")
	c.want(200, c.do("POST", fmt.Sprintf("/api/v1/flights/%d/cancel", f.ID), c.admin, nil, &f), "cancel")
	if f.Status != flight.StatusCancelled {
		t.Fatalf("cancelled flight: %+v", f)
	}
	var pg struct{ Items []flight.Flight }
	c.want(200, c.do("GET", "/api/v1/flights?from=DEL&to=BOM", "", nil, &pg), "search")
	if len(pg.Items) != 0 {
		t.Fatalf("cancelled flight is searchable: %+v", pg.Items)
	}
	c.want(404, c.do("GET", "/api/v1/flights/abc", "", nil, nil), "non-numeric id")
}

func TestValidation(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	plane := c.seed(100)
	dep := time.Now().Add(72 * time.Hour)

	tests := []struct {
		name   string
		path   string
		body   any
		status int
		fields []string
	}{
		{"every flight field wrong", "/api/v1/flights", map[string]any{
			"flight_number": "?", "airplane_id": plane, "departure_airport": "DEL", "arrival_airport": "DEL",
			"departure_time": dep.Format(time.RFC3339), "arrival_time": dep.Add(-time.Hour).Format(time.RFC3339),
			"fare_amount": -5, "currency": "rupees", "seats": 101,
		}, 422, []string{"arrival_airport", "arrival_time", "currency", "fare_amount", "flight_number", "seats"}},
		{"unknown airplane and airports", "/api/v1/flights", newFlight(999, "XXX", "YYY", dep, 100), 422, []string{"airplane_id", "arrival_airport", "departure_airport"}},
		{"missing times", "/api/v1/flights", map[string]any{"flight_number": "AI1", "airplane_id": plane, "departure_airport": "DEL", "arrival_airport": "BOM", "fare_amount": 1, "currency": "INR"}, 422, []string{"arrival_time", "departure_time"}},
		{"wrong type", "/api/v1/flights", `{"airplane_id":"one"}`, 422, []string{"airplane_id"}},
		{"unknown field", "/api/v1/cities", `{"name":"A","country":"B","mayor":"C"}`, 422, []string{"mayor"}},
		{"malformed JSON", "/api/v1/cities", `{"name":`, 400, nil},
		{"empty body", "/api/v1/cities", ``, 400, nil},
		{"bad IATA code", "/api/v1/airports", map[string]any{"code": "de", "name": "x", "city_id": 1}, 422, []string{"code"}},
		{"layout does not add up", "/api/v1/airplanes", map[string]any{"model": "B737", "capacity": 100, "cabins": []map[string]any{{"class": "economy", "rows": 10, "seats_per_row": 6}, {"class": "lounge", "rows": 1, "seats_per_row": 1}}}, 422, []string{"cabins[1].class", "capacity"}},
		{"huge body", "/api/v1/cities", `{"name":"` + string(bytes.Repeat([]byte("a"), 70<<10)) + `"}`, 413, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p problem
			got := c.do("POST", tc.path, c.admin, tc.body, &p)
			if got != tc.status || p.Status != tc.status {
				t.Fatalf("status %d (body %d), want %d: %+v", got, p.Status, tc.status, p)
			}
			if tc.fields != nil && !slices.Equal(p.fields(), tc.fields) {
				t.Fatalf("fields %v, want %v", p.fields(), tc.fields)
			}
		})
	}
	var fs struct{ Items []flight.Flight }
	c.do("GET", "/api/v1/flights", "", nil, &fs)
	if len(fs.Items) != 0 {
		t.Fatalf("a refused request wrote a flight: %+v", fs.Items)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	other, _ := auth.New(auth.Config{Secret: "another-secret-another-secret", Issuer: "flightbook"}, nil)
	forged, _ := other.Token("root", auth.RoleAdmin, time.Hour)
	body := map[string]any{"name": "Pune", "country": "IN"}
	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", 401},
		{"garbage token", "not-a-jwt", 401},
		{"token signed with another secret", forged, 401},
		{"customer", c.user, 403},
		{"admin", c.admin, 201},
	}
	for _, tc := range tests {
		if got := c.do("POST", "/api/v1/cities", tc.token, body, nil); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	c.want(200, c.do("GET", "/api/v1/cities", "", nil, nil), "anonymous read")
	c.want(200, c.do("GET", "/api/v1/cities", c.user, nil, nil), "customer read")
	c.want(401, c.do("GET", "/api/v1/cities", "not-a-jwt", nil, nil), "read with an invalid token")
}

func TestSearch(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	plane := c.seed(100)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 10)
	// 24 DEL-BOM flights over two days with varied fares, a few on other routes, one nearly
	// full.
	var want []int64
	for i := range 24 {
		dep := day.Add(time.Duration(i%12)*time.Hour + time.Duration(i/12)*24*time.Hour)
		var f flight.Flight
		c.want(201, c.do("POST", "/api/v1/flights", c.admin, newFlight(plane, "DEL", "BOM", dep, int64(1000+(i%5)*1000)), &f), "create")
		want = append(want, f.ID)
	}
	c.want(201, c.do("POST", "/api/v1/flights", c.admin, newFlight(plane, "DEL", "BLR", day, 1000), nil), "other route")
	small := newFlight(plane, "DEL", "BOM", day.Add(30*time.Minute), 1000)
	small["seats"] = 1
	c.want(201, c.do("POST", "/api/v1/flights", c.admin, small, nil), "small flight")

	count := func(q string) int {
		var pg struct{ Items []flight.Flight }
		c.want(200, c.do("GET", "/api/v1/flights?"+q, "", nil, &pg), q)
		return len(pg.Items)
	}
	date := day.Format(time.DateOnly)
	for q, n := range map[string]int{
		"from=DEL&to=BOM&limit=100":                                          25,
		"from=DEL&to=BOM&travellers=2&limit=100":                             24,
		"from=DEL&to=BOM&date=" + date + "&limit=100":                        13,
		"trips=DEL-BOM&tripDate=" + date + "&limit=100":                      13,
		"from=DEL&to=BOM&min_price=2000&max_price=3000&limit=100":            10,
		"trips=DEL-BOM&price=2000-3000&limit=100":                            10,
		"from=DEL&to=BLR":                                                    1,
		"from=BOM&to=DEL":                                                    0,
		"from=DEL&to=BOM&date=" + day.AddDate(0, 0, 5).Format(time.DateOnly): 0,
	} {
		if got := count(q); got != n {
			t.Errorf("%s: %d flights, want %d", q, got, n)
		}
	}

	// Walk every page of each sort: each flight once, in order.
	for _, sortParam := range []string{"price,-departure_time", "price_ASC,departureTime_DESC", "-price", "departure_time"} {
		var seen []flight.Flight
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("%s: too many pages", sortParam)
			}
			var pg struct {
				Items      []flight.Flight
				NextCursor string `json:"next_cursor"`
			}
			q := url.Values{"from": {"DEL"}, "to": {"BOM"}, "travellers": {"2"}, "sort": {sortParam}, "limit": {"7"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			c.want(200, c.do("GET", "/api/v1/flights?"+q.Encode(), "", nil, &pg), sortParam)
			seen = append(seen, pg.Items...)
			if pg.NextCursor == "" {
				break
			}
			cursor = pg.NextCursor
		}
		ids := make([]int64, len(seen))
		for i, f := range seen {
			ids[i] = f.ID
		}
		sorted := slices.Sorted(slices.Values(ids))
		if !slices.Equal(sorted, want) {
			t.Fatalf("%s: pages returned %v, want each of %v once", sortParam, ids, want)
		}
		ordered := slices.IsSortedFunc(seen, func(a, b flight.Flight) int {
			switch sortParam {
			case "-price":
				return int(b.FareAmount - a.FareAmount)
			case "departure_time":
				return a.DepartureTime.Compare(b.DepartureTime)
			}
			if a.FareAmount != b.FareAmount {
				return int(a.FareAmount - b.FareAmount)
			}
			return b.DepartureTime.Compare(a.DepartureTime)
		})
		if !ordered {
			t.Fatalf("%s: results out of order", sortParam)
		}
	}

	var p problem
	c.want(422, c.do("GET", "/api/v1/flights?from=DELHI&date=tomorrow&travellers=0&sort=name&limit=1000", "", nil, &p), "bad search")
	if !slices.Equal(p.fields(), []string{"date", "from", "limit", "sort", "travellers"}) {
		t.Fatalf("bad search fields: %v", p.fields())
	}
	p = problem{}
	c.want(422, c.do("GET", "/api/v1/flights?trips=DELBOM&price=cheap&tripDate=soon&sort=price_UP", "", nil, &p), "bad seed search")
	if !slices.Equal(p.fields(), []string{"price", "sort", "tripDate", "trips"}) {
		t.Fatalf("bad seed search fields: %v", p.fields())
	}
	c.want(422, c.do("GET", "/api/v1/flights?sort=price&cursor=garbage", "", nil, nil), "bad cursor")
	p = problem{}
	c.want(422, c.do("PUT", "/api/v1/airports/DEL", c.admin, map[string]any{"name": "Delhi", "city_id": 999}, &p), "airport in an unknown city")
	if !slices.Equal(p.fields(), []string{"city_id"}) {
		t.Fatalf("unknown city fields: %v", p.fields())
	}
}
