package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/sysrecord"
)

// TestRederiveMatchesSeal: what Rederive rebuilds from a stored record is
// what Seal derived before sealing it.
func TestRederiveMatchesSeal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ins := customer(t, "7", alice, f.clock.Add(-time.Hour))
	upd := customer(t, "7", strings.ReplaceAll(alice, "alice@example.com", "alice@new.example"), f.clock.Add(-time.Hour))
	upd.ID, upd.Op, upd.Before = "rec-7-update", record.OpUpdate, ins.After
	for _, r := range []*record.Record{ins, upd} {
		if err := f.g.Seal(ctx, r); err != nil {
			t.Fatal(err)
		}
		want := *r.Derived
		stored, err := record.Decode(record.Encode(r))
		if err != nil {
			t.Fatal(err)
		}
		if stored.Derived != nil {
			t.Fatal("Derived survived encoding; the log must never hold it")
		}
		if err := f.g.Rederive(ctx, stored); err != nil {
			t.Fatal(err)
		}
		got := stored.Derived
		if got == nil || !slices.Equal(got.Subjects, want.Subjects) || !got.Sealed {
			t.Fatalf("%s: rederived %+v, sealing derived %+v", r.ID, got, want)
		}
		if !sameTerms(got.Terms, want.Terms) {
			t.Errorf("%s: rederived terms %v, sealing derived %v", r.ID, got.Terms, want.Terms)
		}
	}
	if n := len(upd.Derived.Terms); n != 2 {
		t.Fatalf("the update's before and after emails give %d terms, want 2", n)
	}
}

func sameTerms(a, b []record.Term) bool {
	key := func(ts []record.Term) []string {
		var out []string
		for _, t := range ts {
			out = append(out, string(t.Token)+"\x00"+t.Subject)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// TestRebuiltIndexKeepsPersonalDataEntries: an index rebuilt from the log
// (as after a crash, or by `stele reindex`) holds the same subject counts
// and blind-index entries as the live one, and nothing for an erased
// subject.
func TestRebuiltIndexKeepsPersonalDataEntries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	open := func(ixDir string) (*logstore.Store, *index.Index) {
		t.Helper()
		ix, err := index.Open(ixDir, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Hook: ix, Sealer: f.g})
		if err != nil {
			t.Fatal(err)
		}
		return st, ix
	}
	st, live := open(filepath.Join(dir, "index"))
	closeLive := sync.OnceFunc(func() { st.Close(); live.Close() })
	t.Cleanup(closeLive)
	bob := strings.ReplaceAll(strings.ReplaceAll(alice, `"id":7`, `"id":8`), "alice@example.com", "bob@example.com")
	var recs []*record.Record
	for i := range 3 {
		at := f.clock.Add(-time.Duration(i+1) * time.Hour)
		a, b := customer(t, "7", alice, at), customer(t, "8", bob, at)
		a.ID, b.ID = fmt.Sprintf("rec-7-%d", i), fmt.Sprintf("rec-8-%d", i)
		recs = append(recs, a, b)
	}
	if _, err := st.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	ledger := NewLedger(f.g, st, live)
	if _, err := ledger.Erase(ctx, EraseRequest{Subject: "7", By: auth.Principal{Name: "dpo", Role: auth.RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	// One more record for 7, sealed under its new key, after the receipt.
	later := customer(t, "7", alice, *f.clock)
	later.ID = "rec-7-after-erasure"
	if _, err := st.Append(ctx, []*record.Record{later}); err != nil {
		t.Fatal(err)
	}
	if err := st.WaitIndexed(ctx, st.Size()); err != nil {
		t.Fatal(err)
	}
	type state struct {
		count7, count8 uint64
		alice, bob     []uint64
	}
	read := func(ix *index.Index) state {
		t.Helper()
		var s state
		var err error
		if s.count7, err = ix.SubjectCount(f.g.subjectName("default", "7")); err != nil {
			t.Fatal(err)
		}
		if s.count8, err = ix.SubjectCount(f.g.subjectName("default", "8")); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			email string
			into  *[]uint64
		}{{"alice@example.com", &s.alice}, {"bob@example.com", &s.bob}} {
			if err := ix.SearchBlind(f.g.BlindToken("email", q.email), func(p index.Posting) bool {
				*q.into = append(*q.into, p.Seq)
				return true
			}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	want := read(live)
	laterSeq := st.Size() - 1
	if want.count7 != 1 || want.count8 != 3 || len(want.bob) != 3 || !slices.Equal(want.alice, []uint64{laterSeq}) {
		t.Fatalf("live index: %+v; want 7 counted once (after its erasure), 8 three times, alice found only after the erasure", want)
	}
	closeLive()

	st, rebuilt := open(filepath.Join(dir, "rebuilt"))
	defer func() { st.Close(); rebuilt.Close() }()
	if got := read(rebuilt); got.count7 != want.count7 || got.count8 != want.count8 || !slices.Equal(got.alice, want.alice) || !slices.Equal(got.bob, want.bob) {
		t.Fatalf("rebuilt index: %+v, live index: %+v", got, want)
	}
}

// TestRederiveReceiptNamesErasedSubjects: a receipt read back from the log
// purges again the subjects it names.
func TestRederiveReceiptNamesErasedSubjects(t *testing.T) {
	f := newFixture(t)
	after, _ := json.Marshal(map[string]any{"receipt": sysrecord.Receipt{Type: "erasure", Subjects: []sysrecord.SubjectRef{{Group: "default", Ref: "s1"}, {Group: "g2", Ref: "s2"}}}})
	r, err := sysrecord.Event(sysrecord.ErasuresTable, "erasure", "receipt", "x", after, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.g.Rederive(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.Derived == nil || !slices.Equal(r.Derived.Erased, []string{"s1", "s2"}) {
		t.Fatalf("derived %+v, want erased s1, s2", r.Derived)
	}
	// The same record from a source that is not Stele's own purges nothing.
	r.Derived, r.Source.Name = nil, "crm"
	if err := f.g.Rederive(context.Background(), r); err != nil || r.Derived != nil {
		t.Fatalf("a look-alike receipt derived %+v (%v)", r.Derived, err)
	}
}
