package index

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// idFilter is an in-memory Bloom filter over every indexed record id. Almost
// every id the log checks before an append is new, and the filter answers
// "certainly new" without a Pebble lookup (which seeks a large memtable).
// It is rebuilt from the index's id keys at open and when it outgrows its
// size; until a build finishes, lookups fall through to Pebble, so it never
// answers wrongly.
type idFilter struct {
	db     *pebble.DB
	logger *slog.Logger

	mu       sync.RWMutex
	f        *blockedBloom
	capacity uint
	// count is the ids the filter holds or is about to hold; once counted,
	// it includes every stored id, so a growth rebuild (which adds the
	// stored ids again) keeps it instead of counting them a second time
	// after appends that came during its scan have already been checked
	// against it — which left the filter too small for as long as no
	// append came.
	count   uint
	counted bool
	ready   bool
	gen     uint64 // build generation; a superseded build must not set ready

	stop chan struct{}
	wg   sync.WaitGroup
}

func newIDFilter(db *pebble.DB, capacity uint, logger *slog.Logger) *idFilter {
	f := &idFilter{db: db, logger: logger, stop: make(chan struct{})}
	f.mu.Lock()
	f.rebuildLocked(capacity)
	f.mu.Unlock()
	return f
}

// rebuildLocked replaces the filter with an empty one of the given capacity
// and fills it from the index in the background.
func (f *idFilter) rebuildLocked(capacity uint) {
	// Under 1% of new ids still pay for a Pebble lookup (see blockedBits).
	f.f = newBlockedBloom(capacity)
	f.capacity, f.ready = capacity, false
	countStored := !f.counted
	if countStored {
		f.count = 0
	}
	f.gen++
	gen := f.gen
	f.wg.Go(func() {
		if err := f.build(gen, countStored); err != nil {
			f.logger.Warn("id filter build failed; id lookups use the index directly", "err", err)
		}
	})
}

func (f *idFilter) build(gen uint64, countStored bool) error {
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pID}, UpperBound: []byte{pID + 1}})
	if err != nil {
		return fmt.Errorf("scan ids: %w", err)
	}
	defer it.Close()
	const chunk = 4096
	ids := make([][]byte, 0, chunk)
	flush := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.gen != gen {
			return false
		}
		for _, id := range ids {
			f.f.Add(id)
		}
		if countStored {
			f.count += uint(len(ids))
		}
		ids = ids[:0]
		return true
	}
	for valid := it.First(); valid; valid = it.Next() {
		ids = append(ids, append([]byte(nil), it.Key()[1:]...))
		if len(ids) == chunk {
			if !flush() {
				return nil
			}
			select {
			case <-f.stop:
				return nil
			default:
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan ids: %w", err)
	}
	if !flush() {
		return nil
	}
	f.mu.Lock()
	if f.gen == gen {
		f.ready, f.counted = true, true
	}
	f.mu.Unlock()
	return nil
}

// mayContain is false only when id is certainly not indexed.
func (f *idFilter) mayContain(id []byte) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return !f.ready || f.f.Test(id)
}

// add records ids about to be indexed. It must run before they reach Pebble,
// so a lookup never finds an id in Pebble that the filter denies. held
// visits the ids indexed earlier that Pebble does not hold yet (idruns.go).
func (f *idFilter) add(ids [][]byte, held func(func(id []byte))) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count+uint(len(ids)) > f.capacity {
		// Grow first: these ids and the held ones are not in Pebble yet, so
		// the rebuild's scan cannot find them; they go in here.
		f.rebuildLocked(max(2*f.capacity, f.count+uint(len(ids))))
		n := uint(0)
		held(func(id []byte) { f.f.Add(id); n++ })
		if !f.counted {
			// The count restarts from the scan, which cannot see them.
			f.count += n
		}
	}
	for _, id := range ids {
		f.f.Add(id)
	}
	f.count += uint(len(ids))
}

func (f *idFilter) close() {
	close(f.stop)
	f.wg.Wait()
}
