package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/api"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
	"github.com/flightbook/flightbook/web"
)

// TestAdminHolds lists a flight's holds page by page as an admin; customers and anonymous
// callers are refused, and bad parameters get a validation problem naming them.
func TestAdminHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := postgres.Open(ctx, testenv.Postgres(t), 10, log)
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
	c := &client{t: t, srv: srv, admin: admin, user: user}

	plane := c.seed(10)
	var f flight.Flight
	c.want(201, c.do("POST", "/api/v1/flights", c.admin, newFlight(plane, "DEL", "BOM", time.Now().Add(72*time.Hour).Truncate(time.Minute), 1000), &f), "create flight")
	inv := postgres.NewInventory(pool)
	for range 3 {
		_, err := inv.Hold(ctx, flight.HoldRequest{BookingID: uuid.NewString(), FlightID: f.ID, Seats: 2})
		testenv.Fatal(t, "hold", err)
	}

	type page struct {
		Items []struct {
			BookingID string    `json:"booking_id"`
			FlightID  int64     `json:"flight_id"`
			Seats     int       `json:"seats"`
			Status    string    `json:"status"`
			UpdatedAt time.Time `json:"updated_at"`
		} `json:"items"`
		NextAfter string `json:"next_after"`
	}
	seen, after := 0, ""
	for pages := 1; ; pages++ {
		var p page
		c.want(200, c.do("GET", fmt.Sprintf("/api/v1/admin/holds?flight_id=%d&limit=2&after=%s", f.ID, after), c.admin, nil, &p), "page")
		for _, h := range p.Items {
			if h.FlightID != f.ID || h.Seats != 2 || h.Status != "held" || h.UpdatedAt.IsZero() {
				t.Errorf("hold %+v", h)
			}
			seen++
		}
		if p.NextAfter == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 2", pages)
			}
			break
		}
		after = p.NextAfter
	}
	if seen != 3 {
		t.Fatalf("%d holds listed, want 3", seen)
	}

	c.want(401, c.do("GET", "/api/v1/admin/holds", "", nil, nil), "anonymous")
	c.want(403, c.do("GET", "/api/v1/admin/holds", c.user, nil, nil), "customer")
	var p problem
	c.want(422, c.do("GET", "/api/v1/admin/holds?flight_id=x&after=y&limit=0", c.admin, nil, &p), "bad parameters")
	if got := p.fields(); fmt.Sprint(got) != "[after flight_id limit]" {
		t.Errorf("problem fields %v", got)
	}
}
