package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/consumer"
)

func TestBatchingConsumerDefaults(t *testing.T) {
	tests := []struct {
		name               string
		env                map[string]string
		concurrency, acked int
	}{
		{"unset: the batching defaults", nil, 64, 512},
		{"concurrency set", map[string]string{"FLIGHTBOOK_CONSUMER_CONCURRENCY": "8"}, 8, 512},
		{"concurrency above the default", map[string]string{"FLIGHTBOOK_CONSUMER_CONCURRENCY": "1000"}, 1000, 1000},
		{"max ack pending set", map[string]string{"FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING": "2000"}, 64, 2000},
		{"max ack pending below the default concurrency caps it", map[string]string{"FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING": "16"}, 16, 16},
		{"both set", map[string]string{"FLIGHTBOOK_CONSUMER_CONCURRENCY": "4", "FLIGHTBOOK_CONSUMER_MAX_ACK_PENDING": "32"}, 4, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c struct{ Consumer consumer.Config }
			if err := config.Load(&c); err != nil {
				t.Fatal(err)
			}
			batchingConsumerDefaults(&c.Consumer)
			assert.Equal(t, tt.concurrency, c.Consumer.Concurrency, "concurrency")
			assert.Equal(t, tt.acked, c.Consumer.MaxAckPending, "max ack pending")
		})
	}
}
