package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// TestAppendBatchMatchesAppend: a batch prepared in parts on several
// goroutines and appended with AppendBatch is stored byte for byte as one
// Append of the same records, answered the same (a repeated id included,
// within the batch and of a record stored before), and survives a reopen.
func TestAppendBatchMatchesAppend(t *testing.T) {
	ctx := context.Background()
	build := func() []*record.Record {
		recs := make([]*record.Record, 300)
		for i := range recs {
			recs[i] = testRecord(i)
		}
		// Within the batch, across parts, and of a record stored before.
		recs[250].ID = recs[10].ID
		recs[299].ID = "id-stored-before"
		return recs
	}
	// open opens a store with its index; close closes both.
	open := func(dir string) (_ *logstore.Store, close func()) {
		ix, err := index.Open(filepath.Join(dir, "index"), nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := logstore.Open(ctx, dir, logstore.Options{Origin: "test.example/log", Hook: ix})
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close(); ix.Close() }
	}
	before := &record.Record{ID: "id-stored-before", Source: record.Source{Name: "crm", Kind: "http", Table: "customers"}, Op: record.OpInsert, Key: []byte(`{"id":1}`)}
	wantDir, gotDir := t.TempDir(), t.TempDir()
	want, closeWant := open(wantDir)
	defer closeWant()
	got, closeGot := open(gotDir)
	for _, s := range []*logstore.Store{want, got} {
		if _, err := s.Append(ctx, []*record.Record{new(*before)}); err != nil {
			t.Fatal(err)
		}
	}
	wantRes, err := want.Append(ctx, build())
	if err != nil {
		t.Fatal(err)
	}
	recs := build()
	b := got.NewBatch()
	parts := make([]*logstore.Part, 3)
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	// The last part comes with its records' bodies, but one, as the API
	// gives those a client sent in their stored form.
	bodies := make([][]byte, 199)
	for i := range bodies {
		if i != 7 {
			bodies[i] = record.AppendBody(nil, recs[101+i])
		}
	}
	for p, bounds := range [][2]int{{0, 100}, {100, 101}, {101, 300}} {
		var given [][]byte
		if p == 2 {
			given = bodies
		}
		wg.Go(func() { parts[p], errs[p] = b.Prepare(ctx, recs[bounds[0]:bounds[1]], given) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	gotRes, err := got.AppendBatch(ctx, b, parts)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotRes) != len(wantRes) {
		t.Fatalf("%d answers, Append gives %d", len(gotRes), len(wantRes))
	}
	for i := range wantRes {
		if gotRes[i] != wantRes[i] {
			t.Errorf("record %d: answer %+v, Append gives %+v", i, gotRes[i], wantRes[i])
		}
	}
	if !gotRes[250].Duplicate || !gotRes[299].Duplicate {
		t.Errorf("repeated ids not answered as duplicates: %+v, %+v", gotRes[250], gotRes[299])
	}
	closeGot()
	got, closeGot = open(gotDir)
	defer closeGot()
	if got.Size() != want.Size() {
		t.Fatalf("size %d after a reopen, Append's %d", got.Size(), want.Size())
	}
	for seq := range want.Size() {
		g, err1 := got.ReadRaw(seq)
		w, err2 := want.ReadRaw(seq)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		// RecordedAt differs between the stores; the rest must not.
		if gr, wr := decodeAt(t, g), decodeAt(t, w); !bytes.Equal(gr, wr) {
			t.Errorf("seq %d: stored %s, Append stores %s", seq, gr, wr)
		}
	}
}

// decodeAt is a stored record's encoding with its append time cleared.
func decodeAt(t *testing.T, raw []byte) []byte {
	t.Helper()
	r, err := record.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	r.RecordedAt = time.Time{}
	return record.Encode(r)
}

// TestAppendBatchRefusals: a part's refused record is named by its index
// in the part, as Append names it in its batch; a part of another batch,
// or an append to a closed store, is refused; nothing is stored.
func TestAppendBatchRefusals(t *testing.T) {
	ctx := context.Background()
	recs := []*record.Record{testRecord(0), testRecord(1), testRecord(2)}
	s, err := logstore.Open(ctx, t.TempDir(), logstore.Options{Origin: "test.example/log", Sealer: refuser{recs[2].ID: true}})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	if _, err := b.Prepare(ctx, recs[1:], nil); !isRecordError(err, 1) {
		t.Errorf("refused record: %v, want a RecordError for index 1", err)
	}
	p, err := b.Prepare(ctx, recs[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendBatch(ctx, s.NewBatch(), []*logstore.Part{p}); err == nil {
		t.Error("a part of another batch was appended")
	}
	if res, err := s.AppendBatch(ctx, b, nil); res != nil || err != nil {
		t.Errorf("no parts: %v, %v", res, err)
	}
	if s.Size() != 0 {
		t.Errorf("%d records stored", s.Size())
	}
	s.Close()
	if _, err := s.AppendBatch(ctx, b, []*logstore.Part{p}); !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("append to a closed store: %v", err)
	}
}

func isRecordError(err error, index int) bool {
	var re *stele.RecordError
	return errors.As(err, &re) && re.Index == index
}

// A store whose sealer changes a record stores the sealed record, not the
// body it came with, even when that body was the record's own.
func TestPrepareGivenBodiesResealed(t *testing.T) {
	ctx := context.Background()
	s, err := logstore.Open(ctx, t.TempDir(), logstore.Options{Origin: "test.example/log", Sealer: rewriter{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := []*record.Record{testRecord(0), testRecord(1)}
	recs[1].Source.Table = "untouched" // rewriter leaves it as it came
	given := [][]byte{record.AppendBody(nil, recs[0]), record.AppendBody(nil, recs[1])}
	b := s.NewBatch()
	p, err := b.Prepare(ctx, recs, given)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendBatch(ctx, b, []*logstore.Part{p}); err != nil {
		t.Fatal(err)
	}
	for seq, want := range [][]byte{record.AppendBody(nil, recs[0]), given[1]} {
		raw, err := s.ReadRaw(uint64(seq))
		if err != nil {
			t.Fatal(err)
		}
		if got := raw[record.HeaderSize:]; !bytes.Equal(got, want) {
			t.Errorf("seq %d: stored %s, want %s", seq, got, want)
		}
	}
	if got, _ := s.ReadRaw(0); !bytes.Contains(got, []byte(`"sealed":true`)) {
		t.Errorf("seq 0 was stored as sent, not sealed: %s", got)
	}
}

// rewriter is a sealer that replaces the after image of every record but
// those of table "untouched".
type rewriter struct{}

func (rewriter) Seal(_ context.Context, r *record.Record) error {
	if r.Source.Table != "untouched" {
		r.After = []byte(`{"sealed":true}`)
	}
	return nil
}
func (rewriter) Sync(context.Context) error                     { return nil }
func (rewriter) Rederive(context.Context, *record.Record) error { return nil }

// TestPrepareGivenBodies: the bodies a part is given are what the store
// stores, unless it seals records, which may change them; a part given
// a body too few is refused.
func TestPrepareGivenBodies(t *testing.T) {
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		opts := logstore.Options{Origin: "test.example/log"}
		if sealed {
			opts.Sealer = refuser{}
		}
		s, err := logstore.Open(ctx, t.TempDir(), opts)
		if err != nil {
			t.Fatal(err)
		}
		recs := []*record.Record{testRecord(0), testRecord(1)}
		// A body that is not the record's shows which one is stored.
		other := testRecord(2)
		other.ID = recs[0].ID
		given := [][]byte{record.AppendBody(nil, other), nil}
		b := s.NewBatch()
		if _, err := b.Prepare(ctx, recs, given[:1]); err == nil {
			t.Error("a part with a body too few was prepared")
		}
		p, err := b.Prepare(ctx, recs, given)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendBatch(ctx, b, []*logstore.Part{p}); err != nil {
			t.Fatal(err)
		}
		for seq, want := range [][]byte{given[0], record.AppendBody(nil, recs[1])} {
			if sealed && seq == 0 {
				want = record.AppendBody(nil, recs[0])
			}
			raw, err := s.ReadRaw(uint64(seq))
			if err != nil {
				t.Fatal(err)
			}
			if got := raw[record.HeaderSize:]; !bytes.Equal(got, want) {
				t.Errorf("sealer %v, seq %d: stored %s, want %s", sealed, seq, got, want)
			}
		}
		s.Close()
	}
}
