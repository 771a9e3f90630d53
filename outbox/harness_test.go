package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/flightbook/flightbook/migrate"
	"github.com/flightbook/flightbook/testenv"
	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"
)

// harness is one outbox database, with what the shared tests need to drive it. Dialect-specific
// SQL lives here so that every test runs unchanged against both stores.
type harness struct {
	name string
	// add commits msgs in one transaction.
	add func(ctx context.Context, msgs ...Message) error
	// addOpen adds msgs in a transaction it leaves open until commit is called.
	addOpen func(ctx context.Context, msgs ...Message) (commit func() error, err error)
	// newRelay returns a relay on this database.
	newRelay func(js jetstream.JetStream, cfg RelayConfig) *Relay
	// count returns the number of outbox rows matching a dialect-neutral WHERE clause.
	count func(ctx context.Context, where string) (int64, error)
	// age moves created_at and published_at of the rows matching a dialect-neutral WHERE
	// clause back by d.
	age func(ctx context.Context, where string, d time.Duration) error
	// kill ends a database session by its id (on SQLite, deletes the lease of that owner).
	kill func(ctx context.Context, session int64) error
	// serialWriters says the database runs one write transaction at a time (SQLite): an open
	// producer transaction blocks every other producer until it ends.
	serialWriters bool
	// db is the database/sql pool of the MySQL and SQLite stores, shared by the relay and the
	// producers (nil on PostgreSQL), for benchmarks that make them compete for connections.
	db *sql.DB
}

// stores lists the outbox's databases; every suite test runs once per entry.
var stores = []struct {
	name string
	open func(testing.TB) *harness
}{
	{"mysql", openMySQL("")},
	// As the booking service opens it: the relay then claims in three round trips, not six.
	{"mysql-multi", openMySQL("&multiStatements=true&interpolateParams=true")},
	{"postgres", openPostgres},
	{"sqlite", openSQLite},
}

// forEachStore runs test as a parallel subtest against each store.
func forEachStore(t *testing.T, test func(t *testing.T, h *harness)) {
	t.Helper()
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			test(t, s.open(t))
		})
	}
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// migrationFS holds only this package's migration file from dir, so the tests do not depend on
// the other migrations of the service, which other packages own.
func migrationFS(t testing.TB, dir, file string) fstest.MapFS {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	testenv.Fatal(t, "read migration", err)
	return fstest.MapFS{file: {Data: b}}
}

// openMySQL opens a MySQL store whose DSN ends in params.
func openMySQL(params string) func(testing.TB) *harness {
	return func(t testing.TB) *harness { return openMySQLWith(t, params) }
}

func openMySQLWith(t testing.TB, params string) *harness {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("mysql", testenv.MySQL(t)+params)
	testenv.Fatal(t, "open mysql", err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxIdleConns(16)
	fsys := migrationFS(t, "../services/booking/mysql/migrations", "00002_outbox.sql")
	testenv.Fatal(t, "migrate mysql", migrate.Up(ctx, goose.DialectMySQL, db, fsys, quietLog()))
	return &harness{
		name: "mysql",
		db:   db,
		add: func(ctx context.Context, msgs ...Message) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback() //nolint:errcheck
			if err := AddMySQL(ctx, tx, msgs...); err != nil {
				return err
			}
			return tx.Commit()
		},
		addOpen: func(ctx context.Context, msgs ...Message) (func() error, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			if err := AddMySQL(ctx, tx, msgs...); err != nil {
				_ = tx.Rollback()
				return nil, err
			}
			return tx.Commit, nil
		},
		newRelay: func(js jetstream.JetStream, cfg RelayConfig) *Relay {
			return NewMySQLRelay(db, js, cfg, quietLog())
		},
		count: func(ctx context.Context, where string) (int64, error) {
			var n int64
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE "+where).Scan(&n)
			return n, err
		},
		age: func(ctx context.Context, where string, d time.Duration) error {
			_, err := db.ExecContext(ctx, `UPDATE outbox SET created_at = created_at - INTERVAL ? MICROSECOND,
				published_at = published_at - INTERVAL ? MICROSECOND WHERE `+where, d.Microseconds(), d.Microseconds())
			return err
		},
		kill: func(ctx context.Context, session int64) error {
			_, err := db.ExecContext(ctx, "KILL "+strconv.FormatInt(session, 10))
			return err
		},
	}
}

func openPostgres(t testing.TB) *harness {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	testenv.Fatal(t, "open postgres", err)
	t.Cleanup(pool.Close)
	db := stdlib.OpenDBFromPool(pool)
	fsys := migrationFS(t, "../services/flight/postgres/migrations", "00003_outbox.sql")
	testenv.Fatal(t, "migrate postgres", migrate.Up(ctx, goose.DialectPostgres, db, fsys, quietLog()))
	testenv.Fatal(t, "close migration db", db.Close())
	return &harness{
		name: "postgres",
		add: func(ctx context.Context, msgs ...Message) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return AddPostgres(ctx, tx, msgs...) })
		},
		addOpen: func(ctx context.Context, msgs ...Message) (func() error, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			if err := AddPostgres(ctx, tx, msgs...); err != nil {
				_ = tx.Rollback(ctx)
				return nil, err
			}
			return func() error { return tx.Commit(ctx) }, nil
		},
		newRelay: func(js jetstream.JetStream, cfg RelayConfig) *Relay {
			return NewPostgresRelay(pool, js, cfg, quietLog())
		},
		count: func(ctx context.Context, where string) (int64, error) {
			var n int64
			err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE "+where).Scan(&n)
			return n, err
		},
		age: func(ctx context.Context, where string, d time.Duration) error {
			_, err := pool.Exec(ctx, `UPDATE outbox SET created_at = created_at - $1 * interval '1 microsecond',
				published_at = published_at - $1 * interval '1 microsecond' WHERE `+where, d.Microseconds())
			return err
		},
		kill: func(ctx context.Context, session int64) error {
			_, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1::int)", session)
			return err
		},
	}
}

// sqliteOutboxMigration is the outbox table of AddSQLite's doc comment. The services' SQLite
// migrations hold the same table; the test keeps its own copy so that it depends on no
// service's migration set.
const sqliteOutboxMigration = `-- +goose Up
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id       TEXT NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    headers      TEXT NOT NULL DEFAULT '{}',
    payload      BLOB NOT NULL,
    aggregate_id TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    published_at TEXT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
`

// sqliteDSN opens path the way the services do: WAL so that the relay's reads never wait for a
// writer, a busy timeout so that writers queue for the write lock, and IMMEDIATE transactions
// so that two writers never deadlock upgrading a read lock.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

func openSQLite(t testing.TB) *harness {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", sqliteDSN(testenv.SQLite(t)))
	testenv.Fatal(t, "open sqlite", err)
	t.Cleanup(func() { _ = db.Close() })
	fsys := fstest.MapFS{"00001_outbox.sql": {Data: []byte(sqliteOutboxMigration)}}
	testenv.Fatal(t, "migrate sqlite", migrate.Up(ctx, goose.DialectSQLite3, db, fsys, quietLog()))
	return &harness{
		name: "sqlite",
		add: func(ctx context.Context, msgs ...Message) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback() //nolint:errcheck
			if err := AddSQLite(ctx, tx, msgs...); err != nil {
				return err
			}
			return tx.Commit()
		},
		addOpen: func(ctx context.Context, msgs ...Message) (func() error, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			if err := AddSQLite(ctx, tx, msgs...); err != nil {
				_ = tx.Rollback()
				return nil, err
			}
			return tx.Commit, nil
		},
		newRelay: func(js jetstream.JetStream, cfg RelayConfig) *Relay {
			return NewSQLiteRelay(db, js, cfg, quietLog())
		},
		count: func(ctx context.Context, where string) (int64, error) {
			var n int64
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE "+where).Scan(&n)
			return n, err
		},
		age: func(ctx context.Context, where string, d time.Duration) error {
			_, err := db.ExecContext(ctx, `UPDATE outbox SET created_at = strftime('%Y-%m-%d %H:%M:%f', created_at, ?1),
				published_at = strftime('%Y-%m-%d %H:%M:%f', published_at, ?1) WHERE `+where, sqliteAgo(d))
			return err
		},
		kill: func(ctx context.Context, session int64) error {
			_, err := db.ExecContext(ctx, "DELETE FROM outbox_lock WHERE owner = ?", session)
			return err
		},
		serialWriters: true,
	}
}

// broker is a JetStream connection and the test's stream, which captures ns.>.
type broker struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	ns     string
	stream jetstream.Stream
}

// newBroker connects to url and creates the test's stream (named after ns so that testenv
// deletes it) with a duplicate window, allowing atomic batches if atomic is set.
func newBroker(t testing.TB, url, ns string, atomic bool) *broker {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	testenv.Fatal(t, "connect to NATS", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second), jetstream.WithPublishAsyncMaxPending(4096))
	testenv.Fatal(t, "jetstream", err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       strings.ToUpper(ns) + "_OUTBOX",
		Subjects:   []string{ns + ".>"},
		Storage:    jetstream.FileStorage,
		Duplicates: 10 * time.Minute,

		AllowAtomicPublish: atomic,
	})
	testenv.Fatal(t, "create stream", err)
	return &broker{nc: nc, js: js, ns: ns, stream: s}
}

// sharedBroker is a broker on the machine's NATS server in a fresh namespace.
func sharedBroker(t testing.TB) *broker {
	url, ns := testenv.NATS(t)
	return newBroker(t, url, ns, false)
}

// deployedBroker is a broker on an embedded nats-server of go.mod's version that syncs every
// write, as flightbook's deployment configs and dev mode run JetStream (the machine's server
// may be too old for atomic batches, and does not sync every write). Its stream takes atomic
// batches if atomic is set.
func deployedBroker(t testing.TB, atomic bool) *broker {
	return deployedBrokerWith(t, atomic, server.JSLimitOpts{})
}

// deployedBrokerWith is deployedBroker with the server's JetStream limits set to limits.
func deployedBrokerWith(t testing.TB, atomic bool, limits server.JSLimitOpts) *broker {
	ns := startNATS(t, &server.Options{SyncAlways: true, StoreDir: t.TempDir(), JetStreamLimits: limits})
	return newBroker(t, ns.ClientURL(), testenv.Name(), atomic)
}

// stored is one message as the stream holds it.
type stored struct {
	msgID string
	agg   string
	seq   int
	data  string
	hdr   nats.Header
}

// storedMessages reads the whole stream in order.
func (b *broker) storedMessages(t testing.TB) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := b.stream.Info(ctx)
	testenv.Fatal(t, "stream info", err)
	want := int(info.State.Msgs)
	if want == 0 {
		return nil
	}
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	testenv.Fatal(t, "ordered consumer", err)
	out := make([]stored, 0, want)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		testenv.Fatal(t, "fetch", err)
		got := 0
		for m := range batch.Messages() {
			got++
			h := m.Headers()
			seq, _ := strconv.Atoi(h.Get("seq"))
			out = append(out, stored{msgID: h.Get(jetstream.MsgIDHeader), agg: h.Get("agg"), seq: seq, data: string(m.Data()), hdr: h})
		}
		testenv.Fatal(t, "fetch", batch.Error())
		if got == 0 {
			t.Fatalf("stream holds %d messages, read %d", want, len(out))
		}
	}
	return out
}

// count is the number of messages in the stream.
func (b *broker) count(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := b.stream.Info(ctx)
	testenv.Fatal(t, "stream info", err)
	return int(info.State.Msgs)
}

// events returns n messages for aggregate agg with sequence numbers from, from+1, ...
func events(ns, agg string, from, n int) []Message {
	out := make([]Message, n)
	for i := range out {
		seq := strconv.Itoa(from + i)
		out[i] = Message{
			ID:          uuid.NewString(),
			Subject:     ns + ".booking." + agg,
			Header:      nats.Header{"agg": {agg}, "seq": {seq}, "ce-type": {"test.event.v1"}},
			Data:        []byte(`{"agg":"` + agg + `","seq":` + seq + `}`),
			AggregateID: agg,
		}
	}
	return out
}

// runRelay runs r until the returned stop is called or the test ends; stop waits for Run to
// return.
func runRelay(t testing.TB, r *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("relay run: %v", err)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it returns nil or the timeout passes, then fails with its last error.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drained waits until the outbox has no unpublished rows and the stream holds want messages.
func drained(t testing.TB, h *harness, b *broker, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() error {
		pending, err := h.count(context.Background(), "published_at IS NULL")
		if err != nil {
			return err
		}
		if n := b.count(t); pending != 0 || n != want {
			return fmt.Errorf("%d rows unpublished, stream holds %d of %d", pending, n, want)
		}
		return nil
	})
}

// checkOnceInOrder fails unless msgs holds every id in want exactly once and, per aggregate,
// in increasing seq.
func checkOnceInOrder(t testing.TB, msgs []stored, want int) {
	t.Helper()
	if len(msgs) != want {
		t.Errorf("stream holds %d messages, want %d", len(msgs), want)
	}
	seen := make(map[string]bool, len(msgs))
	last := map[string]int{}
	for _, m := range msgs {
		if seen[m.msgID] {
			t.Errorf("message %s stored twice", m.msgID)
		}
		seen[m.msgID] = true
		if prev, ok := last[m.agg]; ok && m.seq <= prev {
			t.Errorf("aggregate %s: seq %d stored after %d", m.agg, m.seq, prev)
		}
		last[m.agg] = m.seq
	}
}

// embeddedNATS runs a JetStream server in process on port (0 picks one) with its data in dir,
// so a test can stop it and start it again.
func embeddedNATS(t testing.TB, dir string, port int) (*server.Server, int) {
	t.Helper()
	ns := startNATS(t, &server.Options{StoreDir: dir, Port: port})
	return ns, ns.Addr().(*net.TCPAddr).Port
}

// startNATS runs a JetStream server in process with opts, on 127.0.0.1, until the test ends.
func startNATS(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.JetStream, opts.Host, opts.NoSigs, opts.NoLog = true, "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = -1
	}
	ns, err := server.NewServer(opts)
	testenv.Fatal(t, "embedded NATS", err)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}
