package mysql_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	"github.com/flightbook/flightbook/services/booking/storetest"
	"github.com/flightbook/flightbook/testenv"
)

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := mysql.Open(context.Background(), testenv.MySQL(t), 50, slog.New(slog.DiscardHandler))
	testenv.Fatal(t, "open", err)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStore runs the booking.Store contract suite on MySQL.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Adapter {
		db := open(t)
		return storetest.Adapter{DB: db, Open: func(c storetest.Config) booking.Store {
			return mysql.NewStore(db, c.Rules, c.Emit).WithClock(c.Now).WithKeyStaleAfter(c.KeyStaleAfter)
		}}
	})
}

// TestClaimExpiredSkipsLockedRows: a booking whose row another transaction holds (a payment
// or a cancel deciding it) is skipped by the expiry claim rather than waited for, so
// schedulers on several replicas, and the payments they race, never queue behind one another.
func TestClaimExpiredSkipsLockedRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t)
	start := time.Now()
	store := mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil)
	var ids []string
	for range 2 {
		b, err := store.Create(ctx, "alice", 7, 1)
		testenv.Fatal(t, "create", err)
		ids = append(ids, b.ID)
	}
	later := store.WithClock(func() time.Time { return start.Add(time.Hour) })
	err := store.InTx(ctx, func(tx booking.Tx) error {
		// Lock the first booking's row (a no-op note still locks it) and claim meanwhile.
		if _, err := tx.Apply(ctx, ids[0], booking.SeatsConfirmed{}); err != nil {
			return err
		}
		claimed, err := later.ClaimExpired(ctx, 10)
		if err != nil {
			return err
		}
		if !slices.Equal(claimed, ids[1:]) {
			t.Errorf("claimed %v while %s was locked, want %v", claimed, ids[0], ids[1:])
		}
		return nil
	})
	testenv.Fatal(t, "claim", err)
	claimed, err := later.ClaimExpired(ctx, 10)
	if err != nil || !slices.Equal(claimed, ids) {
		t.Fatalf("after the lock: %v %v, want %v", claimed, err, ids)
	}
}

// TestQueuedWritesFailTogether: the writes a transaction queues (booking, history, outbox,
// idempotency key completion) are sent together; when one of them fails, here the outbox
// refusing every row, the whole transaction fails with that statement's error and leaves
// nothing behind, and once the fault is gone the same request writes everything. The pool has
// one connection, so a failed transaction that went back to it still open would show its
// writes to the counts below, and the next START TRANSACTION would commit them.
func TestQueuedWritesFailTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t)
	db.SetMaxOpenConns(1)
	topo := events.Topology{Source: "test/booking"}
	store := mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute},
		bookingmessaging.Emit(topo, outbox.AddMySQL))
	key := booking.Key{UserID: "alice", Key: "k1", Hash: "h1"}
	create := func() error {
		return store.InTx(ctx, func(tx booking.Tx) error {
			if r, err := tx.ClaimKey(ctx, key); err != nil || r != nil {
				return fmt.Errorf("claim: %v %v", r, err)
			}
			b, err := tx.Create(ctx, "alice", 7, 1)
			if err != nil {
				return err
			}
			return tx.CompleteKey(ctx, key, booking.Response{Status: 202, Body: []byte(b.ID)})
		})
	}
	written := func() (rows [4]int) {
		testenv.Fatal(t, "count", db.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM bookings), (SELECT count(*) FROM booking_history),
			(SELECT count(*) FROM outbox), (SELECT count(*) FROM idempotency_keys)`).Scan(&rows[0], &rows[1], &rows[2], &rows[3]))
		return rows
	}

	_, err := db.ExecContext(ctx, `CREATE TRIGGER refuse_all BEFORE INSERT ON outbox FOR EACH ROW
		SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refuse_all'`)
	testenv.Fatal(t, "break outbox", err)
	if err := create(); err == nil || !strings.Contains(err.Error(), "refuse_all") {
		t.Fatalf("create with the outbox refusing: %v, want the outbox's refusal", err)
	}
	if w := written(); w != [4]int{} {
		t.Fatalf("failed transaction left bookings, history, outbox, keys = %v", w)
	}

	_, err = db.ExecContext(ctx, `DROP TRIGGER refuse_all`)
	testenv.Fatal(t, "mend outbox", err)
	testenv.Fatal(t, "create", create())
	if w := written(); w != [4]int{1, 1, 1, 1} {
		t.Fatalf("bookings, history, outbox, keys = %v, want one each", w)
	}
	var status string
	testenv.Fatal(t, "key", db.QueryRowContext(ctx, `SELECT status FROM idempotency_keys`).Scan(&status))
	if status != "done" {
		t.Fatalf("idempotency key %s, want done", status)
	}
}

// TestDeadConnectionIsReplaced: a transaction takes its connection with sql.DB.Conn, not
// BeginTx, so it must still get the pool's check of an idle connection the server has closed
// (a restart, its wait_timeout, an operator's KILL) and a fresh connection instead of failing
// the request.
func TestDeadConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.MySQL(t)
	db, err := mysql.Open(ctx, dsn, 2, slog.New(slog.DiscardHandler)) // the migrations' lock takes one
	testenv.Fatal(t, "open", err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	store := mysql.NewStore(db, booking.Rules{HoldTTL: time.Minute, PendingTimeout: time.Minute}, nil)
	var id int64
	testenv.Fatal(t, "connection id", db.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id))

	admin, err := sql.Open("mysql", dsn)
	testenv.Fatal(t, "admin", err)
	defer admin.Close()
	_, err = admin.ExecContext(ctx, fmt.Sprintf("KILL %d", id))
	testenv.Fatal(t, "kill", err)
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		testenv.Fatal(t, "processlist", admin.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM information_schema.processlist WHERE id = ?`, id).Scan(&n))
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %d still there 5 s after KILL", id)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if _, err := store.Create(ctx, "alice", 7, 1); err != nil {
		t.Fatalf("create on a pool whose connection was killed: %v", err)
	}
}
