package flight

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Search limits.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
)

// SortKey orders search results by one field.
type SortKey struct {
	Field string // price, departure_time or arrival_time
	Desc  bool
}

// Search is a traveller's query: a route, optionally a departure day, enough free seats for
// the party, a fare range, an order and a page.
type Search struct {
	From       string
	To         string
	Date       time.Time // departure day in UTC; zero means any day from now on
	Travellers int
	MinPrice   int64
	MaxPrice   int64 // 0 means no upper bound
	Sort       []SortKey
	Limit      int
	After      *Cursor
}

// Cursor is the position after the last result of a page: the last row's sort values and id.
// It carries the sort it was made for, so a cursor reused with another sort is refused.
type Cursor struct {
	Sort   string  `json:"s"`
	Values []int64 `json:"v"` // price in minor units, times in Unix microseconds
	ID     int64   `json:"id"`
}

// Encode returns the opaque form clients pass back as ?cursor=.
func (c Cursor) Encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// SortString is the canonical form of s.Sort, e.g. "price,-departure_time".
func (s Search) SortString() string {
	parts := make([]string, len(s.Sort))
	for i, k := range s.Sort {
		parts[i] = k.Field
		if k.Desc {
			parts[i] = "-" + k.Field
		}
	}
	return strings.Join(parts, ",")
}

var seedSortFields = map[string]string{"price": "price", "departureTime": "departure_time", "arrivalTime": "arrival_time"}

// ParseSearch reads a search from query parameters. It accepts flightbook's parameters
// (from, to, date, travellers, min_price, max_price, sort=price,-departure_time, limit,
// cursor) and the seed's (trips=DEL-BOM, tripDate, price=1000-5000,
// sort=price_ASC,departureTime_DESC), so the seed's clients keep working. Every bad parameter
// is reported, each by name.
func ParseSearch(q url.Values) (Search, error) {
	var v validation.Errors
	s := Search{Travellers: 1, Limit: DefaultSearchLimit}

	s.From, s.To = strings.ToUpper(q.Get("from")), strings.ToUpper(q.Get("to"))
	if s.From != "" && !iataCode.MatchString(s.From) {
		v.Add("from", "must be a 3-letter IATA code")
	}
	if s.To != "" && !iataCode.MatchString(s.To) {
		v.Add("to", "must be a 3-letter IATA code")
	}
	if trips := q.Get("trips"); trips != "" {
		// The seed's form of from and to; errors name the parameter the client sent.
		from, to, ok := strings.Cut(strings.ToUpper(trips), "-")
		if !ok || !iataCode.MatchString(from) || !iataCode.MatchString(to) {
			v.Add("trips", "must be FROM-TO with 3-letter IATA codes, e.g. DEL-BOM")
		}
		s.From, s.To = from, to
	}

	for _, name := range []string{"date", "tripDate"} {
		if d := q.Get(name); d != "" {
			t, err := time.Parse(time.DateOnly, d)
			if err != nil {
				v.Add(name, "must be a date, YYYY-MM-DD")
			}
			s.Date = t
		}
	}
	if t := q.Get("travellers"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 9 {
			v.Add("travellers", "must be a whole number from 1 to 9")
		}
		s.Travellers = n
	}
	s.MinPrice = parseAmount(&v, q, "min_price")
	s.MaxPrice = parseAmount(&v, q, "max_price")
	if p := q.Get("price"); p != "" {
		lo, hi, ok := strings.Cut(p, "-")
		min, err1 := strconv.ParseInt(lo, 10, 64)
		max, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || min < 0 || max < min {
			v.Add("price", "must be MIN-MAX in minor units, e.g. 1000-5000")
		}
		s.MinPrice, s.MaxPrice = min, max
	}
	if q.Get("price") == "" && s.MaxPrice > 0 && s.MaxPrice < s.MinPrice {
		v.Add("max_price", "must not be below min_price")
	}

	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxSearchLimit {
			v.Add("limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxSearchLimit))
		}
		s.Limit = n
	}
	s.Sort = parseSort(&v, q.Get("sort"))

	if c := q.Get("cursor"); c != "" {
		var cur Cursor
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			err = json.Unmarshal(b, &cur)
		}
		switch {
		case err != nil:
			v.Add("cursor", "is not a cursor this service returned")
		case cur.Sort != s.SortString() || len(cur.Values) != len(s.Sort):
			v.Add("cursor", "was made for another sort order; start again without a cursor")
		default:
			s.After = &cur
		}
	}
	return s, v.Err()
}

func parseAmount(v *validation.Errors, q url.Values, name string) int64 {
	p := q.Get(name)
	if p == "" {
		return 0
	}
	n, err := strconv.ParseInt(p, 10, 64)
	if err != nil || n < 0 {
		v.Add(name, "must be a non-negative whole amount in minor units")
	}
	return n
}

func parseSort(v *validation.Errors, raw string) []SortKey {
	if raw == "" {
		return []SortKey{{Field: "departure_time"}}
	}
	var keys []SortKey
	seen := map[string]bool{}
	for _, part := range strings.Split(raw, ",") {
		var k SortKey
		switch {
		case strings.HasSuffix(part, "_ASC") || strings.HasSuffix(part, "_DESC"):
			name, dir, _ := strings.Cut(part, "_")
			k = SortKey{Field: seedSortFields[name], Desc: dir == "DESC"}
		case strings.HasPrefix(part, "-"):
			k = SortKey{Field: strings.TrimPrefix(part, "-"), Desc: true}
		default:
			k = SortKey{Field: part}
		}
		switch k.Field {
		case "price", "departure_time", "arrival_time":
		default:
			v.Add("sort", fmt.Sprintf("unknown sort field %q; use price, departure_time or arrival_time, '-' for descending", part))
			continue
		}
		if seen[k.Field] {
			v.Add("sort", fmt.Sprintf("field %q appears twice", k.Field))
			continue
		}
		seen[k.Field] = true
		keys = append(keys, k)
	}
	return keys
}
