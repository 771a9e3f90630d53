package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugConfig is the opt-in debug listener (FLIGHTBOOK_ prefix). It is off unless an address is
// given, and it is a listener of its own, never a route on the public API: profiles show code
// paths and timings that must not be reachable by a customer.
type debugConfig struct {
	Addr string `envconfig:"DEBUG_ADDR" default:"" desc:"address of a net/http/pprof listener (e.g. 127.0.0.1:6060); empty: off. Never expose it publicly"`
}

// debugHandler serves the pprof endpoints on a mux of its own, so nothing depends on what other
// packages registered on http.DefaultServeMux.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveDebug serves pprof on cfg.Addr until ctx ends; with no address it returns at once.
// A debug listener that fails is logged, not fatal: the services must not stop because a
// profiling port is taken.
func serveDebug(ctx context.Context, cfg debugConfig, log *slog.Logger) error {
	if cfg.Addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		log.Warn("debug listener not started", "addr", cfg.Addr, "err", err)
		return nil
	}
	// Profiles run for their ?seconds= (30 by default), so the write timeout leaves room for
	// a long CPU profile or trace.
	srv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 5 * time.Minute}
	log.Info("debug listener (pprof) started", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		_ = srv.Close()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("debug listener on %s: %w", cfg.Addr, err)
	}
}
