// Package events holds flightbook's message contracts: one Go type per event the services
// exchange, the subject and versioned CloudEvents type of each, the CloudEvents 1.0 envelope
// they travel in over NATS, and the JetStream streams that carry them.
//
// # Contracts
//
// Every event is a plain struct whose JSON form is its payload. Each knows three things:
//
//   - its type, "dev.flightbook.<service>.<name>.v1" (ce-type). A breaking change to a payload
//     is a new type with a new version suffix, published beside the old one until every
//     consumer has moved; additive changes are not made silently, because decoding is strict.
//   - its subject without namespace, "<service>.<kind>.<name>", where kind is "saga" for the
//     commands and replies of the booking saga, "events" for public booking events and
//     "catalog" for public flight catalogue events.
//   - its aggregate id (ce-subject): the booking id, or the flight id for catalogue events.
//
// The full list with publishers and consumers is [Contracts], rendered for people in
// docs/events.md and for machines in docs/asyncapi.yaml (tests keep both in step with the
// Go types).
//
// # Envelope
//
// Messages use the CloudEvents NATS protocol binding in binary content mode: the attributes
// travel as ce-* headers, the payload is the JSON body, and Nats-Msg-Id equals ce-id so that
// JetStream drops a republished duplicate. [Topology.Encode] builds a [Message]; [Decode] turns
// a received one back into an [Envelope] holding the typed event, and refuses anything it cannot
// vouch for with an error wrapping [ErrUndecodable].
//
// # Topology
//
// [Topology] names subjects and streams, optionally under a namespace so that several
// deployments or parallel tests can share one NATS server, and [EnsureStreams] creates or
// updates the BOOKING, FLIGHT and DLQ streams at start-up.
package events
