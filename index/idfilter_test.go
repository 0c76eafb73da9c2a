package index

import (
	"fmt"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

func filterRecord(i int) *record.Record {
	return &record.Record{Seq: uint64(i), ID: fmt.Sprintf("id-%d", i),
		Source: record.Source{Name: "s", Kind: "http", Table: "t"}, Op: record.OpInsert,
		Key: []byte(fmt.Sprintf(`{"id":%d}`, i)), OccurredAt: time.Unix(int64(i), 0)}
}

func waitReady(t *testing.T, f *idFilter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.RLock()
		ready := f.ready
		f.mu.RUnlock()
		if ready {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("id filter never became ready")
}

// The filter must never deny an indexed id — not after a reopen (built from
// the stored keys), and not across the rebuilds growth triggers.
func TestIDFilterNeverDeniesIndexedIDs(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A tiny filter, so these appends outgrow it several times.
	ix.ids.close()
	ix.ids = newIDFilter(ix.db, 64, ix.ids.logger)
	const n = 3000
	for b := 0; b < n; b += 100 {
		recs := make([]*record.Record, 100)
		for i := range recs {
			recs[i] = filterRecord(b + i)
		}
		if err := ix.Apply(recs); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, ix.ids)
	if ix.ids.capacity < n {
		t.Fatalf("filter capacity %d after %d ids: it did not grow", ix.ids.capacity, n)
	}
	check := func(ix *Index) {
		t.Helper()
		for i := 0; i < n; i++ {
			seq, ok, err := ix.LookupID(fmt.Sprintf("id-%d", i))
			if err != nil || !ok || seq != uint64(i) {
				t.Fatalf("LookupID(id-%d) = %d %v %v", i, seq, ok, err)
			}
		}
		denied := 0
		for i := n; i < n+1000; i++ {
			if !ix.ids.mayContain([]byte(fmt.Sprintf("id-%d", i))) {
				denied++
			}
			if _, ok, _ := ix.LookupID(fmt.Sprintf("id-%d", i)); ok {
				t.Fatalf("LookupID found id-%d, which was never indexed", i)
			}
		}
		// A working filter answers most new ids itself.
		if denied < 900 {
			t.Fatalf("filter denied only %d of 1000 new ids", denied)
		}
	}
	check(ix)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	waitReady(t, ix.ids)
	check(ix)
}
