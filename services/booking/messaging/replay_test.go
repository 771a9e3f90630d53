package messaging_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

// TestSagaDuplicatesAndReplay runs a saga in which every message is handled twice at the same
// time (by its live durable consumer and by a second, plain subscriber calling the same
// handler), then replays both streams from their first message into every handler. The
// databases must end exactly as they were before the replay, and the saga's outcome must be
// the one a single delivery gives.
func TestSagaDuplicatesAndReplay(t *testing.T) {
	t.Parallel()
	s := start(t, booking.Rules{HoldTTL: 10 * time.Minute, PendingTimeout: 2 * time.Minute})
	s.duplicateEveryMessage(t)
	ctx := context.Background()
	f := s.flight(t, 20)

	ids := make([]string, 30)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			b, err := s.bookings.Create(ctx, fmt.Sprintf("u%d", i), f, 1)
			if err != nil {
				t.Errorf("create: %v", err)
			}
			ids[i] = b.ID
		})
	}
	wg.Wait()
	await(t, "every booking to leave PENDING", func() bool { return statuses(t, s, ids)[booking.Pending] == 0 })
	if got := statuses(t, s, ids); got[booking.Held] != 20 || got[booking.Rejected] != 10 {
		t.Fatalf("statuses %v, want 20 HELD and 10 REJECTED", got)
	}

	// Move the held bookings on: pay five, cancel three (one of them after paying), expire two.
	var held []string
	for _, id := range ids {
		if b, _ := s.bookings.Get(ctx, id); b.Status == booking.Held {
			held = append(held, id)
		}
	}
	for _, id := range held[:5] {
		s.pay(t, id)
	}
	for _, id := range held[4:7] {
		_, err := s.bookings.Apply(ctx, id, booking.Cancel{})
		testenv.Fatal(t, "cancel", err)
	}
	late := s.withClock(func() time.Time { return time.Now().Add(11 * time.Minute) })
	for _, id := range held[7:9] {
		_, err := late.Apply(ctx, id, booking.Expire{})
		testenv.Fatal(t, "expire", err)
	}
	// 4 confirmed (sold), 11 still held; 5 seats released by cancel and expiry.
	await(t, "seats sold, held and released", func() bool {
		avail, h, sold := s.seats(t, f)
		return avail == 5 && h == 11 && sold == 4
	})
	await(t, "the last replies in the bookings' histories", func() bool {
		for _, id := range held[:9] {
			hist, err := s.bookings.History(ctx, id)
			testenv.Fatal(t, "history", err)
			if c := hist[len(hist)-1].Cause; c != "seats_released" && c != "seats_confirmed" {
				return false
			}
		}
		return true
	})
	s.awaitQuiet(t)
	before := s.checksums(t)

	n := s.replayAll(t)
	if n < 30+30+5+5 { // hold requests and their replies, confirms, releases at least
		t.Fatalf("replayed only %d messages", n)
	}
	s.awaitQuiet(t)
	if after := s.checksums(t); !maps.Equal(before, after) {
		for table, sum := range before {
			if after[table] != sum {
				t.Errorf("table %s changed by the replay", table)
			}
		}
		t.Fatalf("replaying %d messages changed the state", n)
	}
	t.Logf("replayed %d messages; %d tables unchanged", n, len(before))
}

// duplicateEveryMessage subscribes to every route's subject with a plain NATS subscription
// that hands each message to the route's handler, so each message is handled twice,
// concurrently with its live durable consumer.
func (s *system) duplicateEveryMessage(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range s.routes {
		sub, err := s.nc.Subscribe(r.Subject, func(m *nats.Msg) {
			d := consumer.Delivery{ID: m.Header.Get(nats.MsgIdHdr), Subject: m.Subject, Header: m.Header, Data: m.Data, Attempt: 1}
			wg.Go(func() {
				// As JetStream would, try again after a failure (two handlers racing for one
				// booking row may deadlock; the loser's transaction rolls back).
				var err error
				for range 5 {
					if err = consumer.Invoke(ctx, r.Handler, d); err == nil || ctx.Err() != nil {
						return
					}
				}
				t.Errorf("duplicate of %s on %s: %v", d.ID, r.Name, err)
			})
		})
		testenv.Fatal(t, "subscribe", err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// replayAll reads both streams from the start with ordered consumers, which leave the live
// durables alone, and hands every message to the handler of the route it belongs to. It
// returns how many messages were handled.
func (s *system) replayAll(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	for _, r := range s.routes {
		stream, err := s.js.Stream(ctx, r.Stream)
		testenv.Fatal(t, "stream", err)
		// The stream's count of the route's subject is the replay's end: the live system is
		// quiet, so nothing is added meanwhile.
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(r.Subject))
		testenv.Fatal(t, "stream info", err)
		count := info.State.Subjects[r.Subject]
		if count == 0 {
			continue
		}
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{r.Subject}})
		testenv.Fatal(t, "ordered consumer", err)
		for range count {
			m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			testenv.Fatal(t, "next "+r.Name, err)
			md, err := m.Metadata()
			testenv.Fatal(t, "metadata", err)
			d := consumer.Delivery{
				ID: m.Headers().Get(nats.MsgIdHdr), Subject: m.Subject(), Header: m.Headers(), Data: m.Data(),
				Attempt: 1, Stream: md.Stream, Sequence: md.Sequence.Stream, Time: md.Timestamp,
			}
			testenv.Fatal(t, "replay "+r.Name+" "+d.ID, consumer.Invoke(ctx, r.Handler, d))
			n++
		}
	}
	return n
}

// awaitQuiet waits until both outboxes are drained.
func (s *system) awaitQuiet(t *testing.T) {
	t.Helper()
	await(t, "both outboxes drained", func() bool {
		for _, r := range s.relays {
			st, err := r.Stats(context.Background())
			testenv.Fatal(t, "outbox stats", err)
			if st.Pending > 0 {
				return false
			}
		}
		return true
	})
}

// checksums returns a hash of every table of both databases, rows in a fixed order.
func (s *system) checksums(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	sums := map[string]string{}
	rows, err := s.pg.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	testenv.Fatal(t, "pg tables", err)
	var tables []string
	for rows.Next() {
		var name string
		testenv.Fatal(t, "scan", rows.Scan(&name))
		tables = append(tables, name)
	}
	testenv.Fatal(t, "pg tables", rows.Err())
	for _, table := range tables {
		var sum string
		testenv.Fatal(t, "pg checksum "+table, s.pg.QueryRow(ctx, fmt.Sprintf(
			`SELECT coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '') FROM %q t`, table)).Scan(&sum))
		sums["postgres."+table] = sum
	}

	db := s.db
	mrows, err := db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1`)
	testenv.Fatal(t, "mysql tables", err)
	tables = tables[:0]
	for mrows.Next() {
		var name string
		testenv.Fatal(t, "scan", mrows.Scan(&name))
		tables = append(tables, name)
	}
	testenv.Fatal(t, "mysql tables", mrows.Err())
	for _, table := range tables {
		sums["mysql."+table] = mysqlTableHash(t, db, table)
	}
	return sums
}

// mysqlTableHash hashes every row of table, each row's columns as text, rows sorted.
func mysqlTableHash(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT * FROM `"+table+"`")
	testenv.Fatal(t, "select "+table, err)
	defer rows.Close()
	cols, err := rows.Columns()
	testenv.Fatal(t, "columns", err)
	var lines []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		testenv.Fatal(t, "scan "+table, rows.Scan(ptrs...))
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = string(v)
		}
		lines = append(lines, strings.Join(parts, "\x1f"))
	}
	testenv.Fatal(t, "rows "+table, rows.Err())
	slices.Sort(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// pay confirms a held booking as a successful payment through the API would.
func (s *system) pay(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	b, err := s.bookings.Get(ctx, id)
	testenv.Fatal(t, "get", err)
	err = s.bookings.InTx(ctx, func(tx booking.Tx) error {
		_, err := tx.ConfirmPayment(ctx, booking.Payment{
			ID: uuid.Must(uuid.NewV7()).String(), BookingID: id, Amount: b.Total, Currency: b.Currency, GatewayRef: "test-" + id,
		})
		return err
	})
	testenv.Fatal(t, "pay "+id, err)
}
