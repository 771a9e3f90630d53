package flight

import (
	"context"
	"time"
)

// Catalog stores cities, airports, airplanes and flights, and searches the flights. The
// postgres and sqlite packages implement it; storetest holds the behaviour both must show.
//
// Errors: a missing record is ErrNotFound, a duplicate or a change to a cancelled flight
// ErrConflict, a delete of a record others still refer to ErrInUse, and an invalid field a
// *validation.Errors naming it.
type Catalog interface {
	CreateCity(ctx context.Context, in City) (City, error)
	City(ctx context.Context, id int64) (City, error)
	Cities(ctx context.Context) ([]City, error)
	UpdateCity(ctx context.Context, in City) (City, error)
	DeleteCity(ctx context.Context, id int64) error

	CreateAirport(ctx context.Context, in Airport) (Airport, error)
	Airport(ctx context.Context, code string) (Airport, error)
	Airports(ctx context.Context) ([]Airport, error)
	UpdateAirport(ctx context.Context, in Airport) (Airport, error)
	DeleteAirport(ctx context.Context, code string) error

	CreateAirplane(ctx context.Context, in Airplane) (Airplane, error)
	Airplane(ctx context.Context, id int64) (Airplane, error)
	Airplanes(ctx context.Context) ([]Airplane, error)
	UpdateAirplane(ctx context.Context, in Airplane) (Airplane, error)
	DeleteAirplane(ctx context.Context, id int64) error

	CreateFlight(ctx context.Context, in NewFlight) (Flight, error)
	Flight(ctx context.Context, id int64) (Flight, error)
	Reschedule(ctx context.Context, id int64, s Schedule) (Flight, error)
	Cancel(ctx context.Context, id int64) (Flight, error)
	// Search returns one page of scheduled flights departing after now that match s, and
	// the cursor of the next page ("" on the last).
	Search(ctx context.Context, s Search, now time.Time) ([]Flight, string, error)
}

// Inventory holds, releases and confirms seats, each operation in its own transaction, and
// answers what operators and reconciliation ask of the holds. Every operation is idempotent
// by booking id (see Hold), and keeps available + held + sold == total for every flight.
type Inventory interface {
	// Hold holds req.Seats seats for req.BookingID, or records why not; a repeated
	// request gets the first outcome, and a booking released before its hold is refused.
	Hold(ctx context.Context, req HoldRequest) (Hold, error)
	// HoldBatch decides several requests in one transaction, with the outcomes Hold would
	// give them one after another in slice order.
	HoldBatch(ctx context.Context, reqs []HoldRequest) ([]Hold, error)
	// Release gives back a booking's seats; with no hold it leaves a tombstone.
	Release(ctx context.Context, bookingID string, flightID int64) (Hold, error)
	// Confirm turns a booking's held seats into sold seats; ErrHoldReleased or
	// ErrHoldNotFound when there is nothing to confirm.
	Confirm(ctx context.Context, bookingID string) (Hold, error)

	Holds(ctx context.Context, flightID int64) ([]Hold, error)
	HoldOf(ctx context.Context, bookingID string) (Hold, bool, error)
	HoldsOf(ctx context.Context, bookingIDs []string) (map[string]Hold, error)
	HoldsPage(ctx context.Context, q HoldsQuery) ([]Hold, string, error)
	SeatCounts(ctx context.Context, flightID int64) (SeatCounts, error)
	Audit(ctx context.Context, flightID int64) (Audit, error)
}

// HoldsQuery selects a page of holds for reconciliation.
type HoldsQuery struct {
	FlightID int64  // 0 for every flight
	After    string // cursor: only holds of bookings with an id above this one
	Limit    int
}
