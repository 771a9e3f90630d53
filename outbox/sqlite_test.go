package outbox

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/flightbook/flightbook/testenv"
)

// TestSQLiteLease walks the SQLite leader lease through what the relay suite cannot show
// without waiting for a lease to run out: a holder that stops renewing is replaced once its
// lease expires, it then fails its next renewal, and its release does not free the new
// holder's lease. Expiry is forced by moving expires_at into the past, not by waiting.
func TestSQLiteLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite", sqliteDSN(testenv.SQLite(t)))
	testenv.Fatal(t, "open sqlite", err)
	t.Cleanup(func() { _ = db.Close() })
	a := &sqliteStore{db: db, lease: time.Minute}
	b := &sqliteStore{db: db, lease: time.Minute}
	expire := func() {
		t.Helper()
		_, err := db.ExecContext(ctx, "UPDATE outbox_lock SET expires_at = '2000-01-01 00:00:00.000'")
		testenv.Fatal(t, "expire the lease", err)
	}
	mustLock := func(s *sqliteStore, name string, want bool) leaderLock {
		t.Helper()
		l, err := s.lock(ctx, name)
		testenv.Fatal(t, "lock", err)
		if got := l != nil; got != want {
			t.Fatalf("lock %s taken: %v, want %v", name, got, want)
		}
		return l
	}

	la := mustLock(a, "relay", true)
	mustLock(b, "relay", false)
	mustLock(b, "other", true) // leases are per name

	testenv.Fatal(t, "renew", la.check(ctx))
	// An expired lease that nobody took is renewed: no other relay has led meanwhile.
	expire()
	testenv.Fatal(t, "renew an expired lease nobody took", la.check(ctx))
	mustLock(b, "relay", false)

	expire()
	lb := mustLock(b, "relay", true)
	if la.session() == lb.session() {
		t.Fatalf("both holders have owner %d", la.session())
	}
	if err := la.check(ctx); err == nil {
		t.Fatal("the replaced holder renewed a lease another relay holds")
	}
	la.release()
	mustLock(a, "relay", false)
	lb.release()
	mustLock(a, "relay", true)
}
