package index

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Record ids reach Pebble in sorted runs, not with the rest of a batch.
// They are hashes, so each one set through the memtable is a random insert
// into its skiplist, then part of every flush and L0 compaction; on an
// insert-heavy capture load that was about a quarter of Stele's CPU per
// change (issue 13). Recent ids are held in memory, where LookupID looks
// first, and every runIDs of them are written as one sorted sstable and
// ingested, which touches no memtable.
//
// The key I (pID alone, which no id can produce: ids are never empty) holds
// the id watermark: every id of a seq below it is in Pebble. It is written
// only inside an ingested run, so it is durable exactly when the run is.
// The index's Watermark is the lower of the two watermarks, so after a
// crash the log replays the ids that were held only in memory; apply takes
// only the ids of records below the main watermark, whose postings, counts
// and chunks are already stored (merging those again would count twice).
const (
	runIDs   = 1 << 17
	runBytes = 8 << 20
)

// runFile is where a run is written before Pebble links it in; Pebble
// ignores files whose names it did not give.
const runFile = "stele-id-run.sst.tmp"

// pendingIDs holds the ids of seqs from the id watermark to end.
type pendingIDs struct {
	mu  sync.RWMutex
	ids map[string]uint64
	// flushing is the run being ingested: still answered from here until
	// Pebble holds it.
	flushing map[string]uint64
	bytes    int
	end      uint64
	// limit is runIDs but in tests.
	limit int
}

func newPendingIDs(from uint64) *pendingIDs {
	return &pendingIDs{ids: make(map[string]uint64, runIDs), end: from, limit: runIDs}
}

func (p *pendingIDs) lookup(id []byte) (uint64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if seq, ok := p.ids[string(id)]; ok {
		return seq, true
	}
	seq, ok := p.flushing[string(id)]
	return seq, ok
}

// add holds the ids of consecutive seqs, the first of which is p.end or
// below it (a replay of ids already held sets the same values).
func (p *pendingIDs) add(seqs []uint64, ids [][]byte) {
	if len(ids) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, id := range ids {
		n := len(p.ids)
		p.ids[string(id)] = seqs[i]
		if len(p.ids) > n {
			p.bytes += len(id)
		}
	}
	p.end = max(p.end, seqs[len(seqs)-1]+1)
}

// each calls fn with every held id.
func (p *pendingIDs) each(fn func(id string)) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id := range p.ids {
		fn(id)
	}
	for id := range p.flushing {
		fn(id)
	}
}

// until is the first seq whose id the index does not hold: after a crash,
// the persisted id watermark.
func (p *pendingIDs) until() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.end
}

func (p *pendingIDs) full() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.ids) >= p.limit || p.bytes >= runBytes
}

// ingestIDs writes the held ids to Pebble as one run, with the id
// watermark that says so.
func (ix *Index) ingestIDs(ctx context.Context) error {
	p := ix.pend
	p.mu.Lock()
	run, end := p.ids, p.end
	p.flushing, p.ids, p.bytes = run, make(map[string]uint64, p.limit), 0
	p.mu.Unlock()
	err := ix.ingestRun(ctx, run, end)
	p.mu.Lock()
	if err != nil {
		// Still held, so lookups stay sound; the next run retries them.
		for id, seq := range run {
			if _, ok := p.ids[id]; !ok {
				p.ids[id] = seq
				p.bytes += len(id)
			}
		}
	}
	p.flushing = nil
	p.mu.Unlock()
	return err
}

func (ix *Index) ingestRun(ctx context.Context, run map[string]uint64, end uint64) error {
	// Sorting on a fixed-size prefix first keeps most comparisons in one
	// contiguous slice instead of chasing every id's bytes.
	type heldID struct {
		lead uint64
		id   string
		seq  uint64
	}
	held := make([]heldID, 0, len(run))
	for id, seq := range run {
		var lead [8]byte
		copy(lead[:], id)
		held = append(held, heldID{binary.BigEndian.Uint64(lead[:]), id, seq})
	}
	slices.SortFunc(held, func(a, b heldID) int {
		if a.lead != b.lead {
			return cmp.Compare(a.lead, b.lead)
		}
		return strings.Compare(a.id, b.id)
	})
	path := filepath.Join(ix.dir, runFile)
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("write index id run: %w", err)
	}
	defer os.Remove(path) // Pebble links it in; the name is ours to drop
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), ix.writerOpts)
	var seqBuf [8]byte
	binary.BigEndian.PutUint64(seqBuf[:], end)
	err = w.Set([]byte{pID}, seqBuf[:])
	key := []byte{pID}
	for _, h := range held {
		if err != nil {
			break
		}
		key = append(key[:1], h.id...)
		binary.BigEndian.PutUint64(seqBuf[:], h.seq)
		err = w.Set(key, seqBuf[:])
	}
	// Close syncs the file, so the run is whole before Pebble refers to it.
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write index id run: %w", err)
	}
	if err := ix.db.Ingest(ctx, []string{path}); err != nil {
		return fmt.Errorf("ingest index id run: %w", err)
	}
	return nil
}

// idWatermark reads the id watermark. An index without one predates runs:
// it set every id with its batch, so its ids reach its main watermark, and
// that is written down as its id watermark now; a new index starts at 0.
func (ix *Index) idWatermark(ctx context.Context, main uint64) (uint64, error) {
	v, closer, err := ix.db.Get([]byte{pID})
	if errors.Is(err, pebble.ErrNotFound) {
		if err := ix.ingestRun(ctx, nil, main); err != nil {
			return 0, err
		}
		return main, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read index id watermark: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("index id watermark is %d bytes, want 8: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}
