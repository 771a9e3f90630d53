package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestLogDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		warn bool
	}{
		{"closed on purpose", nil, false},
		{"lost", io.EOF, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo}))
			logDisconnect(log)(&nats.Conn{}, tc.err)
			if got := strings.Contains(b.String(), "level=WARN"); got != tc.warn {
				t.Fatalf("warned: %v, want %v (log: %q)", got, tc.warn, b.String())
			}
		})
	}
}
