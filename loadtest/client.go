package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// HTTPError is a response with a 4xx or 5xx status; Problem is its problem+json body, as far
// as it could be read.
type HTTPError struct {
	Endpoint string
	Problem  Problem
}

func (e *HTTPError) Error() string { return e.Endpoint + ": " + e.Problem.String() }

// statusOf returns the HTTP status of err, or 0 when no response came.
func statusOf(err error) int {
	if he, ok := errors.AsType[*HTTPError](err); ok {
		return he.Problem.Status
	}
	return 0
}

// client sends JSON requests and records each one's latency and outcome, when rec is set.
type client struct {
	http    *http.Client
	timeout time.Duration
	rec     *Recorder
}

func newClient(conns int, timeout time.Duration) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// One idle connection per client per host, so a closed-loop run reuses its connections
	// instead of measuring TCP handshakes.
	tr.MaxIdleConns = 2 * conns
	tr.MaxIdleConnsPerHost = conns
	tr.DisableCompression = true
	return &client{http: &http.Client{Transport: tr}, timeout: timeout}
}

// recording returns a client sharing c's connections that records into rec (nil: nothing).
func (c *client) recording(rec *Recorder) *client {
	cp := *c
	cp.rec = rec
	return &cp
}

// request is one call: in is the JSON body (nil for none), out receives a 2xx JSON body (nil
// to discard it).
type request struct {
	endpoint string
	method   string
	url      string
	token    string
	header   map[string]string
	in       any
	out      any
	// wait is the server-side wait asked for with Prefer, added to the client timeout.
	wait time.Duration
}

// do sends r and returns the response status. A 4xx or 5xx is an *HTTPError; a request that
// got no response is a plain error (status 0).
func (c *client) do(ctx context.Context, r request) (int, error) {
	var body io.Reader
	if r.in != nil {
		b, err := json.Marshal(r.in)
		if err != nil {
			return 0, fmt.Errorf("%s: encode body: %w", r.endpoint, err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout+r.wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", r.endpoint, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if r.in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.record(r.endpoint, time.Since(start), 0, transportCode(err))
		return 0, fmt.Errorf("%s: %w", r.endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	elapsed := time.Since(start)
	if err != nil {
		c.record(r.endpoint, elapsed, 0, transportCode(err))
		return 0, fmt.Errorf("%s: read response: %w", r.endpoint, err)
	}
	if resp.StatusCode >= 400 {
		p := Problem{}
		_ = json.Unmarshal(raw, &p) // a body that is not problem+json still has a status
		p.Status = resp.StatusCode
		if p.Code == "" {
			p.Code = strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")
		}
		if p.Detail == "" && p.Title == "" && len(raw) > 0 && len(raw) < 300 {
			p.Detail = strings.TrimSpace(string(raw))
		}
		c.record(r.endpoint, elapsed, resp.StatusCode, p.Code)
		return resp.StatusCode, &HTTPError{Endpoint: r.endpoint, Problem: p}
	}
	c.record(r.endpoint, elapsed, resp.StatusCode, "")
	if r.out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, r.out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: decode %d response: %w", r.endpoint, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *client) record(endpoint string, d time.Duration, status int, code string) {
	if c.rec != nil {
		c.rec.Request(endpoint, d, status, code)
	}
}

// transportCode names a failure that got no response, for the error table.
func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_reset"
	default:
		return "transport_error"
	}
}

// retryable says whether a request that failed with err may be sent again with the same
// Idempotency-Key: it got no response, or a gateway/unavailable status, or (conflict) the
// first attempt with that key is still being processed.
func retryable(err error, conflictIsInProgress bool) bool {
	switch statusOf(err) {
	case 0:
		return !errors.Is(err, context.Canceled)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusConflict:
		return conflictIsInProgress
	default:
		return false
	}
}
