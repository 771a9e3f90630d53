package booking

import (
	"fmt"
	"sync"
	"testing"
)

// woken returns the wake-up ch holds, without waiting (Publish and Wake send before they
// return), and whether it held one.
func woken(ch <-chan Booking) (Booking, bool) {
	select {
	case b := <-ch:
		return b, true
	default:
		return Booking{}, false
	}
}

func TestChanges(t *testing.T) {
	t.Parallel()
	var c Changes
	c.Publish(Booking{ID: "nobody"}) // no watcher: nothing to do, nothing kept
	a1, stopA1 := c.Watch("a")
	a2, stopA2 := c.Watch("a")
	b, stopB := c.Watch("b")

	c.Wake("a")
	c.Publish(Booking{ID: "a", Status: Held, Version: 2}) // replaces the wake-up not yet read
	for _, ch := range []<-chan Booking{a1, a2} {
		if got, ok := woken(ch); !ok || got.Status != Held || got.Version != 2 {
			t.Fatalf("a watcher of a received %+v, %v; want the booking published last", got, ok)
		}
	}
	if _, ok := woken(b); ok {
		t.Fatal("publishing a woke the watcher of b")
	}
	if _, ok := woken(a1); ok {
		t.Fatal("two wake-ups before a read must make one")
	}

	stopA1()
	stopA1() // harmless twice
	c.Wake("a")
	if _, ok := woken(a1); ok {
		t.Fatal("a stopped watcher was woken")
	}
	if got, ok := woken(a2); !ok || got != (Booking{ID: "a"}) {
		t.Fatalf("a wake-up to read the booking: %+v, %v; want only its id", got, ok)
	}
	stopA2()
	stopB()
	if len(c.watchers) != 0 {
		t.Fatalf("entries left after every watcher stopped: %v", c.watchers)
	}

	var none *Changes // a process without waiters
	ch, stop := none.Watch("a")
	none.Publish(Booking{ID: "a"})
	none.Wake("a")
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
			c.Publish(Booking{ID: fmt.Sprintf("b%d", i)})
			c.Wake("nobody")
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
