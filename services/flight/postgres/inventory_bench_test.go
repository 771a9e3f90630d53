package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/postgres"
	"github.com/flightbook/flightbook/testenv"
)

// benchClients is how many goroutines per core hammer the one flight: with the pool at 20
// connections, 8 per core on this 2-core machine keeps every connection busy and the flight
// row's lock contended, as a popular flight's would be.
const benchClients = 8

// hotFlight seeds a flight with more seats than any run can hold, so every hold is granted
// and the figure measures the lock and the commit, not rejections.
func hotFlight(b *testing.B) (*postgres.Inventory, int64) {
	b.Helper()
	pool := newInventoryTestDB(b)
	return postgres.NewInventory(pool), seedFlight(b, pool, 50_000_000, time.Now().Add(24*time.Hour), "scheduled")
}

func reportRate(b *testing.B, n int, start time.Time, unit string) {
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), unit)
}

// BenchmarkHold is the hot-flight path as the saga runs it today: one hold, one transaction,
// one lock of the flight row, one commit.
func BenchmarkHold(b *testing.B) {
	inv, f := hotFlight(b)
	b.SetParallelism(benchClients)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, err := inv.Hold(context.Background(), flight.HoldRequest{BookingID: uuid.NewString(), FlightID: f, Seats: 1})
			if err != nil || !h.Held() {
				b.Errorf("hold: %+v %v", h, err)
				return
			}
		}
	})
	reportRate(b, b.N, start, "holds/s")
}

// BenchmarkRowUpdate is the ceiling for one hold per transaction: single-statement commits
// that decrement the one flight row. A hold does more than this under the same lock, so it
// cannot beat it without putting several holds in one commit.
func BenchmarkRowUpdate(b *testing.B) {
	pool := newInventoryTestDB(b)
	f := seedFlight(b, pool, 50_000_000, time.Now().Add(24*time.Hour), "scheduled")
	b.SetParallelism(benchClients)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// held_seats moves too: the balance CHECK refuses a bare decrement.
			_, err := pool.Exec(context.Background(),
				`UPDATE flights SET available_seats = available_seats - 1, held_seats = held_seats + 1 WHERE id = $1`, f)
			if err != nil {
				b.Errorf("update: %v", err)
				return
			}
		}
	})
	reportRate(b, b.N, start, "updates/s")
	b.StopTimer()
	c, err := postgres.NewInventory(pool).SeatCounts(context.Background(), f)
	testenv.Fatal(b, "seat counts", err)
	if c.Held != b.N {
		b.Fatalf("%d updates committed, %d counted", b.N, c.Held)
	}
}

// BenchmarkHoldBatch is group commit: each client hands over its queued holds for the hot
// flight together, and HoldBatch decides them under one lock of the row and one commit.
// Every hold is still its own booking, recorded and idempotent on its own.
func BenchmarkHoldBatch(b *testing.B) {
	for _, size := range []int{10, 50} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			inv, f := hotFlight(b)
			b.SetParallelism(benchClients)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				queue := make([]flight.HoldRequest, 0, size)
				flush := func() bool {
					hs, err := inv.HoldBatch(context.Background(), queue)
					for _, h := range hs {
						if !h.Held() {
							err = fmt.Errorf("not held: %+v", h)
						}
					}
					if err != nil {
						b.Errorf("hold batch: %v", err)
						return false
					}
					queue = queue[:0]
					return true
				}
				for pb.Next() {
					queue = append(queue, flight.HoldRequest{BookingID: uuid.NewString(), FlightID: f, Seats: 1})
					if len(queue) == size && !flush() {
						return
					}
				}
				if len(queue) > 0 {
					flush()
				}
			})
			reportRate(b, b.N, start, "holds/s")
		})
	}
}

// BenchmarkSagaTx is one saga handler's transaction as the flight service runs it for a lone
// message, one after another: claim the message, hold one seat (or confirm or release a
// held one), queue the reply, commit. It
// reports the round trips to PostgreSQL each took, counted by a pgx tracer, which unlike the
// time per transaction does not depend on how busy the machine is.
func BenchmarkSagaTx(b *testing.B) {
	for _, op := range []string{"hold", "prepared-hold", "confirm", "prepared-confirm", "release", "prepared-release"} {
		b.Run(op, func(b *testing.B) {
			ctx := context.Background()
			pool, trips := tracedTestDB(b)
			inv := postgres.NewInventory(pool)
			f := seedFlight(b, pool, 50_000_000, time.Now().Add(24*time.Hour), "scheduled")
			reply := func(id string) outbox.Message {
				return outbox.Message{ID: uuid.NewString(), Subject: "flight.saga.seats-held", Data: []byte(`{}`), AggregateID: id}
			}
			// sagaTx claims a message for route, runs step for booking and queues its reply.
			// With prepare, the transaction first names the booking to its claim, as the
			// handlers do (PrepareHolds, PrepareConfirms, PrepareReleases).
			sagaTx := func(route string, prepare func(tx *postgres.InventoryTx, booking string), step func(tx *postgres.InventoryTx, booking string) error) func(string) error {
				return func(booking string) error {
					return inv.InTx(ctx, func(tx *postgres.InventoryTx) error {
						if prepare != nil {
							prepare(tx, booking)
						}
						if _, err := tx.ClaimAll(ctx, route, []string{uuid.NewString()}); err != nil {
							return err
						}
						if err := step(tx, booking); err != nil {
							return err
						}
						return tx.Queue(ctx, reply(booking))
					})
				}
			}
			holdOf := func(booking string) []flight.HoldRequest {
				return []flight.HoldRequest{{BookingID: booking, FlightID: f, Seats: 1}}
			}
			holdStep := func(tx *postgres.InventoryTx, booking string) error {
				_, err := tx.HoldBatch(ctx, holdOf(booking))
				return err
			}
			confirmStep := func(tx *postgres.InventoryTx, booking string) error {
				_, err := tx.Confirm(ctx, booking)
				return err
			}
			releaseStep := func(tx *postgres.InventoryTx, booking string) error {
				_, err := tx.Release(ctx, booking, f)
				return err
			}
			hold := sagaTx("flight.seat-hold", nil, holdStep)
			ops := map[string]func(string) error{
				"hold": hold,
				"prepared-hold": sagaTx("flight.seat-hold", func(tx *postgres.InventoryTx, booking string) {
					tx.PrepareHolds(holdOf(booking))
				}, holdStep),
				"confirm": sagaTx("flight.seats-confirm", nil, confirmStep),
				"prepared-confirm": sagaTx("flight.seats-confirm", func(tx *postgres.InventoryTx, booking string) {
					tx.PrepareConfirms([]string{booking})
				}, confirmStep),
				"release": sagaTx("flight.seat-release", nil, releaseStep),
				"prepared-release": sagaTx("flight.seat-release", func(tx *postgres.InventoryTx, booking string) {
					tx.PrepareReleases([]string{booking})
				}, releaseStep),
			}
			bookings := make([]string, b.N+1)
			for i := range bookings {
				bookings[i] = uuid.NewString()
				if !strings.HasSuffix(op, "hold") {
					testenv.Fatal(b, "hold", hold(bookings[i]))
				}
			}
			run := ops[op]
			// The first transaction prepares the statements, which later ones reuse.
			testenv.Fatal(b, op, run(bookings[b.N]))
			trips.n.Store(0)
			b.ResetTimer()
			for i := range b.N {
				if err := run(bookings[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(trips.n.Load())/float64(b.N), "round-trips/op")
		})
	}
}

// tracedTestDB is newInventoryTestDB with a pool whose round trips are counted.
func tracedTestDB(tb testing.TB) (*pgxpool.Pool, *roundTrips) {
	tb.Helper()
	cfg := newInventoryTestDB(tb).Config()
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Fatal(tb, "pool", err)
	tb.Cleanup(pool.Close)
	return pool, trips
}

// roundTrips counts what a pgx connection sends to the server and waits for: each query on
// its own, each batch, each prepare.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (r *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
