package index_test

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

func open(t *testing.T, dir string) *index.Index {
	t.Helper()
	ix, err := index.Open(dir, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return ix
}

func key(t *testing.T, cols ...string) json.RawMessage {
	t.Helper()
	// Keep column order: build the object by hand.
	b := []byte{'{'}
	for i := 0; i < len(cols); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		n, _ := json.Marshal(cols[i])
		v, _ := json.Marshal(cols[i+1])
		b = append(append(append(b, n...), ':'), v...)
	}
	return append(b, '}')
}

func rec(seq uint64, source, table string, k json.RawMessage, actor string, op record.Op, at time.Time) *record.Record {
	r := &record.Record{
		Seq:        seq,
		ID:         fmt.Sprintf("rec-%d", seq),
		Source:     record.Source{Name: source, Kind: "http", Table: table},
		Op:         op,
		Key:        k,
		OccurredAt: at,
	}
	if actor != "" {
		r.Actor, _ = json.Marshal(map[string]string{"id": actor, "app": "x"})
	}
	return r
}

func scan(t *testing.T, ix *index.Index, l index.List, desc bool, from uint64) []index.Posting {
	t.Helper()
	var out []index.Posting
	if err := ix.Scan(l, desc, from, func(p index.Posting) bool {
		out = append(out, p)
		return true
	}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

func seqs(ps []index.Posting) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Seq
	}
	return out
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func TestApplyLookupWatermark(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	if w, err := ix.Watermark(); err != nil || w != 0 {
		t.Fatalf("empty watermark %d %v", w, err)
	}
	if _, ok, err := ix.LookupID("rec-0"); ok || err != nil {
		t.Fatalf("lookup in empty index: %v %v", ok, err)
	}
	if err := ix.Apply(nil); err != nil {
		t.Fatalf("apply nothing: %v", err)
	}
	var batch []*record.Record
	for i := range uint64(10) {
		batch = append(batch, rec(i, "crm", "customers", key(t, "id", fmt.Sprint(i)), "", record.OpInsert, t0))
	}
	if err := ix.Apply(batch); err != nil {
		t.Fatal(err)
	}
	if w, err := ix.Watermark(); err != nil || w != 10 {
		t.Fatalf("watermark %d %v, want 10", w, err)
	}
	if err := ix.Apply([]*record.Record{rec(10, "crm", "customers", key(t, "id", "x"), "", record.OpInsert, t0)}); err != nil {
		t.Fatal(err)
	}
	if w, _ := ix.Watermark(); w != 11 {
		t.Fatalf("watermark %d, want 11", w)
	}
	for i := range uint64(11) {
		seq, ok, err := ix.LookupID(fmt.Sprintf("rec-%d", i))
		if err != nil || !ok || seq != i {
			t.Fatalf("lookup rec-%d: %d %v %v", i, seq, ok, err)
		}
	}
	for _, id := range []string{"rec-11", "rec-", "rec-1 ", "", "REC-1"} {
		if _, ok, err := ix.LookupID(id); ok || err != nil {
			t.Fatalf("lookup %q found: %v", id, err)
		}
	}
}

func TestScanOrders(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	// 600 records cross the 255/256 byte boundary of big-endian seqs; every
	// third belongs to "crm", the rest to "erp".
	var batch []*record.Record
	var want []uint64
	times := map[uint64]time.Time{}
	for i := range uint64(600) {
		src := "erp"
		if i%3 == 0 {
			src = "crm"
			want = append(want, i)
		}
		at := t0.Add(time.Duration(i)*time.Minute + time.Duration(i)*time.Nanosecond)
		if i == 9 {
			at = time.Date(1969, 7, 20, 20, 17, 40, 5, time.UTC) // before the Unix epoch
		}
		times[i] = at
		batch = append(batch, rec(i, src, "t", key(t, "id", "1"), "", record.OpUpdate, at))
	}
	// A large batch (split across goroutines inside Apply), then a small one.
	if err := ix.Apply(batch[:550]); err != nil {
		t.Fatal(err)
	}
	if w, _ := ix.Watermark(); w != 550 {
		t.Fatalf("watermark %d after a batch of 550", w)
	}
	if err := ix.Apply(batch[550:]); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(600) {
		if seq, ok, err := ix.LookupID(fmt.Sprintf("rec-%d", i)); err != nil || !ok || seq != i {
			t.Fatalf("lookup rec-%d: %d %v %v", i, seq, ok, err)
		}
	}
	l := index.SourceList("crm")

	asc := scan(t, ix, l, false, 0)
	if !slices.Equal(seqs(asc), want) {
		t.Fatalf("ascending scan: %v", seqs(asc))
	}
	for _, p := range asc {
		if !p.OccurredAt.Equal(times[p.Seq]) || p.OccurredAt.Location() != time.UTC {
			t.Fatalf("seq %d: occurred_at %v, want %v", p.Seq, p.OccurredAt, times[p.Seq])
		}
	}
	desc := scan(t, ix, l, true, math.MaxUint64)
	if !slices.Equal(seqs(desc), reversed(want)) {
		t.Fatalf("descending scan: %v", seqs(desc))
	}
	for _, from := range []uint64{0, 1, 2, 3, 254, 255, 256, 257, 299, 300, 597, 598, 599, 600, 10_000} {
		var a, d []uint64
		for _, s := range want {
			if s >= from {
				a = append(a, s)
			}
			if s <= from {
				d = append(d, s)
			}
		}
		if got := seqs(scan(t, ix, l, false, from)); !slices.Equal(got, a) {
			t.Fatalf("ascending from %d: %v, want %v", from, got, a)
		}
		if got := seqs(scan(t, ix, l, true, from)); !slices.Equal(got, reversed(d)) {
			t.Fatalf("descending from %d: %v, want %v", from, got, reversed(d))
		}
	}
	// fn returning false stops the scan.
	var n int
	if err := ix.Scan(l, true, math.MaxUint64, func(index.Posting) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("early stop: %d calls, %v", n, err)
	}
	if got := scan(t, ix, index.SourceList("nope"), false, 0); len(got) != 0 {
		t.Fatalf("unknown source: %v", got)
	}
}

func reversed(s []uint64) []uint64 {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// TestPostingListsIsolated applies records whose names are prefixes of one
// another or contain separators and NUL bytes, and checks every posting
// list against a brute-force filter.
func TestPostingListsIsolated(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	sources := []string{"a", "ab", "a\x00", "a\x00b", "b", "\x01a", "a\xff"}
	tables := []string{"t", "bt", "tt", "t\x00", "t2", "b"}
	keys := []json.RawMessage{
		key(t, "id", "1"), key(t, "id", "12"), key(t, "id", "1\x002"), key(t, "id", "k"), key(t, "id", "tk"),
		key(t, "a", "x", "b", "y"), key(t, "a", "x,b=y"), key(t, "a", "x", "b", "y,c=z"), key(t, "a", "x\x00", "b", "y"),
		key(t, "id", ""), key(t, "id", "\xff\xff"),
	}
	actors := []string{"", "alice", "alice2", "ali", "al\x00ice", "ALICE"}
	ops := []record.Op{record.OpInsert, record.OpUpdate, record.OpTruncate, record.OpDelete}

	var all []*record.Record
	var seq uint64
	for si, s := range sources {
		for ti, tb := range tables {
			for ki, k := range keys {
				if (si+ti+ki)%3 != 0 {
					continue
				}
				all = append(all, rec(seq, s, tb, k, actors[int(seq)%len(actors)], ops[int(seq)%len(ops)], t0.Add(time.Duration(seq)*time.Second)))
				seq++
			}
		}
	}
	if err := ix.Apply(all); err != nil {
		t.Fatal(err)
	}

	check := func(name string, l index.List, match func(r *record.Record) bool) {
		t.Helper()
		var want []uint64
		for _, r := range all {
			if match(r) {
				want = append(want, r.Seq)
			}
		}
		if got := seqs(scan(t, ix, l, false, 0)); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
		if got := seqs(scan(t, ix, l, true, math.MaxUint64)); !slices.Equal(got, reversed(want)) {
			t.Errorf("%s descending: got %v, want %v", name, got, reversed(want))
		}
	}
	keyStr := func(k json.RawMessage) string {
		s, err := record.KeyString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, s := range sources {
		check(fmt.Sprintf("source %q", s), index.SourceList(s), func(r *record.Record) bool { return r.Source.Name == s })
		for _, tb := range tables {
			check(fmt.Sprintf("table %q/%q", s, tb), index.TableList(s, tb), func(r *record.Record) bool {
				return r.Source.Name == s && r.Source.Table == tb
			})
			check(fmt.Sprintf("truncates %q/%q", s, tb), index.TruncateList(s, tb), func(r *record.Record) bool {
				return r.Source.Name == s && r.Source.Table == tb && r.Op == record.OpTruncate
			})
			for _, k := range keys {
				ks := keyStr(k)
				check(fmt.Sprintf("entity %q/%q/%q", s, tb, ks), index.EntityList(s, tb, ks), func(r *record.Record) bool {
					return r.Source.Name == s && r.Source.Table == tb && keyStr(r.Key) == ks
				})
			}
		}
	}
	for _, a := range actors[1:] {
		check(fmt.Sprintf("actor %q", a), index.ActorList(a), func(r *record.Record) bool { return r.ActorID() == a })
	}
	// The empty actor is never indexed; records without an actor are in no
	// actor list.
	if got := scan(t, ix, index.ActorList(""), false, 0); len(got) != 0 {
		t.Errorf("empty actor list holds %v", seqs(got))
	}
	// Names split differently across parts never meet.
	for _, pair := range [][2]index.List{
		{index.TableList("a", "bt"), index.TableList("ab", "t")},
		{index.EntityList("a", "b", "tk"), index.EntityList("a", "bt", "k")},
	} {
		a, b := seqs(scan(t, ix, pair[0], false, 0)), seqs(scan(t, ix, pair[1], false, 0))
		for _, s := range a {
			if slices.Contains(b, s) {
				t.Errorf("seq %d in two lists", s)
			}
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix := open(t, dir)
	var batch []*record.Record
	for i := range uint64(50) {
		batch = append(batch, rec(i, "crm", "customers", key(t, "id", fmt.Sprint(i%5)), "bob", record.OpUpdate, t0.Add(time.Duration(i)*time.Hour)))
	}
	if err := ix.Apply(batch); err != nil {
		t.Fatal(err)
	}
	before := scan(t, ix, index.EntityList("crm", "customers", "3"), false, 0)
	if len(before) != 10 {
		t.Fatalf("entity 3 has %d postings", len(before))
	}
	// No WAL: only Close's flush makes the writes survive.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = open(t, dir)
	defer ix.Close()
	if w, err := ix.Watermark(); err != nil || w != 50 {
		t.Fatalf("watermark after reopen %d %v", w, err)
	}
	for i := range uint64(50) {
		if seq, ok, err := ix.LookupID(fmt.Sprintf("rec-%d", i)); err != nil || !ok || seq != i {
			t.Fatalf("lookup rec-%d after reopen: %d %v %v", i, seq, ok, err)
		}
	}
	after := scan(t, ix, index.EntityList("crm", "customers", "3"), false, 0)
	if !slices.EqualFunc(before, after, func(a, b index.Posting) bool { return a.Seq == b.Seq && a.OccurredAt.Equal(b.OccurredAt) }) {
		t.Fatalf("entity list changed across reopen: %v vs %v", before, after)
	}
	if got := len(scan(t, ix, index.ActorList("bob"), false, 0)); got != 50 {
		t.Fatalf("actor list after reopen: %d", got)
	}
	if err := ix.Apply([]*record.Record{rec(50, "crm", "customers", key(t, "id", "3"), "", record.OpDelete, t0)}); err != nil {
		t.Fatal(err)
	}
	if w, _ := ix.Watermark(); w != 51 {
		t.Fatalf("watermark %d, want 51", w)
	}
	if got := seqs(scan(t, ix, index.EntityList("crm", "customers", "3"), true, math.MaxUint64)); got[0] != 50 || len(got) != 11 {
		t.Fatalf("entity 3 after more applies: %v", got)
	}
}

// Records may carry any year 0000-9999; the posting must keep the instant
// exactly, including outside the range Unix nanoseconds can express.
func TestOccurredAtOutsideUnixNanoRange(t *testing.T) {
	ix := open(t, t.TempDir())
	times := []time.Time{
		time.Date(1600, 2, 3, 4, 5, 6, 7, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC),
	}
	var recs []*record.Record
	for i, at := range times {
		recs = append(recs, rec(uint64(i), "s", "t", key(t, "id", "1"), "", record.OpInsert, at))
	}
	if err := ix.Apply(recs); err != nil {
		t.Fatal(err)
	}
	got := scan(t, ix, index.TableList("s", "t"), false, 0)
	if len(got) != len(times) {
		t.Fatalf("scanned %d postings, want %d", len(got), len(times))
	}
	for i, p := range got {
		if !p.OccurredAt.Equal(times[i]) {
			t.Errorf("seq %d: occurred_at %v, want %v", p.Seq, p.OccurredAt, times[i])
		}
	}
}

// A reopened index builds its id filter in the background; Settled waits
// for it and for Pebble's compactions, and then holds until more writes.
func TestSettledAfterReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	ix := open(t, dir)
	var batch []*record.Record
	for i := range uint64(5000) {
		batch = append(batch, rec(i, "crm", "customers", key(t, "id", fmt.Sprint(i%50)), "bob", record.OpUpdate, t0))
	}
	if err := ix.Apply(batch); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = open(t, dir)
	defer ix.Close()
	for deadline := time.Now().Add(time.Minute); !ix.Settled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reopened index did not settle within a minute")
		}
	}
	// The filter answers for the stored ids once settled.
	if _, ok, err := ix.LookupID("rec-4999"); err != nil || !ok {
		t.Fatalf("lookup after settling: %v %v", ok, err)
	}
}
