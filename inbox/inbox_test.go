package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/inbox"
	"github.com/flightbook/flightbook/testenv"
)

// db is one database with the inbox table and a counter table, and a handler-like step that
// claims a message and bumps the counter in one transaction, as a service's handler would.
type db struct {
	name string
	// process claims (consumer, id) and, the first time, adds 1 to the counter; if fail is
	// set it returns an error instead of committing.
	process func(ctx context.Context, consumer, id string, fail bool) (first bool, err error)
	counter func(t *testing.T) int
	// age sets the processed_at of an entry back by d.
	age     func(t *testing.T, consumer, id string, d time.Duration)
	cleanup func(ctx context.Context, retention time.Duration) (int64, error)
	entries func(t *testing.T) int
}

// upSQL returns the goose Up section of a migration file.
func upSQL(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	testenv.Fatal(t, "read migration", err)
	up, _, found := strings.Cut(string(b), "-- +goose Down")
	require.True(t, found, "no Down section in %s", path)
	return up
}

var errRollback = errors.New("handler failed after claiming")

func postgres(t *testing.T) db {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	testenv.Fatal(t, "connect", err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, upSQL(t, "../services/flight/postgres/migrations/00004_inbox.sql"))
	testenv.Fatal(t, "migrate", err)
	_, err = pool.Exec(ctx, `CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)`)
	testenv.Fatal(t, "counter table", err)
	return db{
		name: "postgres",
		process: func(ctx context.Context, consumer, id string, fail bool) (bool, error) {
			var first bool
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				var err error
				if first, err = inbox.ClaimPostgres(ctx, tx, consumer, id); err != nil || !first {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE counter SET n = n + 1 WHERE id = 1`); err != nil {
					return err
				}
				if fail {
					return errRollback
				}
				return nil
			})
			return first, err
		},
		counter: func(t *testing.T) int {
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n))
			return n
		},
		age: func(t *testing.T, consumer, id string, d time.Duration) {
			_, err := pool.Exec(ctx, `UPDATE inbox SET processed_at = processed_at - make_interval(secs => $3) WHERE consumer = $1 AND msg_id = $2`,
				consumer, id, d.Seconds())
			require.NoError(t, err)
		},
		cleanup: func(ctx context.Context, retention time.Duration) (int64, error) {
			return inbox.CleanupPostgres(ctx, pool, retention)
		},
		entries: func(t *testing.T) int {
			var n int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&n))
			return n
		},
	}
}

func mysql(t *testing.T) db {
	t.Helper()
	ctx := context.Background()
	sqldb, err := sql.Open("mysql", testenv.MySQL(t))
	testenv.Fatal(t, "connect", err)
	t.Cleanup(func() { sqldb.Close() })
	_, err = sqldb.ExecContext(ctx, upSQL(t, "../services/booking/mysql/migrations/00003_inbox.sql"))
	testenv.Fatal(t, "migrate", err)
	for _, q := range []string{`CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL) ENGINE = InnoDB`, `INSERT INTO counter VALUES (1, 0)`} {
		_, err = sqldb.ExecContext(ctx, q)
		testenv.Fatal(t, "counter table", err)
	}
	return db{
		name: "mysql",
		process: func(ctx context.Context, consumer, id string, fail bool) (first bool, err error) {
			tx, err := sqldb.BeginTx(ctx, nil)
			if err != nil {
				return false, err
			}
			defer tx.Rollback()
			if first, err = inbox.ClaimMySQL(ctx, tx, consumer, id); err != nil || !first {
				return first, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1 WHERE id = 1`); err != nil {
				return first, err
			}
			if fail {
				return first, errRollback
			}
			return first, tx.Commit()
		},
		counter: func(t *testing.T) int {
			var n int
			require.NoError(t, sqldb.QueryRowContext(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n))
			return n
		},
		age: func(t *testing.T, consumer, id string, d time.Duration) {
			_, err := sqldb.ExecContext(ctx, `UPDATE inbox SET processed_at = processed_at - INTERVAL ? MICROSECOND WHERE consumer = ? AND msg_id = ?`,
				d.Microseconds(), consumer, id)
			require.NoError(t, err)
		},
		cleanup: func(ctx context.Context, retention time.Duration) (int64, error) {
			return inbox.CleanupMySQL(ctx, sqldb, retention)
		},
		entries: func(t *testing.T) int {
			var n int
			require.NoError(t, sqldb.QueryRowContext(ctx, `SELECT count(*) FROM inbox`).Scan(&n))
			return n
		},
	}
}

// sqliteInbox is the inbox table of ClaimSQLite's doc comment, with the test's counter table.
// No service has SQLite migrations of its own in this package's reach, so the test keeps the
// table the doc comment promises.
const sqliteInbox = `
CREATE TABLE inbox (
    consumer     TEXT NOT NULL,
    msg_id       TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (consumer, msg_id)
) WITHOUT ROWID;
CREATE INDEX inbox_processed_at ON inbox (processed_at);
CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO counter VALUES (1, 0);
`

func sqlite(t *testing.T) db {
	t.Helper()
	ctx := context.Background()
	// The DSN the services use: WAL, a busy timeout so that concurrent handlers queue for the
	// write lock, and IMMEDIATE transactions so that they take it at BEGIN and never deadlock
	// upgrading a read lock.
	sqldb, err := sql.Open("sqlite", "file:"+testenv.SQLite(t)+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)"+
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { sqldb.Close() })
	_, err = sqldb.ExecContext(ctx, sqliteInbox)
	testenv.Fatal(t, "migrate", err)
	return db{
		name: "sqlite",
		process: func(ctx context.Context, consumer, id string, fail bool) (first bool, err error) {
			tx, err := sqldb.BeginTx(ctx, nil)
			if err != nil {
				return false, err
			}
			defer tx.Rollback()
			if first, err = inbox.ClaimSQLite(ctx, tx, consumer, id); err != nil || !first {
				return first, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1 WHERE id = 1`); err != nil {
				return first, err
			}
			if fail {
				return first, errRollback
			}
			return first, tx.Commit()
		},
		counter: func(t *testing.T) int {
			var n int
			require.NoError(t, sqldb.QueryRowContext(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n))
			return n
		},
		age: func(t *testing.T, consumer, id string, d time.Duration) {
			_, err := sqldb.ExecContext(ctx, `UPDATE inbox SET processed_at = strftime('%Y-%m-%d %H:%M:%f', processed_at, ?)
				WHERE consumer = ? AND msg_id = ?`, fmt.Sprintf("-%.3f seconds", d.Seconds()), consumer, id)
			require.NoError(t, err)
		},
		cleanup: func(ctx context.Context, retention time.Duration) (int64, error) {
			return inbox.CleanupSQLite(ctx, sqldb, retention)
		},
		entries: func(t *testing.T) int {
			var n int
			require.NoError(t, sqldb.QueryRowContext(ctx, `SELECT count(*) FROM inbox`).Scan(&n))
			return n
		},
	}
}

// forEachDB runs test against PostgreSQL, MySQL and SQLite, each in a fresh database.
func forEachDB(t *testing.T, test func(t *testing.T, d db)) {
	for name, open := range map[string]func(*testing.T) db{"postgres": postgres, "mysql": mysql, "sqlite": sqlite} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, open(t))
		})
	}
}

func TestSecondClaimChangesNothing(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		ctx := context.Background()
		first, err := d.process(ctx, "seat-hold-requested", "evt-1", false)
		require.NoError(t, err)
		assert.True(t, first)
		first, err = d.process(ctx, "seat-hold-requested", "evt-1", false)
		require.NoError(t, err)
		assert.False(t, first, "second claim of the same message")
		assert.Equal(t, 1, d.counter(t))

		// Another consumer processing the same message is a different claim.
		first, err = d.process(ctx, "seats-released", "evt-1", false)
		require.NoError(t, err)
		assert.True(t, first)
		assert.Equal(t, 2, d.counter(t))
	})
}

func TestRolledBackClaimIsForgotten(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		ctx := context.Background()
		_, err := d.process(ctx, "c", "evt-1", true)
		require.ErrorIs(t, err, errRollback)
		assert.Equal(t, 0, d.counter(t))
		first, err := d.process(ctx, "c", "evt-1", false)
		require.NoError(t, err)
		assert.True(t, first, "a claim rolled back with its change must not count")
		assert.Equal(t, 1, d.counter(t))
	})
}

func TestConcurrentDeliveriesApplyOnce(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		ctx := context.Background()
		const n = 8
		var wg sync.WaitGroup
		firsts := make(chan bool, n)
		for range n {
			wg.Go(func() {
				first, err := d.process(ctx, "c", "evt-1", false)
				assert.NoError(t, err)
				firsts <- first
			})
		}
		wg.Wait()
		close(firsts)
		count := 0
		for f := range firsts {
			if f {
				count++
			}
		}
		assert.Equal(t, 1, count, "claims that saw themselves first")
		assert.Equal(t, 1, d.counter(t))
	})
}

func TestClaimRejectsInvalidIDs(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		ctx := context.Background()
		for _, c := range []struct{ consumer, id string }{
			{"", "evt-1"},
			{"c", ""},
			{strings.Repeat("c", 151), "evt-1"},
			{"c", strings.Repeat("é", 256)},
		} {
			_, err := d.process(ctx, c.consumer, c.id, false)
			assert.ErrorIs(t, err, inbox.ErrInvalid, "consumer %d chars, id %d chars", len(c.consumer), len(c.id))
		}
		first, err := d.process(ctx, "c", strings.Repeat("é", 255), false)
		require.NoError(t, err, "the longest allowed id")
		assert.True(t, first)
	})
}

func TestCleanupDeletesOnlyExpiredEntries(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		ctx := context.Background()
		for _, id := range []string{"old-1", "old-2", "recent"} {
			_, err := d.process(ctx, "c", id, false)
			require.NoError(t, err)
		}
		d.age(t, "c", "old-1", inbox.DefaultRetention+time.Hour)
		d.age(t, "c", "old-2", inbox.DefaultRetention+time.Hour)
		d.age(t, "c", "recent", inbox.DefaultRetention-time.Hour)

		n, err := d.cleanup(ctx, 0)
		require.NoError(t, err)
		assert.EqualValues(t, 2, n)
		assert.Equal(t, 1, d.entries(t))
		first, err := d.process(ctx, "c", "recent", false)
		require.NoError(t, err)
		assert.False(t, first, "the recent entry was kept")
	})
}

// TestRedeliveredAndReplayedMessagesChangeNothing runs the inbox behind a real consumer: the
// handler commits its change and then fails (as if the process died before acking), so
// JetStream redelivers the message; afterwards the same delivery is fed to the handler again,
// as the replay tool does. The counter moves once.
func TestRedeliveredAndReplayedMessagesChangeNothing(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, d db) {
		url, ns := testenv.NATS(t)
		nc, err := nats.Connect(url)
		testenv.Fatal(t, "connect", err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		testenv.Fatal(t, "jetstream", err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream := strings.ToUpper(ns) + "_BOOKING"
		for name, subj := range map[string]string{stream: ns + ".booking.>", strings.ToUpper(ns) + "_DLQ": ns + ".dlq.>"} {
			_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.MemoryStorage})
			testenv.Fatal(t, "stream", err)
		}

		var mu sync.Mutex
		var deliveries []consumer.Delivery
		handler := func(ctx context.Context, m consumer.Delivery) error {
			mu.Lock()
			deliveries = append(deliveries, m)
			mu.Unlock()
			if _, err := d.process(ctx, "seat-hold-requested", m.ID, false); err != nil {
				return err
			}
			if m.Attempt == 1 {
				return errors.New("lost the ack after committing")
			}
			return nil
		}
		r, err := consumer.New(nc, js, "flight", ns, consumer.Config{
			AckWait: 5 * time.Second, MaxDeliver: 3, Backoff: []time.Duration{20 * time.Millisecond},
		}, slog.New(slog.DiscardHandler))
		testenv.Fatal(t, "router", err)
		r.Handle("seat-hold-requested", stream, ns+".booking.seats.hold-requested", handler)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		defer func() { cancel(); assert.NoError(t, <-done) }()
		<-r.Running()

		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: ns + ".booking.seats.hold-requested", Data: []byte(`{}`)},
			jetstream.WithMsgID("evt-42"))
		testenv.Fatal(t, "publish", err)

		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(deliveries) == 2
		}, 10*time.Second, 10*time.Millisecond, "redelivery")
		assert.Equal(t, 1, d.counter(t), "after the redelivery")

		mu.Lock()
		replay := deliveries[1]
		mu.Unlock()
		require.NoError(t, consumer.Invoke(ctx, handler, replay))
		assert.Equal(t, 1, d.counter(t), "after the replay")
		assert.Equal(t, "evt-42", replay.ID)
	})
}

func ExampleClaimPostgres() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return
	}
	handle := func(ctx context.Context, d consumer.Delivery) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			first, err := inbox.ClaimPostgres(ctx, tx, "seat-hold-requested", d.ID)
			if err != nil || !first {
				return err // an error retries; a repeat is acked and changes nothing
			}
			_, err = tx.Exec(ctx, `UPDATE flights SET available = available - 1 WHERE id = $1`, 1)
			return err
		})
	}
	_ = handle // a consumer.Router would run it: r.Handle("seat-hold-requested", stream, subject, handle)
}

func TestClaimAllMySQLStatement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pairs     [][2]string
		wantQuery string
		wantArgs  []any
		wantErr   bool
	}{
		{name: "one", pairs: [][2]string{{"c", "m1"}},
			wantQuery: "INSERT IGNORE INTO inbox (consumer, msg_id) VALUES (?, ?)", wantArgs: []any{"c", "m1"}},
		{name: "several, in order", pairs: [][2]string{{"c", "m1"}, {"d", "m2"}, {"c", "m3"}},
			wantQuery: "INSERT IGNORE INTO inbox (consumer, msg_id) VALUES (?, ?), (?, ?), (?, ?)",
			wantArgs:  []any{"c", "m1", "d", "m2", "c", "m3"}},
		{name: "none", wantErr: true},
		{name: "an invalid one among them", pairs: [][2]string{{"c", "m1"}, {"c", ""}}, wantErr: true},
		{name: "a consumer too long", pairs: [][2]string{{strings.Repeat("c", 151), "m1"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, args, err := inbox.ClaimAllMySQLStatement(tc.pairs...)
			if tc.wantErr {
				assert.ErrorIs(t, err, inbox.ErrInvalid)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantQuery, q)
			assert.Equal(t, tc.wantArgs, args)
		})
	}
}
