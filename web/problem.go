package web

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flightbook/flightbook/validation"
)

// ProblemContentType is the media type of RFC 9457 problem details.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details document. Errors lists every invalid field, so a
// client can show each one next to its input.
type Problem struct {
	Type      string                  `json:"type"`
	Title     string                  `json:"title"`
	Status    int                     `json:"status"`
	Detail    string                  `json:"detail,omitempty"`
	Instance  string                  `json:"instance,omitempty"`
	Code      string                  `json:"code,omitempty"`
	RequestID string                  `json:"request_id,omitempty"`
	Errors    []validation.FieldError `json:"errors,omitempty"`
}

// Abort writes p as the response and stops the handler chain. Every error response of every
// service goes through here, so they all look the same.
func Abort(c *gin.Context, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = c.Request.URL.Path
	p.RequestID = RequestID(c)
	c.Header("Content-Type", ProblemContentType)
	c.AbortWithStatusJSON(p.Status, p)
}

// AbortStatus writes a problem with the given status, a short machine-readable code and a
// human detail.
func AbortStatus(c *gin.Context, status int, code, detail string) {
	Abort(c, Problem{Status: status, Code: code, Detail: detail})
}

// AbortInvalid writes a 422 listing every invalid field.
func AbortInvalid(c *gin.Context, errs validation.Errors) {
	Abort(c, Problem{
		Type:   "https://flightbook.dev/problems/validation",
		Title:  "Invalid request",
		Status: http.StatusUnprocessableEntity,
		Code:   "validation_failed",
		Detail: errs.Error(),
		Errors: errs,
	})
}
