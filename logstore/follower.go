package logstore

import (
	"context"
	"fmt"
	"sync"
)

// follower feeds durable records to the Hook (the index) off the append
// path.
//
// Duplicate detection without a gap: appenders look ids up in the index on
// their own goroutines (in parallel) and note the follower's epoch first;
// the writer then only consults pending. An id stays in pending from its
// commit until followEpochs index batches after it was indexed, so any id
// that reached the index after an appender's lookup is still in pending
// when the writer commits — unless more than followEpochs batches passed,
// and then the writer looks the id up again itself.
type follower struct {
	s     *Store
	queue chan followItem
	done  chan struct{}

	mu      sync.Mutex
	pending map[string]uint64
	indexed uint64
	epoch   uint64                 // index batches applied
	expire  [followEpochs][]string // ids indexed in each of the last epochs
	changed chan struct{}          // closed and replaced whenever indexed advances
}

// followEpochs is how many index batches an indexed id stays in pending.
const followEpochs = 64

// followItem is one commit's new records: consecutive seqs from first,
// their ids and their prepared index entries.
type followItem struct {
	first   uint64
	ids     []string
	entries [][]byte
}

// followerQueue bounds how many acknowledged commits may wait for the
// index. Items hold compact prepared entries (~100 bytes a record), so even
// a full queue of 1,000-record commits costs tens of MB, and a burst of
// appends is absorbed at the log's speed while the index catches up.
const followerQueue = 256

// maxApply bounds one index batch when the follower merges queued commits.
const maxApply = 65536

func newFollower(s *Store) *follower {
	f := &follower{s: s, queue: make(chan followItem, followerQueue), done: make(chan struct{}),
		pending: make(map[string]uint64), indexed: s.Size(), changed: make(chan struct{})}
	go f.run()
	return f
}

// check looks id up in pending. stale reports that more than followEpochs
// index batches were applied since an appender's lookup at lookupEpoch, so
// pending may no longer hold every id indexed since. Both are read under one
// lock: an id cannot expire between the two.
func (f *follower) check(id string, lookupEpoch uint64) (seq uint64, ok, stale bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok = f.pending[id]
	return seq, ok, f.epoch-lookupEpoch >= followEpochs
}

func (f *follower) enqueue(item followItem) {
	if f.s.opts.Hook == nil {
		f.advance(item, false)
		return
	}
	f.mu.Lock()
	for i, id := range item.ids {
		f.pending[id] = item.first + uint64(i)
	}
	f.mu.Unlock()
	f.queue <- item
}

func (f *follower) currentEpoch() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

func (f *follower) advance(item followItem, indexedNow bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if indexedNow {
		f.epoch++
		slot := &f.expire[f.epoch%followEpochs]
		for _, id := range *slot {
			delete(f.pending, id)
		}
		*slot = item.ids
	}
	f.indexed = item.first + uint64(len(item.ids))
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *follower) run() {
	defer close(f.done)
	for item := range f.queue {
		// Merge whatever else is queued into one index batch; commits are
		// consecutive, so their seqs join up.
	merge:
		for len(item.ids) < maxApply {
			select {
			case more, ok := <-f.queue:
				if !ok {
					break merge
				}
				item.ids = append(item.ids, more.ids...)
				item.entries = append(item.entries, more.entries...)
			default:
				break merge
			}
		}
		if f.s.Err() != nil {
			// The store has failed: leave indexed behind, so WaitIndexed
			// reports the failure instead of a stale answer.
			continue
		}
		if err := f.s.opts.Hook.ApplyPrepared(item.first, item.entries); err != nil {
			// Without the index, duplicates could slip through once pending
			// is cleared; stop taking appends until a restart replays the
			// index from its watermark.
			f.s.fail(fmt.Errorf("index records %d..%d: %w", item.first, item.first+uint64(len(item.ids))-1, err))
			continue
		}
		f.advance(item, true)
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
