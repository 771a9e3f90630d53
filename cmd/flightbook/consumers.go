package main

import (
	"os"

	"github.com/flightbook/flightbook/consumer"
)

// Flight service consumer defaults, used when FLIGHTBOOK_CONSUMER_CONCURRENCY and
// FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING are not set.
//
// The flight service decides concurrent seat holds, releases and confirms on one flight in
// one transaction (group commit, services/flight/messaging), but a batch can only hold the
// deliveries the router runs at once. At the generic default of 8 a hot flight decided about 250 holds/s, far below the
// booking API's rate, so SeatHoldRequested queued for minutes (docs/performance.md). Handler
// runs stay short (a batch of 64 commits in about 8 ms, BenchmarkHoldHandler), so 512
// unacked messages per route are still far inside the 30 s AckWait.
const (
	flightConsumerConcurrency   = 64
	flightConsumerMaxAckPending = 512
)

// flightConsumerDefaults raises the flight service's consumer concurrency and MaxAckPending to
// the flight defaults above, each unless its variable is set, so an operator's setting always
// wins.
func flightConsumerDefaults(c *consumer.Config) {
	if _, set := os.LookupEnv("FLIGHTBOOK_CONSUMER_CONCURRENCY"); !set {
		// A MaxAckPending set lower than our default caps it, since it must be at least the
		// concurrency.
		c.Concurrency = min(flightConsumerConcurrency, max(c.MaxAckPending, 1))
	}
	if _, set := os.LookupEnv("FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING"); !set {
		c.MaxAckPending = max(flightConsumerMaxAckPending, c.Concurrency)
	}
}
