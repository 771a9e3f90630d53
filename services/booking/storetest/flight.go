package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
)

// testRecordFlightOrder applies catalogue events in every order they can arrive in (twice,
// late, cancellation first) and checks the copy ends as the newest event says, with a
// cancellation final.
func testRecordFlightOrder(t *testing.T, e *env) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 123456000, time.UTC)
	dep1, dep2 := t0.Add(48*time.Hour), t0.Add(50*time.Hour)
	scheduled := func(at time.Time, dep time.Time) booking.Flight {
		return booking.Flight{Number: "FB1", DepartureTime: dep, AnnouncedAt: at}
	}
	cancelled := func(at time.Time) booking.Flight {
		return booking.Flight{Number: "FB1", Cancelled: true, AnnouncedAt: at}
	}
	tests := []struct {
		name      string
		events    []booking.Flight
		departure time.Time
		cancelled bool
	}{
		{"scheduled", []booking.Flight{scheduled(t0, dep1)}, dep1, false},
		{"twice", []booking.Flight{scheduled(t0, dep1), scheduled(t0, dep1)}, dep1, false},
		{"rescheduled", []booking.Flight{scheduled(t0, dep1), scheduled(t0.Add(time.Minute), dep2)}, dep2, false},
		{"reschedule first, old schedule late", []booking.Flight{scheduled(t0.Add(time.Minute), dep2), scheduled(t0, dep1)}, dep2, false},
		{"cancelled", []booking.Flight{scheduled(t0, dep1), cancelled(t0.Add(time.Minute))}, dep1, true},
		{"cancellation first", []booking.Flight{cancelled(t0.Add(time.Minute)), scheduled(t0, dep1)}, time.Time{}, true},
		{"re-announced after cancellation", []booking.Flight{cancelled(t0), scheduled(t0.Add(time.Hour), dep2)}, dep2, true},
	}
	for i, tc := range tests {
		id := int64(100 + i)
		var newest time.Time
		for _, f := range tc.events {
			f.ID = id
			if f.AnnouncedAt.After(newest) {
				newest = f.AnnouncedAt
			}
			if err := e.store.RecordFlight(ctx, f); err != nil {
				t.Fatalf("%s: record: %v", tc.name, err)
			}
		}
		got, err := e.store.Flight(ctx, id)
		if err != nil {
			t.Fatalf("%s: read: %v", tc.name, err)
		}
		if !got.DepartureTime.Equal(tc.departure) || got.Cancelled != tc.cancelled || got.Number != "FB1" || got.ID != id || !got.AnnouncedAt.Equal(newest) {
			t.Errorf("%s: %+v, want departure %v cancelled %v announced %v", tc.name, got, tc.departure, tc.cancelled, newest)
		}
		bookable := booking.CheckFlight(id, got, true, t0) == nil
		if bookable == tc.cancelled {
			t.Errorf("%s: bookable = %v with cancelled = %v", tc.name, bookable, tc.cancelled)
		}
	}
	if _, err := e.store.Flight(ctx, 1); !errors.Is(err, booking.ErrFlightNotFound) {
		t.Fatalf("unknown flight: %v, want ErrFlightNotFound", err)
	}
}
