package booking

import "sync"

// Changes tells the requests of this process that wait on a booking (Prefer: wait) that it
// has changed, so they read it at once instead of on their next poll. It only knows the
// changes made in this process: a waiter must still poll for the ones another replica commits.
//
// The zero value is ready to use, and a nil *Changes watches and publishes nothing, so a
// process without waiters need not build one. A Publish with nobody watching the booking costs
// one map lookup under a mutex.
type Changes struct {
	mu       sync.Mutex
	watchers map[string][]chan struct{} // by booking id; a key is deleted with its last watcher
}

// Watch returns a channel that receives when Publish is called for bookingID, and stop, which
// the watcher must call when it no longer waits (it frees the entry; calling it twice is
// harmless). The channel holds one wake-up, so a publish is not lost while the watcher is busy
// reading the booking; several publishes before it reads again make one wake-up. Watch before
// reading the booking: a change published between the read and the Watch would be missed.
func (c *Changes) Watch(bookingID string) (changed <-chan struct{}, stop func()) {
	if c == nil {
		return nil, func() {} // a nil channel never receives: the watcher falls back to polling
	}
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.watchers == nil {
		c.watchers = make(map[string][]chan struct{})
	}
	c.watchers[bookingID] = append(c.watchers[bookingID], ch)
	c.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { c.unwatch(bookingID, ch) }) }
}

func (c *Changes) unwatch(bookingID string, ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.watchers[bookingID]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...) // Publish reads the slice under the same mutex
			break
		}
	}
	if len(ws) == 0 {
		delete(c.watchers, bookingID)
		return
	}
	c.watchers[bookingID] = ws
}

// Publish wakes every watcher of bookingID. Call it after the transaction that changed the
// booking has committed, so the woken watcher reads the change.
func (c *Changes) Publish(bookingID string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.watchers[bookingID] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already waiting to be read
		}
	}
}
