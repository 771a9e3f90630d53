package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
)

// holdView is a booking's hold as the admin API shows it: what reconciliation compares with
// the booking service's bookings.
type holdView struct {
	BookingID string            `json:"booking_id"`
	FlightID  int64             `json:"flight_id"`
	Seats     int               `json:"seats"`
	Status    flight.HoldStatus `json:"status"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// holdsPage is one page of holds; NextAfter is the after= of the next page, absent on the
// last one.
type holdsPage struct {
	Items     []holdView `json:"items"`
	NextAfter string     `json:"next_after,omitempty"`
}

// listHolds answers the holds recorded for a flight (or for every flight without flight_id),
// in booking id order, a page at a time: ?flight_id=N, ?after=<booking id> from the previous
// page's next_after, ?limit=1..1000 (100). Admins only.
func (s *Server) listHolds(c *gin.Context) {
	q := flight.HoldsQuery{Limit: 100}
	var v validation.Errors
	if f := c.Query("flight_id"); f != "" {
		id, err := strconv.ParseInt(f, 10, 64)
		v.Check(err == nil && id > 0, "flight_id", "must be a positive integer")
		q.FlightID = id
	}
	if a := c.Query("after"); a != "" {
		_, err := uuid.Parse(a)
		v.Check(err == nil, "after", "must be a booking id (the next_after of the previous page)")
		q.After = a
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		v.Check(err == nil && n >= 1 && n <= 1000, "limit", "must be an integer from 1 to 1000")
		q.Limit = n
	}
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	hs, next, err := s.holds.HoldsPage(c.Request.Context(), q)
	page := holdsPage{Items: make([]holdView, len(hs)), NextAfter: next}
	for i, h := range hs {
		page.Items[i] = holdView{BookingID: h.BookingID, FlightID: h.FlightID, Seats: h.Seats, Status: h.Status, UpdatedAt: h.UpdatedAt}
	}
	respond(c, http.StatusOK, page, err)
}
