// Package web holds the HTTP pieces every flightbook service shares: the gin engine with
// request ids and access logs, problem+json errors, strict JSON decoding, health endpoints and
// a server that drains in-flight requests on shutdown.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// ServerConfig holds the HTTP server settings shared by the services.
type ServerConfig struct {
	ReadTimeout     time.Duration `split_words:"true" default:"10s" desc:"maximum time to read a request, body included"`
	WriteTimeout    time.Duration `split_words:"true" default:"30s" desc:"maximum time to write a response (covers Prefer: wait)"`
	IdleTimeout     time.Duration `split_words:"true" default:"120s" desc:"keep-alive idle timeout"`
	ShutdownTimeout time.Duration `split_words:"true" default:"20s" desc:"how long in-flight requests may run after SIGTERM"`
}

// Serve runs h on ln until ctx is cancelled, then stops accepting connections and waits up to
// cfg.ShutdownTimeout for in-flight requests to finish.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg ServerConfig, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http server listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("http server shutting down; draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// NewEngine returns a gin engine with request ids, structured access logs, panic recovery to a
// 500 problem, and problem+json for unknown routes and methods.
func NewEngine(log *slog.Logger) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.Use(requestID(), accessLog(log), recovery(log))
	r.NoRoute(func(c *gin.Context) {
		AbortStatus(c, http.StatusNotFound, "route_not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		AbortStatus(c, http.StatusMethodNotAllowed, "method_not_allowed", "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return r
}
