package booking

import "sync"

// Changes tells the requests of this process that wait on a booking (Prefer: wait) that it
// has changed. A change this process committed comes with the booking as committed, so the
// request answers without reading it back; one another replica made (Wake) makes the request
// read it at once instead of on its next poll. Changes only knows what it is told: a waiter
// must still poll for a change whose wake-up never came.
//
// The zero value is ready to use, and a nil *Changes watches and publishes nothing, so a
// process without waiters need not build one. A Publish with nobody watching the booking costs
// one map lookup under a mutex.
type Changes struct {
	mu       sync.Mutex
	watchers map[string][]chan Booking // by booking id; a key is deleted with its last watcher
}

// Watch returns a channel that receives when the booking changes, and stop, which the watcher
// must call when it no longer waits (it frees the entry; calling it twice is harmless). What
// it receives is the booking as committed (Publish), or a Booking with only its ID set, to be
// read (Wake). The channel holds one wake-up, so none is lost while the watcher is busy; a
// later one replaces one not yet received. Watch before reading the booking: a change
// published between the read and the Watch would be missed.
func (c *Changes) Watch(bookingID string) (changed <-chan Booking, stop func()) {
	if c == nil {
		return nil, func() {} // a nil channel never receives: the watcher falls back to polling
	}
	ch := make(chan Booking, 1)
	c.mu.Lock()
	if c.watchers == nil {
		c.watchers = make(map[string][]chan Booking)
	}
	c.watchers[bookingID] = append(c.watchers[bookingID], ch)
	c.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { c.unwatch(bookingID, ch) }) }
}

func (c *Changes) unwatch(bookingID string, ch chan Booking) {
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

// Publish wakes every watcher of b with b. Call it once the transaction that changed b has
// committed.
func (c *Changes) Publish(b Booking) { c.send(b.ID, b) }

// Wake wakes every watcher of bookingID to read it: for a change made by another process.
func (c *Changes) Wake(bookingID string) { c.send(bookingID, Booking{ID: bookingID}) }

func (c *Changes) send(bookingID string, b Booking) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.watchers[bookingID] {
		select {
		case ch <- b:
		default:
			// The watcher has not received the last one yet: this one replaces it. Senders
			// hold the mutex, so once emptied the channel has room.
			select {
			case <-ch:
			default:
			}
			ch <- b
		}
	}
}
