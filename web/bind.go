package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flightbook/flightbook/validation"
)

// MaxBodyBytes bounds every request body; booking and catalog requests are a few hundred bytes.
const MaxBodyBytes = 64 << 10

// errBodyTooLarge is returned by DecodeJSON when the body passes MaxBodyBytes.
var errBodyTooLarge = errors.New("request body too large")

// DecodeJSON reads the request body into v, rejecting unknown fields, trailing data and bodies
// over MaxBodyBytes. On failure it has already written the problem response and returns false,
// so handlers read:
//
//	if !web.DecodeJSON(c, &req) { return }
func DecodeJSON(c *gin.Context, v any) bool {
	err := decodeJSON(c.Request, v)
	if err == nil {
		return true
	}
	if errors.Is(err, errBodyTooLarge) {
		AbortStatus(c, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
		return false
	}
	if fe, ok := validation.As(err); ok {
		AbortInvalid(c, fe)
		return false
	}
	AbortStatus(c, http.StatusBadRequest, "malformed_json", err.Error())
	return false
}

func decodeJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return errors.New("request body is empty")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if len(body) > MaxBodyBytes {
		return errBodyTooLarge
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			field := typeErr.Field
			if field == "" {
				field = "(body)"
			}
			return validation.Field(field, fmt.Sprintf("must be %s, got %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value))
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return validation.Field(strings.Trim(name, `"`), "unknown field")
		}
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON: unexpected data after the JSON object")
	}
	return nil
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	default:
		return "an object"
	}
}
