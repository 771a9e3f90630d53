package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flightbook/flightbook/events"
)

var testTopology = events.Topology{Namespace: "t1a2b", Source: "flightbook/test"}

// TestContracts pins every type string, subject and stream: renaming one breaks every consumer
// still running the old build, so it must be a deliberate, visible change here.
func TestContracts(t *testing.T) {
	t.Parallel()
	want := []struct {
		event                events.Event
		typ, subject, stream string
		publisher            string
	}{
		{events.SeatHoldRequested{}, "dev.flightbook.booking.seat-hold-requested.v1", "booking.saga.seat-hold-requested", "BOOKING", "booking"},
		{events.SeatsHeld{}, "dev.flightbook.flight.seats-held.v1", "flight.saga.seats-held", "FLIGHT", "flight"},
		{events.SeatHoldRejected{}, "dev.flightbook.flight.seat-hold-rejected.v1", "flight.saga.seat-hold-rejected", "FLIGHT", "flight"},
		{events.SeatReleaseRequested{}, "dev.flightbook.booking.seat-release-requested.v1", "booking.saga.seat-release-requested", "BOOKING", "booking"},
		{events.SeatsReleased{}, "dev.flightbook.flight.seats-released.v1", "flight.saga.seats-released", "FLIGHT", "flight"},
		{events.SeatsConfirmRequested{}, "dev.flightbook.booking.seats-confirm-requested.v1", "booking.saga.seats-confirm-requested", "BOOKING", "booking"},
		{events.SeatsConfirmed{}, "dev.flightbook.flight.seats-confirmed.v1", "flight.saga.seats-confirmed", "FLIGHT", "flight"},
		{events.BookingHeld{}, "dev.flightbook.booking.held.v1", "booking.events.held", "BOOKING", "booking"},
		{events.BookingConfirmed{}, "dev.flightbook.booking.confirmed.v1", "booking.events.confirmed", "BOOKING", "booking"},
		{events.BookingRejected{}, "dev.flightbook.booking.rejected.v1", "booking.events.rejected", "BOOKING", "booking"},
		{events.BookingExpired{}, "dev.flightbook.booking.expired.v1", "booking.events.expired", "BOOKING", "booking"},
		{events.BookingCancelled{}, "dev.flightbook.booking.cancelled.v1", "booking.events.cancelled", "BOOKING", "booking"},
		{events.FlightScheduled{}, "dev.flightbook.flight.scheduled.v1", "flight.catalog.scheduled", "FLIGHT", "flight"},
		{events.FlightCancelled{}, "dev.flightbook.flight.cancelled.v1", "flight.catalog.cancelled", "FLIGHT", "flight"},
	}
	contracts := events.Contracts()
	require.Len(t, contracts, len(want))
	for i, w := range want {
		c := contracts[i]
		assert.Equal(t, w.typ, w.event.EventType())
		assert.Equal(t, w.subject, w.event.Subject())
		assert.Equal(t, w.typ, c.Type)
		assert.Equal(t, w.subject, c.Subject)
		assert.Equal(t, w.stream, c.Stream)
		assert.Equal(t, w.publisher, c.Publisher)
		assert.Equal(t, reflect.TypeOf(w.event), reflect.TypeOf(c.Example), "contract %d is %T", i, c.Example)
		got, ok := events.Lookup(w.typ)
		assert.True(t, ok, w.typ)
		assert.Equal(t, w.subject, got.Subject)
	}
	_, ok := events.Lookup("dev.flightbook.booking.confirmed.v2")
	assert.False(t, ok)
}

func TestTopology(t *testing.T) {
	t.Parallel()
	tests := []struct {
		namespace, subject, stream, dlqStream string
	}{
		{"", "booking.events.confirmed", "BOOKING", "DLQ"},
		{"t1a2b", "t1a2b.booking.events.confirmed", "T1A2B_BOOKING", "T1A2B_DLQ"},
	}
	for _, tt := range tests {
		top := events.Topology{Namespace: tt.namespace}
		assert.Equal(t, tt.subject, top.Subject("booking.events.confirmed"))
		assert.Equal(t, tt.stream, top.StreamName(events.StreamBooking))
		assert.Equal(t, tt.dlqStream, top.StreamName(events.StreamDLQ))
	}
	assert.Equal(t, "dlq.flight.seat-holds", events.DLQSubject("flight", "seat-holds"))
	assert.Equal(t, "DLQ", events.StreamOf(events.DLQSubject("flight", "seat-holds")))
	assert.Equal(t, "", events.StreamOf("payments.created"))
}

// TestRoundTrip encodes every contract's example and decodes it back, with and without a
// namespace, checking each header the binding requires.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, top := range []events.Topology{testTopology, {Source: "flightbook/test"}} {
		for _, c := range events.Contracts() {
			t.Run(top.Namespace+"/"+c.Type, func(t *testing.T) {
				t.Parallel()
				before := time.Now().UTC().Truncate(time.Second)
				msg, err := top.Encode(c.Example)
				require.NoError(t, err)

				id, err := uuid.Parse(msg.ID)
				require.NoError(t, err)
				assert.Equal(t, uuid.Version(7), id.Version())
				assert.Equal(t, top.Subject(c.Subject), msg.Subject)
				assert.Equal(t, c.Example.AggregateID(), msg.AggregateID)
				assert.Equal(t, "1.0", msg.Header.Get("ce-specversion"))
				assert.Equal(t, msg.ID, msg.Header.Get("ce-id"))
				assert.Equal(t, msg.ID, msg.Header.Get("Nats-Msg-Id"))
				assert.Equal(t, c.Type, msg.Header.Get("ce-type"))
				assert.Equal(t, "flightbook/test", msg.Header.Get("ce-source"))
				assert.Equal(t, c.Example.AggregateID(), msg.Header.Get("ce-subject"))
				assert.Equal(t, "application/json", msg.Header.Get("content-type"))
				assert.True(t, json.Valid(msg.Data))

				env, err := events.Decode(msg.Subject, msg.Header, msg.Data)
				require.NoError(t, err)
				assert.Equal(t, c.Example, env.Event)
				assert.Equal(t, msg.ID, env.ID)
				assert.Equal(t, c.Type, env.Type)
				assert.Equal(t, "flightbook/test", env.Source)
				assert.Equal(t, c.Example.AggregateID(), env.Subject)
				assert.Equal(t, time.UTC, env.Time.Location())
				assert.False(t, env.Time.Before(before), "ce-time %s before %s", env.Time, before)
				assert.WithinDuration(t, time.Now(), env.Time, time.Minute)

				nm := msg.NATS()
				assert.Equal(t, msg.Subject, nm.Subject)
				assert.Equal(t, msg.Data, nm.Data)
			})
		}
	}
}

// TestEncodeUTC: times travel in UTC whatever zone the producer used, and decode as the same
// instant.
func TestEncodeUTC(t *testing.T) {
	t.Parallel()
	lisbon := time.FixedZone("WEST", 3600)
	ev := events.FlightScheduled{FlightID: 7, FlightNumber: "FB7", DepartureAirport: "LIS", ArrivalAirport: "AMS",
		DepartureTime: time.Date(2026, 6, 1, 9, 0, 0, 0, lisbon), ArrivalTime: time.Date(2026, 6, 1, 13, 0, 0, 0, lisbon),
		TotalSeats: 150, FareAmount: 9900, Currency: "EUR"}
	msg, err := testTopology.Encode(ev)
	require.NoError(t, err)
	assert.Contains(t, string(msg.Data), `"departure_time":"2026-06-01T08:00:00Z"`)
	env, err := events.Decode(msg.Subject, msg.Header, msg.Data)
	require.NoError(t, err)
	got := env.Event.(events.FlightScheduled)
	assert.True(t, got.DepartureTime.Equal(ev.DepartureTime))
	assert.Equal(t, time.UTC, got.DepartureTime.Location())
	assert.Equal(t, "7", msg.AggregateID)
}

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	valid := events.SeatsConfirmed{BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 1, Seats: 1}
	var nilPtr *events.SeatsConfirmed
	tests := []struct {
		name string
		top  events.Topology
		ev   events.Event
		want string
	}{
		{"nil event", testTopology, nil, "nil event"},
		{"pointer", testTopology, &valid, "pass the value, not a pointer"},
		{"nil pointer", testTopology, nilPtr, "not a registered event type"},
		{"no source", events.Topology{}, valid, "no Source"},
		{"invalid payload", testTopology, events.SeatsConfirmed{FlightID: 1, Seats: 0}, "booking_id: required; seats: must be at least 1"},
		{"bad reason", testTopology, events.SeatReleaseRequested{BookingID: valid.BookingID, FlightID: 1, Seats: 1, Reason: "lost"}, "reason: must be one of cancelled, expired, late_hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.top.Encode(tt.ev)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// validMessage returns an encoded SeatsHeld for the failure tests to break.
func validMessage(t testing.TB) events.Message {
	t.Helper()
	msg, err := testTopology.Encode(events.SeatsHeld{BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2,
		UnitPrice: 100, Total: 200, Currency: "EUR"})
	require.NoError(t, err)
	return msg
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	const body = `{"booking_id":"0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01","flight_id":42,"seats":2,"unit_price":100,"total":200,"currency":"EUR"}`
	tests := []struct {
		name    string
		subject string              // "" keeps the message's own subject
		header  func(h nats.Header) // changes to the valid headers
		data    string              // "" keeps body
		want    string
		unknown bool // wraps ErrUnknownType too
	}{
		{name: "missing ce-specversion", header: del("ce-specversion"), want: "missing header ce-specversion"},
		{name: "missing ce-id", header: del("ce-id"), want: "missing header ce-id"},
		{name: "missing ce-type", header: del("ce-type"), want: "missing header ce-type"},
		{name: "missing ce-source", header: del("ce-source"), want: "missing header ce-source"},
		{name: "missing ce-time", header: del("ce-time"), want: "missing header ce-time"},
		{name: "missing ce-subject", header: del("ce-subject"), want: "missing header ce-subject"},
		{name: "missing several", header: func(h nats.Header) { h.Del("ce-id"); h.Del("ce-time") }, want: "missing header ce-id, ce-time"},
		{name: "no headers at all", header: func(h nats.Header) { clear(h) }, want: "missing header ce-specversion, ce-id, ce-type, ce-source, ce-time, ce-subject"},
		{name: "empty header value", header: set("ce-source", ""), want: "missing header ce-source"},
		{name: "wrong specversion", header: set("ce-specversion", "0.3"), want: `header ce-specversion is "0.3", want "1.0"`},
		{name: "unknown type", header: set("ce-type", "dev.flightbook.flight.seats-held.v2"), want: `unknown event type "dev.flightbook.flight.seats-held.v2"`, unknown: true},
		{name: "bad time", header: set("ce-time", "yesterday"), want: `header ce-time is "yesterday", not an RFC 3339 time`},
		{name: "wrong content type", header: set("content-type", "application/xml"), want: `header content-type is "application/xml"`},
		{name: "type on wrong subject", subject: "t1a2b.booking.events.held", want: "type dev.flightbook.flight.seats-held.v1 belongs on subject flight.saga.seats-held, not t1a2b.booking.events.held"},
		{name: "suffix is not a token", subject: "t1a2b.xflight.saga.seats-held", want: "belongs on subject flight.saga.seats-held"},
		{name: "ce-subject not the booking", header: set("ce-subject", "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f02"), want: `header ce-subject is "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f02" but the payload is about "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01"`},
		{name: "empty body", data: " ", want: "bad JSON"},
		{name: "truncated JSON", data: `{"booking_id":`, want: "bad JSON"},
		{name: "not an object", data: `[1,2]`, want: "bad JSON"},
		{name: "null body", data: `null`, want: "body is null"},
		{name: "trailing data", data: body + `{}`, want: "bad JSON: invalid character"},
		{name: "unknown field", data: strings.Replace(body, `"seats":2`, `"seats":2,"cabin":"Y"`, 1), want: `unknown field "cabin"`},
		{name: "wrong field type", data: strings.Replace(body, `"seats":2`, `"seats":"two"`, 1), want: "bad JSON: json: cannot unmarshal string into Go struct field SeatsHeld.seats of type int"},
		{name: "missing booking_id", data: `{"flight_id":42,"seats":2,"unit_price":100,"total":200,"currency":"EUR"}`, want: "booking_id: required"},
		{name: "null booking_id", data: strings.Replace(body, `"0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01"`, `null`, 1), want: "booking_id: required"},
		{name: "booking_id not a uuid", data: strings.Replace(body, `"0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01"`, `"b-1"`, 1), want: "booking_id: must be a UUID"},
		{name: "two bad fields", data: strings.Replace(strings.Replace(body, `"EUR"`, `"eur"`, 1), `"seats":2`, `"seats":0`, 1), want: "seats: must be at least 1; currency: must be a three-letter ISO 4217 code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := validMessage(t)
			subject, data := msg.Subject, body
			if tt.subject != "" {
				subject = tt.subject
			}
			if tt.data != "" {
				data = tt.data
			}
			if tt.header != nil {
				tt.header(msg.Header)
			}
			env, err := events.Decode(subject, msg.Header, []byte(data))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, errors.Is(err, events.ErrUndecodable), "%v does not wrap ErrUndecodable", err)
			assert.Equal(t, tt.unknown, errors.Is(err, events.ErrUnknownType))
			assert.Zero(t, env)
		})
	}
}

// TestDecodeRequiresEveryField removes each required field from each contract's example in
// turn: the error must name that field. This ties the required list (the fields without
// omitempty, which the AsyncAPI document repeats) to what Decode enforces.
func TestDecodeRequiresEveryField(t *testing.T) {
	t.Parallel()
	for _, c := range events.Contracts() {
		msg, err := testTopology.Encode(c.Example)
		require.NoError(t, err)
		for _, field := range c.Required() {
			var obj map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(msg.Data, &obj))
			delete(obj, field)
			data, err := json.Marshal(obj)
			require.NoError(t, err)
			_, err = events.Decode(msg.Subject, msg.Header, data)
			require.Error(t, err, "%s without %s", c.Type, field)
			assert.Contains(t, err.Error(), field+": required", c.Type)
		}
	}
}

// TestDecodeOptionalField: detail may be left out of SeatHoldRejected.
func TestDecodeOptionalField(t *testing.T) {
	t.Parallel()
	c, _ := events.Lookup(events.SeatHoldRejected{}.EventType())
	assert.Equal(t, []string{"booking_id", "flight_id", "seats", "reason"}, c.Required())
	ev := events.SeatHoldRejected{BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 9, Seats: 1, Reason: events.RejectFlightNotFound}
	msg, err := testTopology.Encode(ev)
	require.NoError(t, err)
	assert.NotContains(t, string(msg.Data), "detail")
	env, err := events.Decode(msg.Subject, msg.Header, msg.Data)
	require.NoError(t, err)
	assert.Equal(t, ev, env.Event)
}

func TestDecodePayloadRules(t *testing.T) {
	t.Parallel()
	const id = "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01"
	dep := time.Date(2026, 3, 14, 7, 25, 0, 0, time.UTC)
	tests := []struct {
		name string
		ev   events.Event
		want string
	}{
		{"negative flight id", events.SeatHoldRequested{BookingID: id, FlightID: -1, UserID: "u", Seats: 1}, "flight_id: must be a positive integer"},
		{"empty user", events.SeatHoldRequested{BookingID: id, FlightID: 1, Seats: 1}, "user_id: required"},
		{"braced uuid", events.SeatsReleased{BookingID: "{" + id + "}", FlightID: 1}, "booking_id: must be a UUID in canonical form"},
		{"upper-case uuid", events.SeatsReleased{BookingID: strings.ToUpper(id), FlightID: 1}, "booking_id: must be a UUID in canonical form"},
		{"negative refund", events.BookingCancelled{BookingID: id, UserID: "u", FlightID: 1, Seats: 1, RefundAmount: -5, Currency: "EUR"}, "refund_amount: must not be negative"},
		{"unknown previous status", events.BookingExpired{BookingID: id, UserID: "u", FlightID: 1, Seats: 1, PreviousStatus: "CONFIRMED"}, "previous_status: must be one of PENDING, HELD"},
		{"missing reject reason", events.BookingRejected{BookingID: id, UserID: "u", FlightID: 1, Seats: 1}, "reason: required"},
		{"hold without expiry", events.BookingHeld{BookingID: id, UserID: "u", FlightID: 1, Seats: 1, Currency: "EUR"}, "hold_expires_at: required"},
		{"arrival before departure", events.FlightScheduled{FlightID: 1, FlightNumber: "FB1", DepartureAirport: "AMS", ArrivalAirport: "lis",
			DepartureTime: dep, ArrivalTime: dep.Add(-time.Hour), TotalSeats: 1, Currency: "EUR"}, "arrival_airport: must be a three-letter IATA airport code; arrival_time: must be after departure_time"},
		{"no payment id", events.BookingConfirmed{BookingID: id, UserID: "u", FlightID: 1, Seats: 1, Currency: "EUR"}, "payment_id: required"},
		{"cancelled without number", events.FlightCancelled{FlightID: 3}, "flight_number: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Encode refuses these, so the message is built by hand as a foreign producer might.
			data, err := json.Marshal(tt.ev)
			require.NoError(t, err)
			h := validMessage(t).Header
			h.Set("ce-type", tt.ev.EventType())
			h.Set("ce-subject", tt.ev.AggregateID())
			_, err = events.Decode(testTopology.Subject(tt.ev.Subject()), h, data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, err = testTopology.Encode(tt.ev)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestDecodeLenientHeaders: headers canonicalised HTTP-style by a gateway are still read, a
// traceparent is passed through, a charset on the content type is fine, and "" skips the
// subject check for messages read back from a dead-letter subject.
func TestDecodeLenientHeaders(t *testing.T) {
	t.Parallel()
	msg := validMessage(t)
	h := nats.Header{}
	for k, v := range msg.Header {
		h[strings.ToUpper(k[:1])+k[1:]] = v
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	env, err := events.Decode("", h, msg.Data)
	require.NoError(t, err)
	assert.Equal(t, msg.ID, env.ID)
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", env.TraceParent)
	assert.IsType(t, events.SeatsHeld{}, env.Event)
}

func del(name string) func(nats.Header) { return func(h nats.Header) { h.Del(name) } }

func set(name, value string) func(nats.Header) {
	return func(h nats.Header) { h.Set(name, value) }
}
