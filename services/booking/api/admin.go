package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/validation"
	"github.com/flightbook/flightbook/web"
)

// admin registers the routes reconciliation uses: every user's bookings of a flight, and the
// repair that re-sends a saga command; and the booking service's copy of a flight, which
// says whether it takes bookings for it yet. Admins only.
func (s *server) admin(r gin.IRouter) {
	g := r.Group("/admin", auth.RequireAdmin())
	g.GET("/flights/:id", s.adminFlight)
	g.GET("/bookings", s.adminList)
	g.POST("/bookings/:id/repair", s.repair)
}

// flightView is the booking service's copy of a flight.
type flightView struct {
	ID            int64      `json:"id"`
	FlightNumber  string     `json:"flight_number"`
	DepartureTime *time.Time `json:"departure_time,omitempty"`
	Cancelled     bool       `json:"cancelled"`
	AnnouncedAt   time.Time  `json:"announced_at"`
}

// adminFlight answers the booking service's copy of a flight, or 404 while it has none (a
// flight created a moment ago is not known until its FlightScheduled arrives).
func (s *server) adminFlight(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		fail(c, validation.Field("id", "must be a positive integer"))
		return
	}
	f, err := s.Store.Flight(c.Request.Context(), id)
	if errors.Is(err, booking.ErrFlightNotFound) {
		web.AbortStatus(c, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	v := flightView{ID: f.ID, FlightNumber: f.Number, Cancelled: f.Cancelled, AnnouncedAt: f.AnnouncedAt}
	if !f.DepartureTime.IsZero() {
		v.DepartureTime = &f.DepartureTime
	}
	c.JSON(http.StatusOK, v)
}

// adminPage is one page of bookings; NextAfter is the after= of the next page, absent on
// the last one.
type adminPage struct {
	Items     []bookingView `json:"items"`
	NextAfter string        `json:"next_after,omitempty"`
}

// adminList answers every user's bookings of a flight (or of every flight without
// flight_id), oldest first, a page at a time: ?flight_id=N, ?after=<booking id> from the
// previous page's next_after, ?limit=1..1000 (100).
func (s *server) adminList(c *gin.Context) {
	q := booking.FlightQuery{Limit: 100}
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
	bs, next, err := s.Store.ListByFlight(c.Request.Context(), q)
	if err != nil {
		fail(c, err)
		return
	}
	page := adminPage{Items: make([]bookingView, len(bs)), NextAfter: next}
	for i, b := range bs {
		page.Items[i] = view(b)
	}
	c.JSON(http.StatusOK, page)
}

// repairRequest names the command to send again. FlightID and Seats are only read for a
// release of a booking this service has no record of: the flight service's hold says which
// seats they are.
type repairRequest struct {
	Action   booking.Repair `json:"action"`
	FlightID int64          `json:"flight_id"`
	Seats    int            `json:"seats"`
}

// repairView is the answer to a repair: the booking as it stands (absent for an orphan
// release) and the command queued.
type repairView struct {
	Action  booking.Repair `json:"action"`
	Booking *bookingView   `json:"booking,omitempty"`
}

// repair re-sends the flight service one saga command for a booking, writing it to the
// outbox with a history line in one transaction and leaving the status alone (see
// booking.Store.Repair). A command that does not fit the booking's status is a 409. A release
// for a booking that does not exist, with flight_id and seats, releases seats the flight
// service holds for nobody.
func (s *server) repair(c *gin.Context) {
	var req repairRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	if !req.Action.Valid() {
		fail(c, validation.Field("action", "must be one of release, request_hold, confirm"))
		return
	}
	ctx, id := c.Request.Context(), c.Param("id")
	ch, err := s.Store.Repair(ctx, id, req.Action)
	if errors.Is(err, booking.ErrNotFound) && req.Action == booking.RepairRelease && req.FlightID != 0 {
		if _, perr := uuid.Parse(id); perr == nil {
			if err = s.Store.ReleaseOrphan(ctx, id, req.FlightID, req.Seats); err == nil {
				s.Notify()
				c.JSON(http.StatusOK, repairView{Action: req.Action})
				return
			}
		}
	}
	if err != nil {
		fail(c, err)
		return
	}
	s.Notify()
	v := view(ch.Booking)
	c.JSON(http.StatusOK, repairView{Action: req.Action, Booking: &v})
}
