package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/flightbook/flightbook/validation"
)

// Event is implemented by every contract type.
type Event interface {
	// EventType is the versioned CloudEvents type, e.g. "dev.flightbook.booking.confirmed.v1".
	EventType() string
	// Subject is the base NATS subject without namespace, e.g. "booking.events.confirmed".
	Subject() string
	// AggregateID is the ce-subject: the booking id, or the flight id for catalogue events.
	AggregateID() string
}

// Base stream names, before a [Topology] namespace is applied.
const (
	StreamBooking = "BOOKING" // booking.>: everything the booking service publishes
	StreamFlight  = "FLIGHT"  // flight.>: everything the flight service publishes
	StreamDLQ     = "DLQ"     // dlq.>: messages consumers gave up on, with their error
)

// The services, as named in contracts and dead-letter subjects.
const (
	ServiceBooking = "booking"
	ServiceFlight  = "flight"
)

// Contract describes one event type: what a publisher, a consumer and the catalogue need to
// know about it.
type Contract struct {
	Type      string   // versioned CloudEvents type (ce-type)
	Subject   string   // base NATS subject
	Stream    string   // base name of the stream that stores the subject
	Publisher string   // the service that publishes it
	Consumers []string // the flightbook services that consume it; public events may have none
	Summary   string   // one sentence for the catalogue
	Example   Event    // a valid instance, for documentation and tests

	goType   reflect.Type
	fields   []string // JSON names of the payload's fields, in struct order
	required []string // the fields that must be present: those without omitempty
	decode   func(data []byte) (Event, error)
}

// Fields returns the JSON names of the payload's fields, in declaration order.
func (c Contract) Fields() []string { return slices.Clone(c.fields) }

// Required returns the JSON names of the fields every payload must carry.
func (c Contract) Required() []string { return slices.Clone(c.required) }

// contracts is the registry: Encode refuses, and Decode rejects, any type not listed here.
// Order is the order of the saga, then the public events; the docs follow it.
var contracts = []Contract{
	contract(ServiceBooking, []string{ServiceFlight}, "Asks the flight service to hold seats for a new PENDING booking.", SeatHoldRequested{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, UserID: "user-17", Seats: 2}),
	contract(ServiceFlight, []string{ServiceBooking}, "The seats are held for the booking, at the flight's fare.", SeatsHeld{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2, UnitPrice: 12900, Total: 25800, Currency: "EUR"}),
	contract(ServiceFlight, []string{ServiceBooking}, "No seats were held for the booking, and why.", SeatHoldRejected{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2, Reason: RejectSoldOut, Detail: "1 seat left, 2 requested"}),
	contract(ServiceBooking, []string{ServiceFlight}, "Asks the flight service to give back the seats of a cancelled or expired booking, or of a hold that came too late.", SeatReleaseRequested{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2, Reason: ReleaseExpired}),
	contract(ServiceFlight, []string{ServiceBooking}, "The booking's seats are available again (or a tombstone now refuses a late hold).", SeatsReleased{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2}),
	contract(ServiceBooking, []string{ServiceFlight}, "Asks the flight service to turn a paid booking's hold into sold seats.", SeatsConfirmRequested{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2}),
	contract(ServiceFlight, []string{ServiceBooking}, "The booking's held seats are sold.", SeatsConfirmed{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", FlightID: 42, Seats: 2}),
	contract(ServiceBooking, nil, "A booking's seats are held at a price until the hold expires.", BookingHeld{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", UserID: "user-17", FlightID: 42, Seats: 2, UnitPrice: 12900, Total: 25800, Currency: "EUR",
		HoldExpiresAt: mustTime("2026-03-01T10:10:00Z")}),
	contract(ServiceBooking, nil, "A booking was paid; its seats are sold.", BookingConfirmed{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", UserID: "user-17", FlightID: 42, Seats: 2, Total: 25800, Currency: "EUR", PaymentID: "pay_7Qm2x"}),
	contract(ServiceBooking, nil, "A booking could not get its seats.", BookingRejected{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", UserID: "user-17", FlightID: 42, Seats: 2, Reason: RejectSoldOut}),
	contract(ServiceBooking, nil, "A PENDING or HELD booking ran out of time; its seats are being released.", BookingExpired{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", UserID: "user-17", FlightID: 42, Seats: 2, PreviousStatus: ExpiredFromHeld}),
	contract(ServiceBooking, nil, "The traveller cancelled a HELD or CONFIRMED booking; its seats are being released.", BookingCancelled{
		BookingID: "0190f1b2-7c3d-7a4e-9f10-5b6c7d8e9f01", UserID: "user-17", FlightID: 42, Seats: 2, RefundAmount: 25800, Currency: "EUR"}),
	contract(ServiceFlight, []string{ServiceBooking}, "A flight is in the catalogue and open for booking, as it now stands: sent when it is created or rescheduled, and again while it is open so the stream always holds it; consumers upsert by flight_id.", FlightScheduled{
		FlightID: 42, FlightNumber: "FB1234", DepartureAirport: "AMS", ArrivalAirport: "LIS",
		DepartureTime: mustTime("2026-03-14T07:25:00Z"), ArrivalTime: mustTime("2026-03-14T10:15:00Z"), TotalSeats: 180, FareAmount: 12900, Currency: "EUR"}),
	contract(ServiceFlight, []string{ServiceBooking}, "A flight was withdrawn from the catalogue; it is never scheduled again.", FlightCancelled{
		FlightID: 42, FlightNumber: "FB1234"}),
}

// byType and byGoType index contracts; building them when the package loads means a
// duplicate type or subject fails every test and every start, not some lookup later.
var byType, byGoType = indexContracts()

func indexContracts() (map[string]*Contract, map[reflect.Type]*Contract) {
	types := make(map[string]*Contract, len(contracts))
	goTypes := make(map[reflect.Type]*Contract, len(contracts))
	subjects := make(map[string]bool, len(contracts))
	for i := range contracts {
		c := &contracts[i]
		if types[c.Type] != nil || subjects[c.Subject] {
			panic("events: duplicate contract " + c.Type + " on " + c.Subject)
		}
		types[c.Type] = c
		goTypes[c.goType] = c
		subjects[c.Subject] = true
	}
	return types, goTypes
}

// Contracts returns every event contract, in the order of the saga and then the public events.
func Contracts() []Contract {
	out := slices.Clone(contracts)
	for i := range out {
		out[i].Consumers = slices.Clone(out[i].Consumers)
	}
	return out
}

// Lookup returns the contract of a CloudEvents type.
func Lookup(eventType string) (Contract, bool) {
	c, ok := byType[eventType]
	if !ok {
		return Contract{}, false
	}
	out := *c
	out.Consumers = slices.Clone(c.Consumers)
	return out, true
}

// StreamOf returns the base name of the stream that stores a base subject, or "" when no
// flightbook stream does.
func StreamOf(subject string) string {
	first, _, _ := strings.Cut(subject, ".")
	switch first {
	case "booking":
		return StreamBooking
	case "flight":
		return StreamFlight
	case "dlq":
		return StreamDLQ
	}
	return ""
}

// DLQSubject returns the base dead-letter subject of one consumer of one service,
// "dlq.<service>.<consumer>".
func DLQSubject(service, consumer string) string { return "dlq." + service + "." + consumer }

func contract[E Event](publisher string, consumers []string, summary string, example E) Contract {
	t := reflect.TypeFor[E]()
	var fields, required []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		fields = append(fields, name)
		if !slices.Contains(strings.Split(opts, ","), "omitempty") {
			required = append(required, name)
		}
	}
	return Contract{
		Type:      example.EventType(),
		Subject:   example.Subject(),
		Stream:    StreamOf(example.Subject()),
		Publisher: publisher,
		Consumers: consumers,
		Summary:   summary,
		Example:   example,
		goType:    t,
		fields:    fields,
		required:  required,
		decode: func(data []byte) (Event, error) {
			var e E
			if err := decodeStrict(data, &e); err != nil {
				return nil, err
			}
			return e, nil
		},
	}
}

// checkPresent reports every required field the JSON object lacks or sets to null. Go's
// decoder would quietly leave such a field at its zero value, and a zero booking id or seat
// count must not pass for a real one.
func checkPresent(obj map[string]json.RawMessage, required []string) error {
	var v validation.Errors
	for _, name := range required {
		raw, ok := obj[name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			v.Add(name, "required")
		}
	}
	return v.Err()
}

// decodeStrict decodes one JSON value into dst, refusing unknown fields and trailing data: a
// field this version does not know means the producer speaks a different contract, which
// needs a new type version rather than silent loss.
func decodeStrict(data []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
