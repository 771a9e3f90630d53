package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client reads bookings and holds from the services' admin APIs and asks the booking service
// for repairs. Every call carries an admin token.
type Client struct {
	FlightURL  string // base URL of the flight service, e.g. http://127.0.0.1:8081
	BookingURL string // base URL of the booking service
	// Token returns the bearer token to send; it is asked for each call, so a long-running
	// caller can mint fresh ones.
	Token    func() (string, error)
	HTTP     *http.Client
	PageSize int // rows per page; 500 when zero
}

// page is the shape of both admin list endpoints.
type page[T any] struct {
	Items     []T    `json:"items"`
	NextAfter string `json:"next_after"`
}

// Holds returns every hold of the flight (of every flight for 0), all pages.
func (c *Client) Holds(ctx context.Context, flightID int64) ([]Hold, error) {
	return list[Hold](ctx, c, c.FlightURL+"/api/v1/admin/holds", flightID)
}

// Bookings returns every booking of the flight (of every flight for 0), all pages.
func (c *Client) Bookings(ctx context.Context, flightID int64) ([]Booking, error) {
	return list[Booking](ctx, c, c.BookingURL+"/api/v1/admin/bookings", flightID)
}

func list[T any](ctx context.Context, c *Client, base string, flightID int64) ([]T, error) {
	size := c.PageSize
	if size <= 0 {
		size = 500
	}
	var all []T
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(size)}}
		if flightID != 0 {
			q.Set("flight_id", strconv.FormatInt(flightID, 10))
		}
		if after != "" {
			q.Set("after", after)
		}
		var p page[T]
		if err := c.do(ctx, http.MethodGet, base+"?"+q.Encode(), nil, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Items...)
		if p.NextAfter == "" {
			return all, nil
		}
		after = p.NextAfter
	}
}

// Repair asks the booking service to send d's fix again. A divergence that needs a person
// has nothing to send.
func (c *Client) Repair(ctx context.Context, d Divergence) error {
	if d.NeedsHuman() {
		return fmt.Errorf("booking %s: %s has no automatic repair", d.BookingID, d.Kind)
	}
	body := map[string]any{"action": d.Fix}
	if d.BookingStatus == "" { // an orphan hold: the booking service needs the seats to name
		body["flight_id"], body["seats"] = d.FlightID, d.Seats
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("repair %s: %w", d.BookingID, err)
	}
	return c.do(ctx, http.MethodPost, c.BookingURL+"/api/v1/admin/bookings/"+url.PathEscape(d.BookingID)+"/repair", raw, nil)
}

// do sends one request and decodes a 2xx answer into out; any other answer becomes an error
// quoting the problem's detail.
func (c *Client) do(ctx context.Context, method, u string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != nil {
		tok, err := c.Token()
		if err != nil {
			return fmt.Errorf("%s %s: token: %w", method, u, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, u, err)
	}
	if res.StatusCode/100 != 2 {
		var p struct {
			Detail string `json:"detail"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &p) == nil && p.Detail != "" {
			msg = p.Detail
		}
		return &HTTPError{Status: res.StatusCode, Detail: msg, Method: method, URL: u}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, u, err)
	}
	return nil
}

// HTTPError is an answer outside 2xx from a service.
type HTTPError struct {
	Method, URL string
	Status      int
	Detail      string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Detail)
}
