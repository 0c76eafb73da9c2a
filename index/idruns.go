package index

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Record ids reach Pebble in sorted runs, not with the rest of a batch.
// They are hashes, so each one set through the memtable was a random insert
// into its skiplist and then part of its flush; on an insert-heavy capture
// load (BenchmarkApplyCaptureLoad) that was about a third of the index's
// CPU. Recent ids are held in memory instead; LookupID asks the id filter
// (which holds them too), then them, then Pebble. Every runIDs of them are
// written as one sorted sstable and ingested, which skips the memtable and
// its flush; Pebble's compactions still merge the runs.
//
// The key H (pIDWatermark) holds the id watermark: every id of a seq below
// it is in Pebble. It is written
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
	mu   sync.RWMutex
	seed maphash.Seed
	ids  *heldRun
	// flushing is the run being ingested: still answered from here until
	// Pebble holds it. Nothing changes it once it is flushing.
	flushing *heldRun
	end      uint64
	// limit is runIDs but in tests.
	limit int
}

// heldRun is one run's ids: back to back in one buffer, found through an
// open-addressing table of their hashes. Every append adds one id, and a
// table of 4-byte slots (1 MiB for a full run) costs one cache line per
// add, where a map of strings cost an allocation and more misses.
type heldRun struct {
	buf    []byte
	ends   []uint32 // id i is buf[ends[i-1]:ends[i]]
	seqs   []uint64
	hashes []uint64
	slots  []uint32 // 1 + the id's index; 0 is empty
}

func newHeldRun(limit int) *heldRun {
	n := 1 << bits.Len(uint(2*max(limit, 1)-1)) // at most half full
	return &heldRun{slots: make([]uint32, n), ends: make([]uint32, 0, limit), seqs: make([]uint64, 0, limit), hashes: make([]uint64, 0, limit)}
}

func (r *heldRun) id(i int) []byte {
	var from uint32
	if i > 0 {
		from = r.ends[i-1]
	}
	return r.buf[from:r.ends[i]]
}

// find returns the slot holding id, or the empty slot where it would go.
func (r *heldRun) find(id []byte, h uint64) (slot int, found bool) {
	mask := len(r.slots) - 1
	for s := int(h) & mask; ; s = (s + 1) & mask {
		v := r.slots[s]
		if v == 0 {
			return s, false
		}
		if i := int(v - 1); r.hashes[i] == h && bytes.Equal(r.id(i), id) {
			return s, true
		}
	}
}

func (r *heldRun) lookup(id []byte, h uint64) (uint64, bool) {
	if r == nil {
		return 0, false
	}
	s, ok := r.find(id, h)
	if !ok {
		return 0, false
	}
	return r.seqs[r.slots[s]-1], true
}

func (r *heldRun) add(id []byte, h, seq uint64) {
	s, ok := r.find(id, h)
	if ok {
		r.seqs[r.slots[s]-1] = seq // a replay sets the same value
		return
	}
	r.buf = append(r.buf, id...)
	r.ends = append(r.ends, uint32(len(r.buf)))
	r.seqs = append(r.seqs, seq)
	r.hashes = append(r.hashes, h)
	r.slots[s] = uint32(len(r.seqs))
}

// joinRuns holds the runs' ids in a new run with room for limit.
func joinRuns(limit int, runs ...*heldRun) *heldRun {
	j := newHeldRun(limit)
	for _, r := range runs {
		for i := range r.len() {
			j.add(r.id(i), r.hashes[i], r.seqs[i])
		}
	}
	return j
}

func (r *heldRun) len() int {
	if r == nil {
		return 0
	}
	return len(r.seqs)
}

func newPendingIDs(from uint64) *pendingIDs {
	return &pendingIDs{seed: maphash.MakeSeed(), ids: newHeldRun(runIDs), end: from, limit: runIDs}
}

func (p *pendingIDs) lookup(id []byte) (uint64, bool) {
	h := maphash.Bytes(p.seed, id)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if seq, ok := p.ids.lookup(id, h); ok {
		return seq, true
	}
	return p.flushing.lookup(id, h)
}

// add holds the ids of seqs, the first of which is p.end or below it (a
// replay of ids already held sets the same values).
func (p *pendingIDs) add(seqs []uint64, ids [][]byte) {
	if len(ids) == 0 {
		return
	}
	hashes := make([]uint64, len(ids))
	for i, id := range ids {
		hashes[i] = maphash.Bytes(p.seed, id)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids.len()+len(ids) > len(p.ids.slots)/2 {
		// Only a test's small limit or a batch larger than a run gets here:
		// full() hands the run to ingestIDs long before.
		p.ids = joinRuns(2*(p.ids.len()+len(ids)), p.ids)
	}
	for i, id := range ids {
		p.ids.add(id, hashes[i], seqs[i])
	}
	p.end = max(p.end, seqs[len(seqs)-1]+1)
}

// each calls fn with every held id.
func (p *pendingIDs) each(fn func(id []byte)) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, r := range [...]*heldRun{p.ids, p.flushing} {
		for i := range r.len() {
			fn(r.id(i))
		}
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
	return p.ids.len() >= p.limit || len(p.ids.buf) >= runBytes
}

func (ix *Index) ingestIfFull() error {
	if !ix.pend.full() {
		return nil
	}
	return ix.ingestIDs(ix.bgCtx)
}

// ingestIDs writes the held ids to Pebble as one run, with the id
// watermark that says so. With none held, the stored id watermark is
// already the end (only ids move it), so there is nothing to write.
func (ix *Index) ingestIDs(ctx context.Context) error {
	p := ix.pend
	p.mu.Lock()
	if p.ids.len() == 0 {
		p.mu.Unlock()
		return nil
	}
	run, end := p.ids, p.end
	p.flushing, p.ids = run, newHeldRun(p.limit)
	p.mu.Unlock()
	err := ix.ingestRun(ctx, run, end)
	p.mu.Lock()
	if err != nil {
		// Still held, so lookups stay sound; the next run retries them.
		p.ids = joinRuns(2*(run.len()+p.ids.len()), run, p.ids)
	}
	p.flushing = nil
	p.mu.Unlock()
	return err
}

func (ix *Index) ingestRun(ctx context.Context, run *heldRun, end uint64) error {
	// Sorting on a fixed-size prefix first keeps most comparisons in one
	// contiguous slice instead of chasing every id's bytes.
	type heldID struct {
		lead uint64
		i    int
	}
	var held []heldID
	if run != nil {
		held = make([]heldID, run.len())
		for i := range held {
			var lead [8]byte
			copy(lead[:], run.id(i))
			held[i] = heldID{binary.BigEndian.Uint64(lead[:]), i}
		}
		slices.SortFunc(held, func(a, b heldID) int {
			if a.lead != b.lead {
				return cmp.Compare(a.lead, b.lead)
			}
			return bytes.Compare(run.id(a.i), run.id(b.i))
		})
	}
	path := filepath.Join(ix.dir, runFile)
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("write index id run: %w", err)
	}
	defer os.Remove(path) // Pebble links it in; the name is ours to drop
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), ix.writerOpts)
	var seqBuf [8]byte
	binary.BigEndian.PutUint64(seqBuf[:], end)
	err = w.Set([]byte{pIDWatermark}, seqBuf[:])
	key := []byte{pID}
	for _, h := range held {
		if err != nil {
			break
		}
		key = append(key[:1], run.id(h.i)...)
		binary.BigEndian.PutUint64(seqBuf[:], run.seqs[h.i])
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
	w, found, err := getUint64(ix.db, []byte{pIDWatermark}, "index id watermark")
	if err != nil || found {
		return w, err
	}
	if err := ix.ingestRun(ctx, nil, main); err != nil {
		return 0, err
	}
	return main, nil
}
