// Package validation carries field-level input errors from the domain to the HTTP edge.
//
// Domain packages collect every problem with a request into Errors instead of stopping at the
// first, so a client learns all that is wrong in one round trip.
package validation

import (
	"errors"
	"strings"
)

// FieldError says what is wrong with one input field. Field uses the JSON name a client sent
// (for example "arrival_time" or "cabins[1].rows").
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Errors is a list of field errors; a nil or empty Errors means the input is valid.
type Errors []FieldError

// Add records that field is wrong for reason.
func (e *Errors) Add(field, reason string) { *e = append(*e, FieldError{Field: field, Reason: reason}) }

// Check records reason against field when ok is false.
func (e *Errors) Check(ok bool, field, reason string) {
	if !ok {
		e.Add(field, reason)
	}
}

// Err returns e as an error, or nil when nothing was added.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Field + ": " + f.Reason
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Field returns a single-field validation error.
func Field(field, reason string) error { return Errors{{Field: field, Reason: reason}} }

// As reports whether err carries field errors and returns them.
func As(err error) (Errors, bool) {
	var v Errors
	if errors.As(err, &v) {
		return v, true
	}
	return nil, false
}
