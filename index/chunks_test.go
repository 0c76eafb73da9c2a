package index_test

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

// TestChunkedListsAcrossBlocks writes source, table and actor lists over
// several 4,096-seq blocks in batches of uneven sizes (so blocks are built
// from many merge operands) and checks every scan start and direction
// against a brute-force filter, before and after a reopen.
func TestChunkedListsAcrossBlocks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix := open(t, dir)
	const n = 13_000
	all := make([]*record.Record, n)
	for i := range all {
		source := []string{"crm", "erp"}[i%7/5]    // long runs of crm, short of erp
		table := []string{"a", "b", "c"}[i/1000%3] // tables change every 1,000 seqs
		actor := []string{"alice", "bob", ""}[i%3]
		all[i] = rec(uint64(i), source, table, key(t, "id", fmt.Sprint(i%50)), actor, record.OpUpdate, t0.Add(time.Duration(i)*time.Millisecond))
	}
	for lo, size := 0, 1; lo < n; lo, size = lo+size, size*3%4999+1 {
		if err := ix.Apply(all[lo:min(lo+size, n)]); err != nil {
			t.Fatal(err)
		}
	}
	lists := map[string]struct {
		l     index.List
		match func(*record.Record) bool
	}{
		"source crm":  {index.SourceList("crm"), func(r *record.Record) bool { return r.Source.Name == "crm" }},
		"source erp":  {index.SourceList("erp"), func(r *record.Record) bool { return r.Source.Name == "erp" }},
		"table crm/b": {index.TableList("crm", "b"), func(r *record.Record) bool { return r.Source.Name == "crm" && r.Source.Table == "b" }},
		"table erp/c": {index.TableList("erp", "c"), func(r *record.Record) bool { return r.Source.Name == "erp" && r.Source.Table == "c" }},
		"actor alice": {index.ActorList("alice"), func(r *record.Record) bool { return r.ActorID() == "alice" }},
		"no such":     {index.TableList("crm", "zzz"), func(*record.Record) bool { return false }},
	}
	starts := []uint64{0, 1, 4095, 4096, 4097, 8191, 8192, 9000, n - 1, n, n + 5000, math.MaxUint64 - 1, math.MaxUint64}
	check := func(stage string) {
		for name, tc := range lists {
			for _, from := range starts {
				var asc, desc []index.Posting
				for _, r := range all {
					if tc.match(r) && r.Seq >= from {
						asc = append(asc, index.Posting{Seq: r.Seq, OccurredAt: r.OccurredAt})
					}
				}
				for i := len(all) - 1; i >= 0; i-- {
					if r := all[i]; tc.match(r) && r.Seq <= from {
						desc = append(desc, index.Posting{Seq: r.Seq, OccurredAt: r.OccurredAt})
					}
				}
				same := func(a, b index.Posting) bool { return a.Seq == b.Seq && a.OccurredAt.Equal(b.OccurredAt) }
				if got := scan(t, ix, tc.l, false, from); !slices.EqualFunc(got, asc, same) {
					t.Fatalf("%s: %s ascending from %d: %d postings %v…, want %d %v…", stage, name, from, len(got), head(got), len(asc), head(asc))
				}
				if got := scan(t, ix, tc.l, true, from); !slices.EqualFunc(got, desc, same) {
					t.Fatalf("%s: %s descending from %d: %d postings %v…, want %d %v…", stage, name, from, len(got), head(got), len(desc), head(desc))
				}
			}
		}
		// A scan stops where its callback says, in the middle of a block.
		var got []uint64
		if err := ix.Scan(index.SourceList("crm"), true, 9000, func(p index.Posting) bool {
			got = append(got, p.Seq)
			return len(got) < 3
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []uint64{8999, 8998, 8997}) {
			t.Fatalf("%s: stopped scan gave %v", stage, got)
		}
	}
	check("live")
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = open(t, dir)
	defer ix.Close()
	check("reopened")
}

// TestChunkedListsIgnoreReappliedRecords: applying records again (as a
// caller replaying from below the watermark would) neither duplicates nor
// reorders their postings.
func TestChunkedListsIgnoreReappliedRecords(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	var recs []*record.Record
	for i := range uint64(300) {
		recs = append(recs, rec(i, "crm", "t", key(t, "id", fmt.Sprint(i)), "alice", record.OpInsert, t0.Add(time.Duration(i)*time.Second)))
	}
	for _, part := range [][]*record.Record{recs[:200], recs[100:300], recs[50:60]} {
		if err := ix.Apply(part); err != nil {
			t.Fatal(err)
		}
	}
	want := make([]uint64, 300)
	for i := range want {
		want[i] = uint64(i)
	}
	for _, l := range []index.List{index.SourceList("crm"), index.TableList("crm", "t"), index.ActorList("alice")} {
		if got := seqs(scan(t, ix, l, false, 0)); !slices.Equal(got, want) {
			t.Fatalf("ascending: %d postings, first %v", len(got), head(scan(t, ix, l, false, 0)))
		}
		if got := seqs(scan(t, ix, l, true, math.MaxUint64)); !slices.Equal(got, reversed(want)) {
			t.Fatalf("descending: %d postings", len(got))
		}
	}
}

func head(ps []index.Posting) []uint64 {
	return seqs(ps[:min(len(ps), 5)])
}
