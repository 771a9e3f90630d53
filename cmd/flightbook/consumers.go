package main

import (
	"os"

	"github.com/flightbook/flightbook/consumer"
)

// Consumer defaults of both services, used when FLIGHTBOOK_CONSUMER_CONCURRENCY and
// FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING are not set.
//
// Both services handle their busy routes in batches, one transaction each (group commit): the
// flight service its seat holds, releases and confirms per flight, the booking service the
// flight service's replies (services/*/messaging). A batch can only hold the deliveries the
// router runs at once. At the generic default of 8 a hot flight decided about 250 holds/s, far
// below the booking API's rate, so SeatHoldRequested queued for minutes; and the booking
// service's replies became the saga's queue, SeatsHeld waiting 1.8 s (p50) to make its booking
// HELD at 110 sagas/s (docs/performance.md). Handler runs stay short (a batch of 64 holds
// commits in about 8 ms, BenchmarkHoldHandler), so 512 unacked messages per route are still
// far inside the 30 s AckWait.
const (
	batchingConsumerConcurrency   = 64
	batchingConsumerMaxAckPending = 512
)

// batchingConsumerDefaults raises a service's consumer concurrency and MaxAckPending to the
// defaults above, each unless its variable is set, so an operator's setting always wins.
func batchingConsumerDefaults(c *consumer.Config) {
	if _, set := os.LookupEnv("FLIGHTBOOK_CONSUMER_CONCURRENCY"); !set {
		// A MaxAckPending set lower than our default caps it, since it must be at least the
		// concurrency.
		c.Concurrency = min(batchingConsumerConcurrency, max(c.MaxAckPending, 1))
	}
	if _, set := os.LookupEnv("FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING"); !set {
		c.MaxAckPending = max(batchingConsumerMaxAckPending, c.Concurrency)
	}
}
