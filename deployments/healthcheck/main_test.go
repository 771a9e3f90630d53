package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/notready":
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
	}{
		{"ready", []string{srv.URL + "/readyz"}, 0, ""},
		{"not ready", []string{srv.URL + "/notready"}, 1, "database unreachable"},
		{"not found", []string{srv.URL + "/missing"}, 1, "404"},
		{"nothing listening", []string{closedURL + "/readyz"}, 1, "connect"},
		{"no url", nil, 2, "usage"},
		{"two urls", []string{"a", "b"}, 2, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr strings.Builder
			if got := run(tt.args, &stderr); got != tt.want {
				t.Errorf("run(%q) = %d, want %d (stderr %q)", tt.args, got, tt.want, stderr.String())
			}
			if tt.want == 0 && stderr.Len() != 0 {
				t.Errorf("healthy probe wrote %q", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.wantErr)
			}
		})
	}
}
