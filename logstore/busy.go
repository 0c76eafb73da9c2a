package logstore

import (
	"sync"
	"time"
)

// busyClock adds up the time during which at least one Append is in
// progress. A follower that competes with the appends for CPU (the
// lineage publisher) reads it to tell a burst of ingest, which keeps the
// log appending nearly all the time, from a steady flow, which leaves it
// idle most of the time, on any machine and under any load.
type busyClock struct {
	mu     sync.Mutex
	active int
	since  time.Time
	total  time.Duration
}

// enter marks an append as started and returns the function that marks it
// done.
func (c *busyClock) enter() (exit func()) {
	c.mu.Lock()
	if c.active == 0 {
		c.since = time.Now()
	}
	c.active++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.active--; c.active == 0 {
			c.total += time.Since(c.since)
		}
		c.mu.Unlock()
	}
}

func (c *busyClock) busy() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active > 0 {
		return c.total + time.Since(c.since)
	}
	return c.total
}

// AppendBusy is the total time, since the store opened, during which at
// least one Append was in progress (encoding, queued, or being written
// and synced).
func (s *Store) AppendBusy() time.Duration { return s.appending.busy() }
