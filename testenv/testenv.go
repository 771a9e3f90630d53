// Package testenv gives each integration test its own freshly created PostgreSQL database,
// MySQL database or NATS namespace on the real servers, and removes it when the test ends, so
// tests run in parallel and leave nothing behind.
//
// The servers default to the ones on a developer machine; FLIGHTBOOK_TEST_POSTGRES_URL,
// FLIGHTBOOK_TEST_MYSQL_DSN and FLIGHTBOOK_TEST_NATS_URL point elsewhere.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Name returns a fresh lower-case identifier, valid as a database name, a NATS subject token
// and (upper-cased) a stream name prefix.
func Name() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Postgres creates a new database and returns its pgx URL. The database is dropped when the
// test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	base := env("FLIGHTBOOK_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	ctx, cancel := cleanupCtx()
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testenv: connect to PostgreSQL at %s: %v", base, err)
	}
	defer conn.Close(ctx)
	name := Name()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", base, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MySQL creates a new database and returns its go-sql-driver DSN (with parseTime). The
// database is dropped when the test ends.
func MySQL(t testing.TB) string {
	t.Helper()
	base := env("FLIGHTBOOK_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/")
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("testenv: parse MySQL DSN %s: %v", base, err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: open MySQL: %v", err)
	}
	defer db.Close()
	name := Name()
	ctx, cancel := cleanupCtx()
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer db.Close()
		ctx, cancel := cleanupCtx()
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return cfg.FormatDSN()
}

// NATS returns the URL of the JetStream server and a fresh namespace for the test. Streams the
// test creates must be named with the upper-cased namespace as prefix (events.Topology does
// this); every stream whose name starts with it is deleted when the test ends.
func NATS(t testing.TB) (natsURL, namespace string) {
	t.Helper()
	natsURL = env("FLIGHTBOOK_TEST_NATS_URL", nats.DefaultURL)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("testenv: connect to NATS at %s: %v", natsURL, err)
	}
	err = keepStreamStore(nc)
	nc.Close()
	if err != nil {
		t.Fatalf("testenv: NATS at %s: %v", natsURL, err)
	}
	namespace = Name()
	prefix := strings.ToUpper(namespace)
	t.Cleanup(func() {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Errorf("testenv: delete streams of %s: %v", namespace, err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("testenv: delete streams of %s: %v", namespace, err)
			return
		}
		ctx, cancel := cleanupCtx()
		defer cancel()
		names := js.StreamNames(ctx)
		var mine []string
		for n := range names.Name() {
			if strings.HasPrefix(n, prefix) {
				mine = append(mine, n)
			}
		}
		if err := names.Err(); err != nil {
			t.Errorf("testenv: list streams: %v", err)
		}
		for _, n := range mine {
			if err := js.DeleteStream(ctx, n); err != nil {
				t.Errorf("testenv: delete stream %s: %v", n, err)
			}
		}
	})
	return natsURL, namespace
}

// anchorStream is an empty stream kept on the test server for good. nats-server 2.9 removes
// the account's stream directory when its last stream is deleted, and a stream created by a
// parallel test at that moment fails with "error creating store for stream" (seen in CI when
// one test's cleanup deleted the last streams). One stream that is never deleted keeps the
// directory.
const anchorStream = "FLIGHTBOOK_TEST_ANCHOR"

func keepStreamStore(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := cleanupCtx()
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: anchorStream, Subjects: []string{"_flightbook_test_anchor"}, Storage: jetstream.FileStorage,
		Description: "flightbook tests: keeps the account's stream store; holds nothing",
	})
	if err != nil {
		return fmt.Errorf("anchor stream %s: %w", anchorStream, err)
	}
	return nil
}

// Fatal is a helper for setup errors: it fails t with what was being done.
func Fatal(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}

// SQLite returns the path of a new, not yet created SQLite database file in the test's
// temporary directory, which is removed when the test ends.
func SQLite(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), Name()+".db")
}
