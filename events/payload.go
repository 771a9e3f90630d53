package events

import (
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flightbook/flightbook/validation"
)

// RejectReason says why the flight service refused to hold seats; BookingRejected repeats it.
type RejectReason string

// The reasons a seat hold is rejected.
const (
	RejectSoldOut        RejectReason = "sold_out"         // fewer seats available than asked for
	RejectFlightNotFound RejectReason = "flight_not_found" // no flight with that id
	RejectFlightClosed   RejectReason = "flight_closed"    // cancelled, departed or closed for sale
	RejectInvalidRequest RejectReason = "invalid_request"  // the request itself was not acceptable
)

func (RejectReason) enumValues() []string {
	return []string{string(RejectSoldOut), string(RejectFlightNotFound), string(RejectFlightClosed), string(RejectInvalidRequest)}
}

// ReleaseReason says why the booking service gives seats back.
type ReleaseReason string

// The reasons seats are released.
const (
	ReleaseCancelled ReleaseReason = "cancelled" // the traveller cancelled
	ReleaseExpired   ReleaseReason = "expired"   // the hold or the pending booking timed out
	// ReleaseLateHold: the seats were held for a booking that had already ended (for example a
	// SeatsHeld arriving after the booking expired), so the hold is undone at once.
	ReleaseLateHold ReleaseReason = "late_hold"
)

func (ReleaseReason) enumValues() []string {
	return []string{string(ReleaseCancelled), string(ReleaseExpired), string(ReleaseLateHold)}
}

// ExpiredFrom is the status a booking had when it expired.
type ExpiredFrom string

// The statuses a booking can expire from.
const (
	ExpiredFromPending ExpiredFrom = "PENDING" // no answer from the flight service in time
	ExpiredFromHeld    ExpiredFrom = "HELD"    // held but not paid before the hold expired
)

func (ExpiredFrom) enumValues() []string {
	return []string{string(ExpiredFromPending), string(ExpiredFromHeld)}
}

// enum is a string type whose values are a closed list; the AsyncAPI test checks that the
// document lists the same values.
type enum interface {
	~string
	enumValues() []string
}

// The check functions below collect payload problems under the JSON field name, so a decode
// error says which field of which event is wrong.

func checkRequired(v *validation.Errors, s, field string) {
	v.Check(s != "", field, "required")
}

func checkBookingID(v *validation.Errors, id string) {
	if id == "" {
		v.Add("booking_id", "required")
		return
	}
	// Only the canonical form (36 characters, lower case): uuid.Parse also takes braces,
	// urn: prefixes and upper case, which would make one booking look like several ids to a
	// consumer comparing strings.
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 || strings.ToLower(id) != id {
		v.Add("booking_id", "must be a UUID in canonical form")
	}
}

func checkFlightID(v *validation.Errors, id int64) {
	v.Check(id > 0, "flight_id", "must be a positive integer")
}

func checkSeats(v *validation.Errors, n int) {
	v.Check(n > 0, "seats", "must be at least 1")
}

func checkAmount(v *validation.Errors, minor int64, field string) {
	v.Check(minor >= 0, field, "must not be negative")
}

// checkCurrency accepts the shape of an ISO 4217 alphabetic code; which codes are accepted for
// sale is the flight service's business, not the contract's.
func checkCurrency(v *validation.Errors, c string) {
	v.Check(isUpperCode(c, 3), "currency", "must be a three-letter ISO 4217 code")
}

func checkAirport(v *validation.Errors, code, field string) {
	v.Check(isUpperCode(code, 3), field, "must be a three-letter IATA airport code")
}

func checkTime(v *validation.Errors, t time.Time, field string) {
	v.Check(!t.IsZero(), field, "required")
}

func checkEnum[E enum](v *validation.Errors, value E, field string) {
	if value == "" {
		v.Add(field, "required")
		return
	}
	if !slices.Contains(value.enumValues(), string(value)) {
		v.Add(field, "must be one of "+strings.Join(value.enumValues(), ", "))
	}
}

func isUpperCode(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
