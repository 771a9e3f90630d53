package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// RequestIDHeader carries the request id in and out; a valid incoming one is kept so a
// client's or a gateway's id follows the request through the logs.
const RequestIDHeader = "X-Request-ID"

type ctxKey int

const (
	requestIDKey ctxKey = iota
	loggerKey
)

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		c.Header(RequestIDHeader, id)
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestIDKey, id))
		c.Next()
	}
}

// RequestID returns the id of the request c serves.
func RequestID(c *gin.Context) string {
	id, _ := c.Request.Context().Value(requestIDKey).(string)
	return id
}

// RequestIDFrom returns the request id carried by ctx, or "" outside a request.
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithLogger returns ctx carrying log, so code below a handler logs with the request's fields.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey, log)
}

// Logger returns the logger stored in ctx (with request_id when inside a request), or the
// default logger.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		reqLog := log.With("request_id", RequestID(c))
		c.Request = c.Request.WithContext(WithLogger(c.Request.Context(), reqLog))
		c.Next()
		level := slog.LevelInfo
		if c.Writer.Status() >= 500 {
			level = slog.LevelError
		}
		attrs := []any{
			"method", c.Request.Method,
			"path", c.Request.URL.Path,
			"route", c.FullPath(),
			"status", c.Writer.Status(),
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
			"bytes", c.Writer.Size(),
		}
		if len(c.Errors) > 0 {
			attrs = append(attrs, "error", c.Errors.String())
		}
		reqLog.Log(c.Request.Context(), level, "http request", attrs...)
	}
}

func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				log.Error("panic in handler", "request_id", RequestID(c), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				AbortStatus(c, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		c.Next()
	}
}

// AbortInternal answers 500 for an unexpected error and records the error on the context so
// the access log line carries it: the error is logged once, there, with the request id.
func AbortInternal(c *gin.Context, err error) {
	_ = c.Error(err)
	AbortStatus(c, http.StatusInternalServerError, "internal", "internal error; quote request id "+RequestID(c))
}
