package log

import (
	"context"
	"fmt"
	"sync"

	"github.com/stele/stele/record"
)

// follower feeds durable batches to the Hook (the index) off the append
// path. Until a record is indexed its id stays in pending, so duplicate
// detection never has a gap between the log and the index.
type follower struct {
	s     *Store
	queue chan []*record.Record
	done  chan struct{}

	mu      sync.Mutex
	pending map[string]uint64
	indexed uint64
	changed chan struct{} // closed and replaced whenever indexed advances
}

// followerQueue bounds how many acknowledged batches may wait for the index.
const followerQueue = 64

func newFollower(s *Store) *follower {
	f := &follower{s: s, queue: make(chan []*record.Record, followerQueue), done: make(chan struct{}),
		pending: make(map[string]uint64), indexed: s.Size(), changed: make(chan struct{})}
	go f.run()
	return f
}

func (f *follower) pendingSeq(id string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok := f.pending[id]
	return seq, ok
}

func (f *follower) enqueue(recs []*record.Record) {
	if f.s.opts.Hook == nil {
		f.mu.Lock()
		f.indexed = recs[len(recs)-1].Seq + 1
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	for _, r := range recs {
		f.pending[r.ID] = r.Seq
	}
	f.mu.Unlock()
	f.queue <- recs
}

func (f *follower) run() {
	defer close(f.done)
	for recs := range f.queue {
		// Merge whatever else is queued into one index batch.
	merge:
		for len(recs) < 65536 {
			select {
			case more, ok := <-f.queue:
				if !ok {
					break merge
				}
				recs = append(recs, more...)
			default:
				break merge
			}
		}
		if h := f.s.opts.Hook; h != nil && f.s.Err() == nil {
			if err := h.Apply(recs); err != nil {
				// Without the index, duplicates could slip through once
				// pending is cleared; stop taking appends until a restart
				// replays the index from its watermark.
				f.s.fail(fmt.Errorf("index records %d..%d: %w", recs[0].Seq, recs[len(recs)-1].Seq, err))
				continue
			}
		}
		f.mu.Lock()
		for _, r := range recs {
			delete(f.pending, r.ID)
		}
		f.indexed = recs[len(recs)-1].Seq + 1
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}
}

func (f *follower) close() {
	close(f.queue)
	<-f.done
}

// Indexed is the number of leading records the index has applied.
func (s *Store) Indexed() uint64 {
	s.follow.mu.Lock()
	defer s.follow.mu.Unlock()
	return s.follow.indexed
}

// WaitIndexed blocks until the index covers the first n records, so a query
// issued after an acknowledged append sees it.
func (s *Store) WaitIndexed(ctx context.Context, n uint64) error {
	for {
		s.follow.mu.Lock()
		indexed, ch := s.follow.indexed, s.follow.changed
		s.follow.mu.Unlock()
		if indexed >= n {
			return nil
		}
		if err := s.Err(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("index still at %d of %d records: %w", indexed, n, ctx.Err())
		}
	}
}
