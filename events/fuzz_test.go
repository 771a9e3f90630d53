package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/flightbook/flightbook/events"
)

// FuzzDecode proves Decode never panics and never accepts a message it cannot vouch for,
// whatever the subject, headers and body. The seeds (every contract's example, plus broken
// variants) run in every normal `go test`; `go test ./events -run '^$' -fuzz FuzzDecode` explores
// further.
//
// Headers are fuzzed as "name: value" lines, so the fuzzer can drop, duplicate, re-case and
// corrupt them.
func FuzzDecode(f *testing.F) {
	for _, c := range events.Contracts() {
		msg, err := testTopology.Encode(c.Example)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg.Subject, headerLines(msg.Header), msg.Data)
		f.Add("", headerLines(msg.Header), msg.Data[:len(msg.Data)/2])
		f.Add(c.Subject, strings.ReplaceAll(headerLines(msg.Header), "ce-", "CE-"), append(msg.Data, " null"...))
	}
	f.Add("x", "ce-specversion: 1.0\nce-type: dev.flightbook.booking.held.v1", []byte(`{"hold_expires_at":"not a time"}`))
	f.Add("", "", []byte(nil))
	f.Add("a.b", "ce-time: 9999-99-99T99:99:99Z", []byte(`null`))

	f.Fuzz(func(t *testing.T, subject, headers string, data []byte) {
		h := parseHeaderLines(headers)
		env, err := events.Decode(subject, h, data)
		if err != nil {
			if !errors.Is(err, events.ErrUndecodable) {
				t.Fatalf("error does not wrap ErrUndecodable: %v", err)
			}
			return
		}
		// Whatever got through must be a whole, valid event that says what it is.
		if env.Event == nil || env.ID == "" || env.Source == "" || env.Time.IsZero() {
			t.Fatalf("accepted an incomplete envelope: %+v", env)
		}
		if env.Event.EventType() != env.Type || env.Event.AggregateID() != env.Subject {
			t.Fatalf("envelope and event disagree: %+v", env)
		}
		if v, ok := env.Event.(interface{ Validate() error }); ok && v.Validate() != nil {
			t.Fatalf("accepted an invalid event: %v", v.Validate())
		}
	})
}

func headerLines(h nats.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}

func parseHeaderLines(s string) nats.Header {
	h := nats.Header{}
	for line := range strings.Lines(s) {
		k, v, _ := strings.Cut(strings.TrimRight(line, "\n"), ": ")
		h[k] = append(h[k], v)
	}
	return h
}
