package logstore

import (
	"context"
	"fmt"
	"sync"
)

// notifier wakes goroutines that follow the log (the lineage publisher,
// live streams) when a commit makes records durable, so they need not poll.
//
// The channel is created only when someone waits and closed once per group
// commit, so an append with no followers pays one uncontended lock.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) signal() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}

// Changed returns a channel that is closed once the log grows past the size
// it had when Changed was called. Call Changed before reading Size: then a
// commit that Size missed is sure to close the channel.
func (s *Store) Changed() <-chan struct{} { return s.notify.wait() }

// WaitSize blocks until the log holds more than n records, the store fails
// or ctx ends.
func (s *Store) WaitSize(ctx context.Context, n uint64) error {
	for {
		ch := s.Changed()
		if s.Size() > n {
			return nil
		}
		if err := s.Err(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("log still at %d records: %w", n, ctx.Err())
		}
	}
}
