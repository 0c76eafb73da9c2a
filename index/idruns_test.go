package index

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// crash ends ix the way kill -9 would once Pebble has flushed its
// memtable (flush true) or before it has: the ids held for the next run
// are lost.
func crash(t *testing.T, ix *Index, flush bool) {
	t.Helper()
	if flush {
		if err := ix.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	ix.bgCancel()
	ix.ids.close()
	if err := ix.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func applyRange(t *testing.T, ix *Index, from, to, batch int) {
	t.Helper()
	for lo := from; lo < to; lo += batch {
		var entries [][]byte
		for i := lo; i < min(lo+batch, to); i++ {
			e, err := ix.Prepare(filterRecord(i))
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		if err := ix.ApplyPrepared(uint64(lo), entries); err != nil {
			t.Fatal(err)
		}
	}
}

func countList(t *testing.T, ix *Index, l List) int {
	t.Helper()
	n := 0
	if err := ix.Scan(l, false, 0, func(Posting) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// replay does what the log's catch-up does at open.
func replay(t *testing.T, ix *Index, to int) {
	t.Helper()
	w, err := ix.Watermark()
	if err != nil {
		t.Fatal(err)
	}
	applyRange(t, ix, int(w), to, 64)
}

func checkAll(t *testing.T, ix *Index, n int) {
	t.Helper()
	for i := range n {
		seq, ok, err := ix.LookupID(fmt.Sprintf("id-%d", i))
		if err != nil || !ok || seq != uint64(i) {
			t.Fatalf("lookup id-%d: seq %d, found %v, %v", i, seq, ok, err)
		}
	}
	if _, ok, err := ix.LookupID(fmt.Sprintf("id-%d", n)); ok || err != nil {
		t.Fatalf("lookup of an id never applied: found %v, %v", ok, err)
	}
	// Postings and list chunks are not applied twice by the replay.
	if got := countList(t, ix, TableList("s", "t")); got != n {
		t.Fatalf("table list holds %d postings, want %d", got, n)
	}
	if w, err := ix.Watermark(); err != nil || w != uint64(n) {
		t.Fatalf("watermark %d %v, want %d", w, err, n)
	}
}

// Ids held in memory for the next run are lost by a crash after Pebble
// flushed the batches they came with; the watermark then points the log's
// replay at the first of them, and the replay adds only the ids.
func TestCrashReplaysHeldIDs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ix.pend.limit = 100
	applyRange(t, ix, 0, 250, 50) // runs at 100 and 200; 200-249 held
	crash(t, ix, true)

	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w, err := ix.Watermark(); err != nil || w != 200 {
		t.Fatalf("watermark after the crash %d %v, want 200 (the id watermark)", w, err)
	}
	if _, ok, _ := ix.LookupID("id-210"); ok {
		t.Fatal("an id held only in memory survived the crash: the test does not test the replay")
	}
	if _, ok, _ := ix.LookupID("id-150"); !ok {
		t.Fatal("an id of an ingested run was lost")
	}
	replay(t, ix, 250)
	checkAll(t, ix, 250)
	applyRange(t, ix, 250, 300, 50)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// Close ingests what is held.
	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	checkAll(t, ix, 300)
}

// A run can be durable while the batches it came with are not (no WAL):
// the replay then applies those batches in full, ids again included.
func TestCrashBeforeFlushAfterRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ix.pend.limit = 100
	applyRange(t, ix, 0, 120, 60)
	crash(t, ix, false)

	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if w, err := ix.Watermark(); err != nil || w != 0 {
		t.Fatalf("watermark after the crash %d %v, want 0 (nothing was flushed)", w, err)
	}
	replay(t, ix, 120)
	checkAll(t, ix, 120)
}

// An index written before runs set each id with its batch and has no id
// watermark: its ids reach its watermark.
func TestIndexWithoutIDWatermark(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyRange(t, ix, 0, 40, 40)
	// Rewrite it as the older format stored it.
	b := ix.db.NewBatch()
	for i := range 40 {
		var v [8]byte
		v[7] = byte(i)
		if err := b.Set(append([]byte{pID}, fmt.Sprintf("id-%d", i)...), v[:], nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete([]byte{pIDWatermark}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	crash(t, ix, true)

	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	checkAll(t, ix, 40)
}

// Ids whose hashes collide, or share a slot, are still told apart by their
// bytes, and probing wraps past the table's end.
func TestHeldRunCollisions(t *testing.T) {
	r := newHeldRun(4) // 8 slots
	last := uint64(len(r.slots) - 1)
	for i, id := range []string{"a", "b", "c", "d"} {
		r.add([]byte(id), last, uint64(10+i)) // one hash for all, the last slot
	}
	r.add([]byte("e"), 7, 20)
	for i, id := range []string{"a", "b", "c", "d"} {
		if seq, ok := r.lookup([]byte(id), last); !ok || seq != uint64(10+i) {
			t.Fatalf("lookup %q: %d %v, want %d", id, seq, ok, 10+i)
		}
	}
	if seq, ok := r.lookup([]byte("e"), 7); !ok || seq != 20 {
		t.Fatalf("lookup e: %d %v", seq, ok)
	}
	for _, id := range []string{"", "aa", "f"} {
		if _, ok := r.lookup([]byte(id), last); ok {
			t.Fatalf("lookup %q found an id never held", id)
		}
	}
	r.add([]byte("b"), last, 11) // a replay sets the same value again
	if r.len() != 5 {
		t.Fatalf("%d ids held, want 5", r.len())
	}
}

// A batch larger than the table has room for grows it; every id held stays
// found, in the held run and, while it is being ingested, in flushing.
func TestPendingIDsGrowAndFlushing(t *testing.T) {
	p := newPendingIDs(0)
	p.limit = 8
	p.ids = newHeldRun(p.limit)
	var seqs []uint64
	var ids [][]byte
	for i := range 100 {
		seqs = append(seqs, uint64(i))
		ids = append(ids, fmt.Appendf(nil, "id-%d", i))
	}
	p.add(seqs[:50], ids[:50])
	p.flushing, p.ids = p.ids, newHeldRun(p.limit)
	p.add(seqs[50:], ids[50:])
	for i, id := range ids {
		if seq, ok := p.lookup(id); !ok || seq != uint64(i) {
			t.Fatalf("lookup %s: %d %v", id, seq, ok)
		}
	}
	if p.until() != 100 {
		t.Fatalf("until %d, want 100", p.until())
	}
	n := 0
	p.each(func([]byte) { n++ })
	if n != 100 {
		t.Fatalf("each visited %d ids, want 100", n)
	}
}

// A run spans no key of the memtable, so ingesting it forces no flush.
func TestRunIngestForcesNoFlush(t *testing.T) {
	ix, err := Open(filepath.Join(t.TempDir(), "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ix.pend.limit = 100
	applyRange(t, ix, 0, 60, 60) // postings in the memtable, ids held
	m0 := ix.db.Metrics()
	applyRange(t, ix, 60, 120, 60) // a run
	m1 := ix.db.Metrics()
	if m1.Ingest.Count != m0.Ingest.Count+1 {
		t.Fatalf("%d ingests, want %d", m1.Ingest.Count, m0.Ingest.Count+1)
	}
	if m1.Flush.Count != m0.Flush.Count {
		t.Fatalf("the run's ingest flushed the memtable (%d flushes, then %d)", m0.Flush.Count, m1.Flush.Count)
	}
	checkAll(t, ix, 120)
	// Nothing held (as at a Close right after a run): nothing to write.
	ix.pend.limit = 60
	applyRange(t, ix, 120, 180, 60) // a run of exactly the limit
	m2 := ix.db.Metrics()
	if err := ix.ingestIDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m3 := ix.db.Metrics(); m3.Ingest.Count != m2.Ingest.Count {
		t.Fatalf("an ingest with no id held wrote a run (%d ingests, then %d)", m2.Ingest.Count, m3.Ingest.Count)
	}
	checkAll(t, ix, 180)
}

func TestHeldRunTableSize(t *testing.T) {
	for limit, want := range map[int]int{1: 2, 4: 8, 5: 16, runIDs: 2 * runIDs} {
		if got := len(newHeldRun(limit).slots); got != want {
			t.Errorf("newHeldRun(%d) has %d slots, want %d (a power of two at least twice the limit)", limit, got, want)
		}
	}
}
