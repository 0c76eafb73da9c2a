package logstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

func testRecord(i int) *record.Record {
	return &record.Record{
		ID:         fmt.Sprintf("id-%d", i),
		Source:     record.Source{Name: "crm", Kind: "http", Table: "customers"},
		Op:         record.OpUpdate,
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, i%10)),
		After:      json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"n%d"}`, i%10, i)),
		OccurredAt: time.Unix(1700000000+int64(i), 0).UTC(),
	}
}

func openStore(t *testing.T, dir string) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func appendN(t *testing.T, s *logstore.Store, from, n int) {
	t.Helper()
	recs := make([]*record.Record, n)
	for i := range recs {
		recs[i] = testRecord(from + i)
	}
	res, err := s.Append(context.Background(), recs)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	for i, r := range res {
		if r.Duplicate || r.Seq != uint64(from+i) {
			t.Fatalf("record %d: got %+v, want seq %d", i, r, from+i)
		}
	}
}

func TestAppendReadProveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 1000)
	appendN(t, s, 1000, 37)
	if got := s.Size(); got != 1037 {
		t.Fatalf("size %d, want 1037", got)
	}
	cp, err := s.Checkpoint(context.Background())
	if err != nil || cp.Size != 1037 {
		t.Fatalf("checkpoint: %v %+v", err, cp)
	}
	for _, seq := range []uint64{0, 1, 511, 1000, 1036} {
		raw, err := s.ReadRaw(seq)
		if err != nil {
			t.Fatalf("read %d: %v", seq, err)
		}
		r, err := record.Decode(raw)
		if err != nil || r.Seq != seq || r.ID != fmt.Sprintf("id-%d", seq) {
			t.Fatalf("read %d: %v %+v", seq, err, r)
		}
		p, err := s.InclusionProof(seq, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, cp.Size, rfc6962.DefaultHasher.HashLeaf(raw), p, cp.Root); err != nil {
			t.Fatalf("inclusion %d: %v", seq, err)
		}
	}
	root500, err := s.RootAt(500)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.ConsistencyProof(500, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 500, cp.Size, cons, root500, cp.Root); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Records != 1037 {
		t.Fatalf("verified %d records", rep.Records)
	}
	s = openStore(t, dir)
	defer s.Close()
	if s.Size() != 1037 {
		t.Fatalf("size after reopen %d", s.Size())
	}
	size, root := s.Root()
	if size != cp.Size || string(root) != string(cp.Root) {
		t.Fatalf("root after reopen differs")
	}
	appendN(t, s, 1037, 5)
}

// A record too large for one frame is refused up front: recovery would
// treat such a frame as damage and refuse to open the store.
func TestAppendRefusesOversizedRecord(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 2)
	big := testRecord(2)
	big.After = json.RawMessage(`{"blob":"` + strings.Repeat("x", logstore.MaxRecordSize) + `"}`)
	_, err := s.Append(context.Background(), []*record.Record{testRecord(3), big})
	if !errors.Is(err, logstore.ErrTooLarge) {
		t.Fatalf("append of an oversized record: %v, want ErrTooLarge", err)
	}
	if s.Size() != 2 {
		t.Fatalf("size %d after a refused batch, want 2", s.Size())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	appendN(t, s, 2, 1)
}

// TestLargeCommitFramedInParts: a commit large enough to be framed and
// hashed by several goroutines stores exactly the bytes and leaf hashes
// of framing its records one by one — records of uneven sizes, so the
// parts split at arbitrary offsets, and a duplicate inside the batch,
// which takes no frame — and the directory verifies and reopens.
func TestLargeCommitFramedInParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 3)
	recs := make([]*record.Record, 1200)
	for i := range recs {
		r := testRecord(3 + i)
		r.After = json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"n%d","notes":%q}`, i%10, i, strings.Repeat("x", i%700)))
		recs[i] = r
	}
	dup := *recs[5]
	recs[600] = &dup
	res, err := s.Append(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !res[600].Duplicate || res[600].Seq != 8 || res[601].Seq != 603 {
		t.Fatalf("duplicate inside the batch: %+v, next %+v", res[600], res[601])
	}
	check := func(s *logstore.Store) {
		t.Helper()
		if s.Size() != 1202 {
			t.Fatalf("size %d, want 1202", s.Size())
		}
		for i, r := range recs {
			if i == 600 {
				continue
			}
			want := record.Encode(r)
			raw, err := s.ReadRaw(r.Seq)
			if err != nil || string(raw) != string(want) {
				t.Fatalf("seq %d: stored %q, %v; want %q", r.Seq, raw, err, want)
			}
			leaf, err := s.LeafHash(r.Seq)
			if err != nil || string(leaf) != string(rfc6962.DefaultHasher.HashLeaf(want)) {
				t.Fatalf("seq %d: leaf hash %x, %v", r.Seq, leaf, err)
			}
		}
	}
	check(s)
	if _, err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if rep, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{}); err != nil || rep.Records != 1202 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	s = openStore(t, dir)
	defer s.Close()
	check(s)
}

// refuser is a Sealer that refuses the records whose ids it lists.
type refuser map[string]bool

func (f refuser) Seal(_ context.Context, r *record.Record) error {
	if f[r.ID] {
		return &record.FieldError{Field: "after.name", Reason: "refused"}
	}
	return nil
}
func (refuser) Sync(context.Context) error                     { return nil }
func (refuser) Rederive(context.Context, *record.Record) error { return nil }

// TestLargeBatchReportsLowestRefusal: the records of a large batch are
// prepared by several goroutines, yet a refusal names the lowest refused
// index, as going through the batch in order would, and nothing of the
// batch is appended.
func TestLargeBatchReportsLowestRefusal(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ctx := context.Background()
	recs := make([]*record.Record, 3000)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	for _, refused := range [][]int{{2999}, {1500, 2400}, {130, 2}, {0, 1, 2999}} {
		f := refuser{}
		for _, i := range refused {
			f[recs[i].ID] = true
		}
		s, err := logstore.Open(ctx, t.TempDir(), logstore.Options{Origin: "test.example/log", Sealer: f})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Append(ctx, recs)
		var re *stele.RecordError
		if !errors.As(err, &re) || re.Index != slices.Min(refused) {
			t.Errorf("refusing %v: %v, want a RecordError for index %d", refused, err, slices.Min(refused))
		}
		if s.Size() != 0 {
			t.Errorf("refusing %v: %d records appended", refused, s.Size())
		}
		s.Close()
	}
}
