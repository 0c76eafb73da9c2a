package index_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

func blindSeqs(t *testing.T, ix *index.Index, token []byte) []uint64 {
	t.Helper()
	var got []uint64
	if err := ix.SearchBlind(token, func(p index.Posting) bool { got = append(got, p.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestBlindIndexCountsAndPurge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix := open(t, dir)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tokA, tokB, tokShared := bytes.Repeat([]byte{0xa1}, 16), bytes.Repeat([]byte{0xb2}, 16), bytes.Repeat([]byte{0xcc}, 16)
	var recs []*record.Record
	for i := range uint64(10) {
		r := rec(i, "crm", "customers", key(t, "id", "1"), "", record.OpUpdate, at)
		if i%2 == 0 {
			r.Derived = &record.Derived{Subjects: []string{"subjA"}, Terms: []record.Term{{Token: tokA, Subject: "subjA"}, {Token: tokShared, Subject: "subjA"}}}
		} else {
			r.Derived = &record.Derived{Subjects: []string{"subjB"}, Terms: []record.Term{{Token: tokB, Subject: "subjB"}, {Token: tokShared, Subject: "subjB"}}}
		}
		recs = append(recs, r)
	}
	if err := ix.Apply(recs[:6]); err != nil {
		t.Fatal(err)
	}
	if err := ix.Apply(recs[6:]); err != nil {
		t.Fatal(err)
	}
	if got := blindSeqs(t, ix, tokA); !slices.Equal(got, []uint64{0, 2, 4, 6, 8}) {
		t.Fatalf("token A: %v", got)
	}
	if got := blindSeqs(t, ix, tokShared); !slices.Equal(got, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("shared token (two subjects) must come back in log order: %v", got)
	}
	for s, want := range map[string]uint64{"subjA": 5, "subjB": 5, "nobody": 0} {
		if n, err := ix.SubjectCount(s); err != nil || n != want {
			t.Fatalf("SubjectCount(%s) = %d, %v; want %d", s, n, err, want)
		}
	}
	receipt := rec(10, "stele", "erasures", key(t, "receipt", "1"), "", record.OpEvent, at)
	receipt.Derived = &record.Derived{Erased: []string{"subjA"}}
	if err := ix.Apply([]*record.Record{receipt}); err != nil {
		t.Fatal(err)
	}
	if got := blindSeqs(t, ix, tokA); len(got) != 0 {
		t.Fatalf("purged subject's token still finds %v", got)
	}
	if got := blindSeqs(t, ix, tokShared); !slices.Equal(got, []uint64{1, 3, 5, 7, 9}) {
		t.Fatalf("purging A removed B's entries under a shared token: %v", got)
	}
	if got := blindSeqs(t, ix, tokB); len(got) != 5 {
		t.Fatalf("B's own token: %v", got)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// After the background compaction and close, A's token bytes are gone
	// from every file of the index.
	ix = open(t, dir)
	if got := blindSeqs(t, ix, tokA); len(got) != 0 {
		t.Fatalf("purge lost on reopen: %v", got)
	}
	ix.Close()
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), "MANIFEST") {
			// The manifest keeps historical file bounds; it holds keys,
			// never values, and tokens are keyed hashes, not personal data.
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, tokA) {
			t.Errorf("%s still holds the purged token", path)
		}
		return nil
	})
}

// An erasure receipt resets the subject's count, so a later erasure of the
// same subject (records sealed under its new key) counts only those, and a
// replay of the same records from any point ends at the same count.
func TestSubjectCountRestartsAtReceipt(t *testing.T) {
	at := time.Now()
	named := func(seq uint64) *record.Record {
		r := rec(seq, "crm", "customers", key(t, "id", "1"), "", record.OpInsert, at)
		r.Derived = &record.Derived{Subjects: []string{"s"}}
		return r
	}
	var recs []*record.Record
	for i := range uint64(3) {
		recs = append(recs, named(i))
	}
	receipt := rec(3, "stele", "erasures", key(t, "receipt", "1"), "", record.OpEvent, at)
	receipt.Derived = &record.Derived{Erased: []string{"s"}}
	recs = append(recs, receipt, named(4), named(5))

	for _, split := range []int{len(recs), 2, 4, 5} {
		ix := open(t, t.TempDir())
		if err := ix.Apply(recs[:split]); err != nil {
			t.Fatal(err)
		}
		if split < len(recs) {
			if err := ix.Apply(recs[split:]); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := ix.SubjectCount("s"); err != nil || n != 2 {
			t.Errorf("batches split at %d: count %d (%v), want 2 (only the records after the receipt)", split, n, err)
		}
		ix.Close()
	}
}

func TestSubjectCountsNotDoubledByReplay(t *testing.T) {
	ix := open(t, t.TempDir())
	at := time.Now()
	r := rec(0, "crm", "customers", key(t, "id", "1"), "", record.OpInsert, at)
	r.Derived = &record.Derived{Subjects: []string{"s"}}
	if err := ix.Apply([]*record.Record{r}); err != nil {
		t.Fatal(err)
	}
	if n, _ := ix.SubjectCount("s"); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
}

// TestPurgeSparesLaterRecordsInTheSameBatch: a receipt purges the entries
// of the records before it, even when the subject's later records (sealed
// under its new key) arrive in the same batch, as in a crash replay or a
// rebuild; and their terms stay purgeable by the next erasure.
func TestPurgeSparesLaterRecordsInTheSameBatch(t *testing.T) {
	ix := open(t, t.TempDir())
	at := time.Now()
	tok := bytes.Repeat([]byte{0xa1}, 16)
	named := func(seq uint64) *record.Record {
		r := rec(seq, "crm", "customers", key(t, "id", "1"), "", record.OpInsert, at)
		r.Derived = &record.Derived{Subjects: []string{"s"}, Terms: []record.Term{{Token: tok, Subject: "s"}}}
		return r
	}
	receipt := func(seq uint64) *record.Record {
		r := rec(seq, "stele", "erasures", key(t, "receipt", strconv.FormatUint(seq, 10)), "", record.OpEvent, at)
		r.Derived = &record.Derived{Erased: []string{"s"}}
		return r
	}
	if err := ix.Apply([]*record.Record{named(0), named(1), receipt(2), named(3), named(4)}); err != nil {
		t.Fatal(err)
	}
	if got := blindSeqs(t, ix, tok); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("after a receipt inside the batch, the token finds %v; want the later records 3 and 4", got)
	}
	if n, _ := ix.SubjectCount("s"); n != 2 {
		t.Fatalf("count %d, want 2", n)
	}
	if err := ix.Apply([]*record.Record{receipt(5)}); err != nil {
		t.Fatal(err)
	}
	if got := blindSeqs(t, ix, tok); len(got) != 0 {
		t.Fatalf("the second erasure left %v", got)
	}
	ix.Close()
}
