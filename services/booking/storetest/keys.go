package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flightbook/flightbook/services/booking"
	"github.com/flightbook/flightbook/testenv"
)

func testIdempotencyKeys(t *testing.T, e *env) {
	ctx := context.Background()
	k := booking.Key{UserID: "alice", Key: "k1", Hash: "h1"}

	// First use: claimed, work and response committed together.
	err := e.store.InTx(ctx, func(tx booking.Tx) error {
		r, err := tx.ClaimKey(ctx, k)
		if err != nil || r != nil {
			return fmt.Errorf("first claim: %v %v", r, err)
		}
		return tx.CompleteKey(ctx, k, booking.Response{Status: 202, Body: []byte(`{"id":"x"}`)})
	})
	testenv.Fatal(t, "first", err)
	// Same key, same request: the stored response, in a transaction or on its own.
	r, err := e.store.ClaimKey(ctx, k)
	if err != nil || r == nil || r.Status != 202 || string(r.Body) != `{"id":"x"}` {
		t.Fatalf("replay: %+v %v", r, err)
	}
	err = e.store.InTx(ctx, func(tx booking.Tx) error {
		r, err := tx.ClaimKey(ctx, k)
		if err != nil || r == nil || r.Status != 202 {
			return fmt.Errorf("replay in a transaction: %v %v", r, err)
		}
		return nil
	})
	testenv.Fatal(t, "replay", err)
	// Same key, another request: refused.
	if _, err := e.store.ClaimKey(ctx, booking.Key{UserID: "alice", Key: "k1", Hash: "other"}); !errors.Is(err, booking.ErrKeyReused) {
		t.Fatalf("reuse: %v", err)
	}
	// Keys are per user.
	if r, err := e.store.ClaimKey(ctx, booking.Key{UserID: "bob", Key: "k1", Hash: "h2"}); r != nil || err != nil {
		t.Fatalf("bob's k1: %v %v", r, err)
	}
	// Held by a running request: in progress; released: free again.
	k2 := booking.Key{UserID: "alice", Key: "k2", Hash: "h"}
	if _, err := e.store.ClaimKey(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.ClaimKey(ctx, k2); !errors.Is(err, booking.ErrKeyInProgress) {
		t.Fatalf("in progress: %v", err)
	}
	// Another request on an in-progress key is still refused as another request.
	if _, err := e.store.ClaimKey(ctx, booking.Key{UserID: "alice", Key: "k2", Hash: "other"}); !errors.Is(err, booking.ErrKeyReused) {
		t.Fatalf("reuse in progress: %v", err)
	}
	testenv.Fatal(t, "release", e.store.ReleaseKey(ctx, k2))
	if r, err := e.store.ClaimKey(ctx, k2); r != nil || err != nil {
		t.Fatalf("after release: %v %v", r, err)
	}
	// A stale in-progress key (its request crashed) is taken over, once.
	stale := e.adapter.Open(Config{Rules: rules, Now: e.clock.Now, Emit: record, KeyStaleAfter: 0})
	if r, err := stale.ClaimKey(ctx, k2); r != nil || err != nil {
		t.Fatalf("take over: %v %v", r, err)
	}
	if _, err := e.store.ClaimKey(ctx, k2); !errors.Is(err, booking.ErrKeyInProgress) {
		t.Fatalf("after take-over: %v", err)
	}
	// A completed key is never taken over, however old.
	if r, err := stale.ClaimKey(ctx, k); err != nil || r == nil || r.Status != 202 {
		t.Fatalf("stale store on a completed key: %v %v", r, err)
	}
	// A rolled-back request leaves no key.
	k3 := booking.Key{UserID: "alice", Key: "k3", Hash: "h"}
	_ = e.store.InTx(ctx, func(tx booking.Tx) error {
		if _, err := tx.ClaimKey(ctx, k3); err != nil {
			return err
		}
		return errors.New("work failed")
	})
	if r, err := e.store.ClaimKey(ctx, k3); r != nil || err != nil {
		t.Fatalf("after rollback: %v %v", r, err)
	}
}

// testKeyedChangeReplays is the api's keyed cancel: the key, a change of a booking read under
// its lock, and the response in one transaction. Run again with the same key, the change does
// not run again and the stored response comes back, also when the store sends the key's claim
// together with the lock's read (the MySQL one does, and finds the key taken only there).
func testKeyedChangeReplays(t *testing.T, e *env) {
	ctx := context.Background()
	b, err := e.store.Create(ctx, "alice", 7, 1)
	testenv.Fatal(t, "create", err)
	k := booking.Key{UserID: "alice", Key: "note-1", Hash: "h"}
	run := func() (replayed *booking.Response, changes int, err error) {
		err = e.store.InTx(ctx, func(tx booking.Tx) error {
			replayed, changes = nil, 0
			r, err := tx.ClaimKey(ctx, k)
			if err != nil || r != nil {
				replayed = r
				return err
			}
			c, err := tx.Apply(ctx, b.ID, booking.SeatsReleased{})
			if err != nil {
				return err
			}
			if !c.Noop() {
				changes++
			}
			return tx.CompleteKey(ctx, k, booking.Response{Status: 200, Body: []byte(b.ID)})
		})
		return replayed, changes, err
	}
	r, changes, err := run()
	if err != nil || r != nil || changes != 1 {
		t.Fatalf("first: replayed %v, %d changes, %v", r, changes, err)
	}
	r, changes, err = run()
	if err != nil || r == nil || r.Status != 200 || string(r.Body) != b.ID || changes != 0 {
		t.Fatalf("again: replayed %+v, %d changes, %v; want the stored response and no change", r, changes, err)
	}
	if h, _ := e.store.History(ctx, b.ID); len(h) != 2 {
		t.Fatalf("history: %d lines, want 2 (created, one note)", len(h))
	}
}

// testKeyWithWork is the api's create: the key, the booking and the response in one
// transaction; concurrent requests with the same key make one booking, and each gets either
// the stored response or "in progress".
func testKeyWithWork(t *testing.T, e *env) {
	ctx := context.Background()
	k := booking.Key{UserID: "alice", Key: "create-1", Hash: "h"}
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	done := make(chan int, n)
	for i := range n {
		go func() {
			defer func() { done <- i }()
			errs[i] = e.store.InTx(ctx, func(tx booking.Tx) error {
				r, err := tx.ClaimKey(ctx, k)
				if err != nil {
					return err
				}
				if r != nil {
					ids[i] = string(r.Body)
					return nil
				}
				b, err := tx.Create(ctx, "alice", 7, 1)
				if err != nil {
					return err
				}
				ids[i] = b.ID
				return tx.CompleteKey(ctx, k, booking.Response{Status: 202, Body: []byte(b.ID)})
			})
		}()
	}
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-done:
		case <-deadline:
			t.Fatal("claims did not finish")
		}
	}
	var id string
	for i := range n {
		switch {
		case errors.Is(errs[i], booking.ErrKeyInProgress):
		case errs[i] != nil:
			t.Fatalf("request %d: %v", i, errs[i])
		case id == "":
			id = ids[i]
		case ids[i] != id:
			t.Fatalf("two bookings for one key: %s and %s", id, ids[i])
		}
	}
	bs, _, err := e.store.List(ctx, booking.ListQuery{UserID: "alice", Limit: 10})
	testenv.Fatal(t, "list", err)
	if len(bs) != 1 || bs[0].ID != id {
		t.Fatalf("bookings %v, want one, %s", bs, id)
	}
}

// testKeysInOneTx is the api's batch of POSTs: several keys, each with its booking and
// response, in one transaction, one of them a replay of a completed key. Every new key gets
// its booking and history and event, the replay gets its stored response and no booking, and
// a batch holding a key in progress writes nothing at all.
func testKeysInOneTx(t *testing.T, e *env) {
	ctx := context.Background()
	key := func(k string) booking.Key { return booking.Key{UserID: "carol", Key: k, Hash: "h-" + k} }
	create := func(tx booking.Tx, k booking.Key) (string, bool, error) {
		r, err := tx.ClaimKey(ctx, k)
		if err != nil {
			return "", false, err
		}
		if r != nil {
			return string(r.Body), true, nil
		}
		b, err := tx.Create(ctx, "carol", 9, 1)
		if err != nil {
			return "", false, err
		}
		return b.ID, false, tx.CompleteKey(ctx, k, booking.Response{Status: 202, Body: []byte(b.ID)})
	}
	var done string
	testenv.Fatal(t, "first key", e.store.InTx(ctx, func(tx booking.Tx) error {
		var err error
		done, _, err = create(tx, key("done"))
		return err
	}))

	keys := []booking.Key{key("a"), key("done"), key("b"), key("c")}
	ids := make([]string, len(keys))
	replayed := make([]bool, len(keys))
	testenv.Fatal(t, "batch", e.store.InTx(ctx, func(tx booking.Tx) error {
		for i, k := range keys {
			var err error
			if ids[i], replayed[i], err = create(tx, k); err != nil {
				return err
			}
		}
		return nil
	}))
	if ids[1] != done || !replayed[1] {
		t.Fatalf("replayed key: id %q replayed %v, want %q true", ids[1], replayed[1], done)
	}
	for i, k := range keys {
		if i == 1 {
			continue
		}
		if replayed[i] || ids[i] == "" || ids[i] == done {
			t.Fatalf("key %s: id %q replayed %v", k.Key, ids[i], replayed[i])
		}
		b, err := e.store.Get(ctx, ids[i])
		if err != nil || b.Status != booking.Pending {
			t.Fatalf("booking of key %s: %+v %v", k.Key, b, err)
		}
		if got := e.emitted(t, ids[i]); len(got) != 1 {
			t.Fatalf("booking of key %s emitted %v, want one event", k.Key, got)
		}
		if got := e.causes(t, ids[i]); len(got) != 1 {
			t.Fatalf("booking of key %s has history %v, want one line", k.Key, got)
		}
		r, err := e.store.ClaimKey(ctx, k)
		if err != nil || r == nil || string(r.Body) != ids[i] {
			t.Fatalf("key %s afterwards: %+v %v, want the response %q", k.Key, r, err, ids[i])
		}
	}

	// A key in progress fails its batch, and the batch leaves nothing behind.
	if _, err := e.store.ClaimKey(ctx, key("busy")); err != nil {
		t.Fatal(err)
	}
	err := e.store.InTx(ctx, func(tx booking.Tx) error {
		for _, k := range []booking.Key{key("d"), key("busy")} {
			if _, _, err := create(tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, booking.ErrKeyInProgress) {
		t.Fatalf("batch with a key in progress: %v, want %v", err, booking.ErrKeyInProgress)
	}
	if r, err := e.store.ClaimKey(ctx, key("d")); r != nil || err != nil {
		t.Fatalf("key d after the failed batch: %+v %v, want it free", r, err)
	}
	bs, _, err := e.store.List(ctx, booking.ListQuery{UserID: "carol", Limit: 10})
	testenv.Fatal(t, "list", err)
	if len(bs) != 4 {
		t.Fatalf("carol has %d bookings, want 4 (the first key's and the batch's three)", len(bs))
	}
}
