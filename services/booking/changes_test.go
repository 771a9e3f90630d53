package booking

import (
	"fmt"
	"sync"
	"testing"
)

// woken reports whether ch holds a wake-up, without waiting: Publish sends before it returns.
func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChanges(t *testing.T) {
	t.Parallel()
	var c Changes
	c.Publish("nobody") // no watcher: nothing to do, nothing kept
	a1, stopA1 := c.Watch("a")
	a2, stopA2 := c.Watch("a")
	b, stopB := c.Watch("b")

	c.Publish("a")
	c.Publish("a") // folds into the wake-up not yet read
	if !woken(a1) || !woken(a2) || woken(b) {
		t.Fatal("publishing a must wake both watchers of a and not b")
	}
	if woken(a1) {
		t.Fatal("two publishes before a read must make one wake-up")
	}

	stopA1()
	stopA1() // harmless twice
	c.Publish("a")
	if woken(a1) || !woken(a2) {
		t.Fatal("a stopped watcher must not be woken, the other one must")
	}
	stopA2()
	stopB()
	if len(c.watchers) != 0 {
		t.Fatalf("entries left after every watcher stopped: %v", c.watchers)
	}

	var none *Changes // a process without waiters
	ch, stop := none.Watch("a")
	none.Publish("a")
	stop()
	if ch != nil {
		t.Fatal("a nil Changes must return a channel that never receives")
	}
}

// TestChangesConcurrently runs watchers that each wait for their own booking's publish while
// other goroutines publish and stop, under -race: every watcher is woken, and the map is empty
// afterwards.
func TestChangesConcurrently(t *testing.T) {
	t.Parallel()
	var c Changes
	const bookings, perBooking = 50, 4
	var watching, done sync.WaitGroup
	watching.Add(bookings * perBooking)
	done.Add(bookings * perBooking)
	for i := range bookings {
		id := fmt.Sprintf("b%d", i)
		for range perBooking {
			go func() {
				defer done.Done()
				ch, stop := c.Watch(id)
				defer stop()
				watching.Done()
				<-ch // a lost wake-up hangs the test until its deadline
			}()
		}
	}
	watching.Wait()
	var publishers sync.WaitGroup
	for i := range bookings {
		publishers.Go(func() {
			c.Publish(fmt.Sprintf("b%d", i))
			c.Publish("nobody")
		})
	}
	publishers.Wait()
	done.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.watchers) != 0 {
		t.Fatalf("%d bookings still watched after every watcher stopped", len(c.watchers))
	}
}
