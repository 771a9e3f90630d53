// Package api serves the flight service's REST API with gin: it decodes requests, calls the
// catalogue and encodes the answers. Reads are public; writes need the admin role.
package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/validation"
	"github.com/flightbook/flightbook/web"
)

// Holds is what the admin routes read of the seat inventory.
type Holds interface {
	HoldsPage(ctx context.Context, q flight.HoldsQuery) ([]flight.Hold, string, error)
}

// Server holds what the handlers need.
type Server struct {
	catalog flight.Catalog
	holds   Holds
	now     func() time.Time
}

// Routes registers the flight API under /api/v1 on r, serving catalog and, to admins, the
// holds (a flight.Inventory of the same database).
func Routes(r gin.IRouter, catalog flight.Catalog, holds Holds, a *auth.Authenticator) {
	s := &Server{catalog: catalog, holds: holds, now: time.Now}
	v1 := r.Group("/api/v1", a.Optional())
	admin := auth.RequireAdmin()

	v1.GET("/cities", s.listCities)
	v1.GET("/cities/:id", s.getCity)
	v1.POST("/cities", admin, s.createCity)
	v1.PUT("/cities/:id", admin, s.updateCity)
	v1.DELETE("/cities/:id", admin, s.deleteCity)

	v1.GET("/airports", s.listAirports)
	v1.GET("/airports/:code", s.getAirport)
	v1.POST("/airports", admin, s.createAirport)
	v1.PUT("/airports/:code", admin, s.updateAirport)
	v1.DELETE("/airports/:code", admin, s.deleteAirport)

	v1.GET("/airplanes", s.listAirplanes)
	v1.GET("/airplanes/:id", s.getAirplane)
	v1.POST("/airplanes", admin, s.createAirplane)
	v1.PUT("/airplanes/:id", admin, s.updateAirplane)
	v1.DELETE("/airplanes/:id", admin, s.deleteAirplane)

	v1.GET("/flights", s.searchFlights)
	v1.GET("/flights/:id", s.getFlight)
	v1.POST("/flights", admin, s.createFlight)
	v1.PATCH("/flights/:id", admin, s.rescheduleFlight)
	v1.POST("/flights/:id/cancel", admin, s.cancelFlight)

	v1.GET("/admin/holds", admin, s.listHolds)
}

// Handlers pass c.Request.Context(), never the *gin.Context, to the stores: a database driver
// may watch the context from a goroutine that outlives the handler (modernc.org/sqlite does),
// and gin reuses its Context for the next request.

// fail is the one place a domain error becomes an HTTP answer.
func fail(c *gin.Context, err error) {
	if fe, ok := validation.As(err); ok {
		web.AbortInvalid(c, fe)
		return
	}
	switch {
	case errors.Is(err, flight.ErrNotFound):
		web.AbortStatus(c, http.StatusNotFound, "not_found", trimSentinel(err, flight.ErrNotFound))
	case errors.Is(err, flight.ErrInUse):
		web.AbortStatus(c, http.StatusConflict, "in_use", trimSentinel(err, flight.ErrInUse))
	case errors.Is(err, flight.ErrConflict):
		web.AbortStatus(c, http.StatusConflict, "conflict", trimSentinel(err, flight.ErrConflict))
	default:
		web.AbortInternal(c, err)
	}
}

// trimSentinel drops the ": not found" a wrapped sentinel appends; the code says it already.
// What is left is the context the store wrapped it in, e.g. "airport DEL is used by 3
// flights; delete or change those first".
func trimSentinel(err, sentinel error) string {
	return strings.TrimSuffix(err.Error(), ": "+sentinel.Error())
}

// idParam reads a positive integer path parameter, answering 404 for anything else: no
// resource has such an id.
func idParam(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		web.AbortStatus(c, http.StatusNotFound, "not_found", "no resource with id "+c.Param("id"))
		return 0, false
	}
	return id, true
}

func respond[T any](c *gin.Context, status int, v T, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(status, v)
}

type list[T any] struct {
	Items []T `json:"items"`
}

func respondList[T any](c *gin.Context, items []T, err error) {
	if items == nil {
		items = []T{}
	}
	respond(c, http.StatusOK, list[T]{Items: items}, err)
}

// ---- cities

type cityRequest struct {
	Name    string `json:"name"`
	Country string `json:"country"`
}

func (s *Server) listCities(c *gin.Context) {
	cs, err := s.catalog.Cities(c)
	respondList(c, cs, err)
}

func (s *Server) getCity(c *gin.Context) {
	if id, ok := idParam(c); ok {
		city, err := s.catalog.City(c.Request.Context(), id)
		respond(c, http.StatusOK, city, err)
	}
}

func (s *Server) createCity(c *gin.Context) {
	var req cityRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	in := flight.City{Name: req.Name, Country: req.Country}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	city, err := s.catalog.CreateCity(c.Request.Context(), in)
	if err == nil {
		c.Header("Location", "/api/v1/cities/"+strconv.FormatInt(city.ID, 10))
	}
	respond(c, http.StatusCreated, city, err)
}

func (s *Server) updateCity(c *gin.Context) {
	id, ok := idParam(c)
	var req cityRequest
	if !ok || !web.DecodeJSON(c, &req) {
		return
	}
	in := flight.City{ID: id, Name: req.Name, Country: req.Country}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	city, err := s.catalog.UpdateCity(c.Request.Context(), in)
	respond(c, http.StatusOK, city, err)
}

func (s *Server) deleteCity(c *gin.Context) {
	if id, ok := idParam(c); ok {
		noContent(c, s.catalog.DeleteCity(c.Request.Context(), id))
	}
}

func noContent(c *gin.Context, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// ---- airports

type airportRequest struct {
	Code    string `json:"code"`
	Name    string `json:"name"`
	CityID  int64  `json:"city_id"`
	Address string `json:"address"`
}

func (s *Server) listAirports(c *gin.Context) {
	as, err := s.catalog.Airports(c)
	respondList(c, as, err)
}

func (s *Server) getAirport(c *gin.Context) {
	a, err := s.catalog.Airport(c.Request.Context(), strings.ToUpper(c.Param("code")))
	respond(c, http.StatusOK, a, err)
}

func (s *Server) createAirport(c *gin.Context) {
	var req airportRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	in := flight.Airport{Code: req.Code, Name: req.Name, CityID: req.CityID, Address: req.Address}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	a, err := s.catalog.CreateAirport(c.Request.Context(), in)
	if err == nil {
		c.Header("Location", "/api/v1/airports/"+a.Code)
	}
	respond(c, http.StatusCreated, a, err)
}

func (s *Server) updateAirport(c *gin.Context) {
	var req airportRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	code := strings.ToUpper(c.Param("code"))
	if req.Code != "" && req.Code != code {
		fail(c, validation.Field("code", "cannot be changed; create a new airport instead"))
		return
	}
	in := flight.Airport{Code: code, Name: req.Name, CityID: req.CityID, Address: req.Address}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	a, err := s.catalog.UpdateAirport(c.Request.Context(), in)
	respond(c, http.StatusOK, a, err)
}

func (s *Server) deleteAirport(c *gin.Context) {
	noContent(c, s.catalog.DeleteAirport(c.Request.Context(), strings.ToUpper(c.Param("code"))))
}

// ---- airplanes

type airplaneRequest struct {
	Model    string         `json:"model"`
	Capacity int            `json:"capacity"`
	Cabins   []flight.Cabin `json:"cabins"`
}

func (s *Server) listAirplanes(c *gin.Context) {
	as, err := s.catalog.Airplanes(c)
	respondList(c, as, err)
}

func (s *Server) getAirplane(c *gin.Context) {
	if id, ok := idParam(c); ok {
		a, err := s.catalog.Airplane(c.Request.Context(), id)
		respond(c, http.StatusOK, a, err)
	}
}

func (s *Server) createAirplane(c *gin.Context) {
	var req airplaneRequest
	if !web.DecodeJSON(c, &req) {
		return
	}
	in := flight.Airplane{Model: req.Model, Capacity: req.Capacity, Cabins: req.Cabins}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	a, err := s.catalog.CreateAirplane(c.Request.Context(), in)
	if err == nil {
		c.Header("Location", "/api/v1/airplanes/"+strconv.FormatInt(a.ID, 10))
	}
	respond(c, http.StatusCreated, a, err)
}

func (s *Server) updateAirplane(c *gin.Context) {
	id, ok := idParam(c)
	var req airplaneRequest
	if !ok || !web.DecodeJSON(c, &req) {
		return
	}
	in := flight.Airplane{ID: id, Model: req.Model, Capacity: req.Capacity, Cabins: req.Cabins}
	if err := in.Validate(); err != nil {
		fail(c, err)
		return
	}
	a, err := s.catalog.UpdateAirplane(c.Request.Context(), in)
	respond(c, http.StatusOK, a, err)
}

func (s *Server) deleteAirplane(c *gin.Context) {
	if id, ok := idParam(c); ok {
		noContent(c, s.catalog.DeleteAirplane(c.Request.Context(), id))
	}
}

// ---- flights

type page struct {
	Items      []flight.Flight `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

func (s *Server) searchFlights(c *gin.Context) {
	q, err := flight.ParseSearch(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	fs, next, err := s.catalog.Search(c.Request.Context(), q, s.now())
	if fs == nil {
		fs = []flight.Flight{}
	}
	respond(c, http.StatusOK, page{Items: fs, NextCursor: next}, err)
}

func (s *Server) getFlight(c *gin.Context) {
	if id, ok := idParam(c); ok {
		f, err := s.catalog.Flight(c.Request.Context(), id)
		respond(c, http.StatusOK, f, err)
	}
}

func (s *Server) createFlight(c *gin.Context) {
	var req flight.NewFlight
	if !web.DecodeJSON(c, &req) {
		return
	}
	f, err := s.catalog.CreateFlight(c.Request.Context(), req)
	if err == nil {
		c.Header("Location", "/api/v1/flights/"+strconv.FormatInt(f.ID, 10))
	}
	respond(c, http.StatusCreated, f, err)
}

func (s *Server) rescheduleFlight(c *gin.Context) {
	id, ok := idParam(c)
	var req flight.Schedule
	if !ok || !web.DecodeJSON(c, &req) {
		return
	}
	f, err := s.catalog.Reschedule(c.Request.Context(), id, req)
	respond(c, http.StatusOK, f, err)
}

func (s *Server) cancelFlight(c *gin.Context) {
	if id, ok := idParam(c); ok {
		f, err := s.catalog.Cancel(c.Request.Context(), id)
		respond(c, http.StatusOK, f, err)
	}
}
