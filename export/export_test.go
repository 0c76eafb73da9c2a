package export_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/export"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

type env struct {
	store *logstore.Store
	ex    *export.Exporter
	dir   string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
		if err := ix.Close(); err != nil {
			t.Error(err)
		}
	})
	return &env{store: store, ex: export.New(store, query.New(store, ix)), dir: t.TempDir()}
}

var base = time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)

// sample returns varied records: every optional member, a sealed envelope
// as a personal-data field is stored, HTML-ish and non-ASCII text, an empty
// tx object, multi-column keys and nanosecond times.
func sample(i int) string {
	actor := []string{"alice", "bob", "svc-billing"}[i%3]
	table := []string{"customers", "orders"}[i%2]
	occurred := base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano)
	switch i % 4 {
	case 0:
		return fmt.Sprintf(`{"source":{"name":"crm","kind":"postgres","database":"crm","schema":"public","table":%q},"op":"update","key":{"id":%d},
			"before":{"id":%d,"email":{"$sealed":"v1.AAAA%d"},"note":"<a&b>"},"after":{"id":%d,"email":{"$sealed":"v1.BBBB%d"},"note":"ünïcode \"q\""},
			"actor":{"id":%q,"app":"crm-web","ip":"10.0.0.%d"},"tx":{"id":"tx-%d","position":"0/%X","index":%d,"commit_time":%q},
			"cause":{"type":"ticket","ticket":%d},"schema":{"subject":"crm.%s","version":3},"occurred_at":%q}`,
			table, i, i, i, i, i, actor, i%250, i, i*16, i%5, occurred, i, table, occurred)
	case 1:
		return fmt.Sprintf(`{"source":{"name":"shop","table":%q},"op":"insert","key":{"region":"eu","n":%d},"after":{"total":12.50,"n":%d},"actor":{"id":%q},"tx":{},"occurred_at":%q}`,
			table, i, i, actor, occurred)
	case 2:
		return fmt.Sprintf(`{"source":{"name":"crm","table":%q},"op":"delete","key":{"id":%d},"before":{"id":%d},"occurred_at":%q}`, table, i, i, occurred)
	default:
		return fmt.Sprintf(`{"source":{"name":"events","kind":"http","table":"signup"},"op":"event","key":{"id":"e%d"},"after":{"plan":"pro"},"actor":{"id":%q,"request_id":"r-%d"},"occurred_at":%q}`,
			i, actor, i, occurred)
	}
}

func (e *env) appendN(t testing.TB, from, n int) {
	t.Helper()
	recs := make([]*record.Record, 0, n)
	for i := from; i < from+n; i++ {
		r, err := record.ParseIngest([]byte(sample(i)), record.IngestOptions{Now: base})
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		recs = append(recs, r)
	}
	for len(recs) > 0 {
		k := min(len(recs), 1000)
		if _, err := e.store.Append(context.Background(), recs[:k]); err != nil {
			t.Fatal(err)
		}
		recs = recs[k:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.store.WaitIndexed(ctx, e.store.Size()); err != nil {
		t.Fatal(err)
	}
}

// export writes an export of the whole current log through f into a file
// and returns its path.
func (e *env) export(t testing.TB, format export.Format, f query.Filter) (string, *export.Summary) {
	t.Helper()
	cp, err := e.store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, fmt.Sprintf("x-%d.%s", time.Now().UnixNano(), format))
	data, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := os.Create(path + export.ProofSuffix)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.ex.Write(context.Background(), export.Options{Format: format, Filter: f, Size: cp.Size,
		Checkpoint: cp, VerifierKey: e.store.Keys().VerifierKey}, data, pf)
	if err != nil {
		t.Fatalf("export %s: %v", format, err)
	}
	if err := data.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pf.Close(); err != nil {
		t.Fatal(err)
	}
	return path, sum
}

func (e *env) verify(t testing.TB, path string) (*export.VerifyReport, error) {
	t.Helper()
	return export.VerifyFile(context.Background(), path, export.VerifyOptions{VerifierKey: e.store.Keys().VerifierKey})
}

// wantSeqs lists the seqs of the log that f selects, read straight from the
// store.
func (e *env) wantSeqs(t testing.TB, keep func(*record.Record) bool) []uint64 {
	var out []uint64
	for seq := range e.store.Size() {
		r, err := e.store.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		if keep(r) {
			out = append(out, seq)
		}
	}
	return out
}

// readRows parses an export independently of the package's reader: JSONL
// as API records, CSV with encoding/csv, Parquet with parquet-go into a
// struct of this test's own, and returns each row's record JSON.
type pqRow struct {
	Seq        int64     `parquet:"seq"`
	ID         string    `parquet:"id"`
	SourceName string    `parquet:"source_name"`
	Table      string    `parquet:"table"`
	Op         string    `parquet:"op"`
	Key        string    `parquet:"key"`
	After      *string   `parquet:"after,optional"`
	Changed    []string  `parquet:"changed,list"`
	ActorID    *string   `parquet:"actor_id,optional"`
	Tx         *string   `parquet:"tx,optional"`
	OccurredAt time.Time `parquet:"occurred_at,timestamp(nanosecond)"`
	RecordedAt time.Time `parquet:"recorded_at,timestamp(nanosecond)"`
}

func TestRoundTripEachFormat(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 203)
	for _, format := range export.Formats {
		t.Run(string(format), func(t *testing.T) {
			path, sum := e.export(t, format, query.Filter{})
			if !sum.Complete || sum.Records != 203 || sum.Size != 203 {
				t.Fatalf("summary %+v, want complete with 203 records", sum)
			}
			rep, err := e.verify(t, path)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if rep.Records != 203 || !rep.Complete || !rep.KeyPinned || rep.Format != format {
				t.Fatalf("report %+v", rep)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch format {
			case export.JSONL:
				lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
				if len(lines) != 203 {
					t.Fatalf("%d lines", len(lines))
				}
				for seq, line := range lines {
					r, err := e.store.Read(uint64(seq))
					if err != nil {
						t.Fatal(err)
					}
					if want := string(record.AppendJSON(nil, r)); line != want {
						t.Fatalf("line %d:\n got %s\nwant %s", seq, line, want)
					}
				}
			case export.CSV:
				rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != 204 || strings.Join(rows[0], ",") != strings.Join(export.Columns, ",") {
					t.Fatalf("%d rows, header %v", len(rows), rows[0])
				}
				col := func(row []string, name string) string {
					for i, c := range export.Columns {
						if c == name {
							return row[i]
						}
					}
					t.Fatalf("no column %s", name)
					return ""
				}
				for seq, row := range rows[1:] {
					r, _ := e.store.Read(uint64(seq))
					if col(row, "seq") != fmt.Sprint(seq) || col(row, "key") != string(r.Key) || col(row, "after") != string(r.After) ||
						col(row, "before") != string(r.Before) || col(row, "actor_id") != r.ActorID() ||
						col(row, "occurred_at") != r.OccurredAt.Format(time.RFC3339Nano) {
						t.Fatalf("row %d = %q does not match record %s", seq, row, record.AppendJSON(nil, r))
					}
				}
			case export.Parquet:
				rows, err := parquet.Read[pqRow](bytes.NewReader(raw), int64(len(raw)))
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != 203 {
					t.Fatalf("%d parquet rows", len(rows))
				}
				for seq, row := range rows {
					r, _ := e.store.Read(uint64(seq))
					after := ""
					if row.After != nil {
						after = *row.After
					}
					actorID := ""
					if row.ActorID != nil {
						actorID = *row.ActorID
					}
					if row.Seq != int64(seq) || row.ID != r.ID || row.SourceName != r.Source.Name || row.Table != r.Source.Table ||
						row.Op != string(r.Op) || row.Key != string(r.Key) || after != string(r.After) || actorID != r.ActorID() ||
						strings.Join(row.Changed, ",") != strings.Join(r.Changed, ",") ||
						!row.OccurredAt.Equal(r.OccurredAt) || !row.RecordedAt.Equal(r.RecordedAt) {
						t.Fatalf("parquet row %d = %+v does not match record %s", seq, row, record.AppendJSON(nil, r))
					}
					if (r.Tx == nil) != (row.Tx == nil) {
						t.Fatalf("parquet row %d: tx %v for record tx %+v", seq, row.Tx, r.Tx)
					}
				}
				if rows[1].Tx == nil || *rows[1].Tx != "{}" {
					t.Errorf("an empty tx object must stay distinguishable from no tx; got %v", rows[1].Tx)
				}
			}
		})
	}
}

func TestSealedFieldsExportedAsStored(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 4)
	path, _ := e.export(t, export.JSONL, query.Filter{})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"email":{"$sealed":"v1.BBBB0"}`)) {
		t.Fatalf("sealed envelope not exported as stored:\n%s", raw)
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 120)
	cases := []struct {
		name string
		f    query.Filter
		keep func(*record.Record) bool
	}{
		{"source", query.Filter{Source: "crm"}, func(r *record.Record) bool { return r.Source.Name == "crm" }},
		{"source+table", query.Filter{Source: "crm", Table: "orders"}, func(r *record.Record) bool {
			return r.Source.Name == "crm" && r.Source.Table == "orders"
		}},
		{"table alone", query.Filter{Table: "customers"}, func(r *record.Record) bool { return r.Source.Table == "customers" }},
		{"actor", query.Filter{Actor: "bob"}, func(r *record.Record) bool { return r.ActorID() == "bob" }},
		{"op", query.Filter{Op: record.OpDelete}, func(r *record.Record) bool { return r.Op == record.OpDelete }},
		{"key", query.Filter{Source: "crm", Table: "customers", Key: "8"}, func(r *record.Record) bool {
			return r.Source.Name == "crm" && r.Source.Table == "customers" && string(r.Key) == `{"id":8}`
		}},
		{"since+until", query.Filter{Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, func(r *record.Record) bool {
			return !r.OccurredAt.Before(base.Add(10*time.Minute)) && r.OccurredAt.Before(base.Add(20*time.Minute))
		}},
		{"nothing matches", query.Filter{Source: "nope"}, func(*record.Record) bool { return false }},
	}
	for _, c := range cases {
		for _, format := range export.Formats {
			t.Run(c.name+"/"+string(format), func(t *testing.T) {
				want := e.wantSeqs(t, c.keep)
				path, sum := e.export(t, format, c.f)
				if sum.Complete {
					t.Fatal("a filtered export must not be complete")
				}
				rep, err := e.verify(t, path)
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if rep.Records != uint64(len(want)) || sum.Records != uint64(len(want)) {
					t.Fatalf("exported %d, verified %d, want %d (%v)", sum.Records, rep.Records, len(want), want)
				}
				got := exportedSeqs(t, path)
				if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("seqs %v, want %v", got, want)
				}
			})
		}
	}
	if len(e.wantSeqs(t, cases[5].keep)) != 1 {
		t.Fatal("the key case must select exactly one record")
	}
}

func exportedSeqs(t *testing.T, path string) []uint64 {
	raw, err := os.ReadFile(path + export.ProofSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Leaves []struct {
			Seq uint64 `json:"seq"`
		} `json:"leaves"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("the proof is not one JSON document: %v", err)
	}
	out := []uint64{}
	for _, l := range p.Leaves {
		out = append(out, l.Seq)
	}
	return out
}

func TestExportCoversOnlyTheCheckpoint(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 50)
	cp, err := e.store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.appendN(t, 50, 30)
	later, err := e.store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []query.Filter{{}, {Source: "crm"}} {
		var data, pf bytes.Buffer
		sum, err := e.ex.Write(context.Background(), export.Options{Format: export.JSONL, Filter: f, Size: cp.Size,
			Checkpoint: later, VerifierKey: e.store.Keys().VerifierKey}, &data, &pf)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(data.Bytes(), []byte("\n")); uint64(n) != sum.Records || (f.Source == "" && n != 50) {
			t.Fatalf("filter %+v: %d rows, summary %+v", f, n, sum)
		}
		rep, err := export.Verify(context.Background(), bytes.NewReader(data.Bytes()), int64(data.Len()), &pf, export.VerifyOptions{VerifierKey: e.store.Keys().VerifierKey})
		if err != nil {
			t.Fatalf("filter %+v: size 50 against a checkpoint of 80: %v", f, err)
		}
		if rep.Size != 50 || rep.Checkpoint.Size != 80 {
			t.Fatalf("report %+v", rep)
		}
	}
	_, err = e.ex.Write(context.Background(), export.Options{Format: export.CSV, Size: later.Size + 1, Checkpoint: later}, nil, nil)
	if !errors.Is(err, export.ErrSize) {
		t.Fatalf("size beyond the checkpoint: %v, want ErrSize", err)
	}
}

func TestBadFilterRefused(t *testing.T) {
	e := newEnv(t)
	cp := e.store.LatestCheckpoint()
	for field, f := range map[string]query.Filter{
		"key":   {Key: "1", Source: "crm"},
		"op":    {Op: "rename"},
		"until": {Since: base, Until: base},
	} {
		_, err := e.ex.Write(context.Background(), export.Options{Format: export.JSONL, Filter: f, Checkpoint: cp}, nil, nil)
		var fe *record.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("filter %+v: %v, want a FieldError naming %s", f, err, field)
		}
	}
	if _, err := export.ParseFormat("xlsx"); !errors.Is(err, export.ErrFormat) {
		t.Errorf("ParseFormat(xlsx) = %v", err)
	}
}

// tamper rewrites the data file (rows only) or the proof with fn.
func rewrite(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := fn(raw)
	if bytes.Equal(out, raw) {
		t.Fatal("tampering changed nothing")
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func lines(b []byte) [][]byte { return bytes.SplitAfter(b, []byte("\n")) }

func swapLines(i, j int) func([]byte) []byte {
	return func(b []byte) []byte {
		l := lines(b)
		l[i], l[j] = l[j], l[i]
		return bytes.Join(l, nil)
	}
}

func dropLine(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		l := lines(b)
		return bytes.Join(append(l[:i:i], l[i+1:]...), nil)
	}
}

func TestTamperingDetected(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 40)
	type tc struct {
		name   string
		format export.Format
		filter query.Filter
		tamper func(t *testing.T, path string)
		want   []string
	}
	crm := query.Filter{Source: "crm"}
	var cases []tc
	for _, f := range []query.Filter{{}, crm} {
		kind := "complete"
		if f.Source != "" {
			kind = "filtered"
		}
		// In a complete export row n holds seq n-1; in the crm export
		// (samples 0 and 2 of every 4) row 3 holds seq 4.
		seq3 := map[string]string{"complete": "row 3 (seq 2)", "filtered": "row 3 (seq 4)"}[kind]
		cases = append(cases,
			tc{kind + " jsonl changed value", export.JSONL, f, func(t *testing.T, p string) {
				rewrite(t, p, func(b []byte) []byte {
					l := lines(b)
					l[2] = bytes.Replace(l[2], []byte(`"key":{"id":`), []byte(`"key":{"id":1`), 1)
					return bytes.Join(l, nil)
				})
			}, []string{seq3, "does not hash to its proven leaf"}},
			tc{kind + " csv changed value", export.CSV, f, func(t *testing.T, p string) {
				rewrite(t, p, func(b []byte) []byte {
					l := lines(b) // line 0 is the header
					l[3] = bytes.Replace(l[3], []byte(`"{""id"":`), []byte(`"{""id"":7`), 1)
					return bytes.Join(l, nil)
				})
			}, []string{seq3, "does not hash to its proven leaf"}},
			tc{kind + " csv derived column", export.CSV, f, func(t *testing.T, p string) {
				rewrite(t, p, func(b []byte) []byte {
					l := lines(b)
					l[1] = bytes.Replace(l[1], []byte(",alice,"), []byte(",mallory,"), 1)
					return bytes.Join(l, nil)
				})
			}, []string{"row 1 (seq 0)", "column actor_id"}},
			tc{kind + " jsonl dropped row", export.JSONL, f, func(t *testing.T, p string) { rewrite(t, p, dropLine(2)) },
				[]string{"row 3", "rows were dropped"}},
			tc{kind + " jsonl dropped last row", export.JSONL, f, func(t *testing.T, p string) {
				rewrite(t, p, func(b []byte) []byte { l := lines(b); return bytes.Join(l[:len(l)-2], nil) })
			}, []string{"the data file ends", "rows were dropped"}},
			tc{kind + " csv reordered rows", export.CSV, f, func(t *testing.T, p string) { rewrite(t, p, swapLines(3, 4)) },
				[]string{"row 3", "reordered"}},
			tc{kind + " jsonl reordered rows and proof", export.JSONL, f, func(t *testing.T, p string) {
				rewrite(t, p, swapLines(1, 2))
				rewrite(t, p+export.ProofSuffix, swapLines(1, 2))
			}, []string{"reordered"}},
			tc{kind + " forged checkpoint", export.JSONL, f, func(t *testing.T, p string) {
				rewrite(t, p+export.ProofSuffix, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`test.example/log\n40\n`), []byte(`test.example/log\n41\n`), 1)
				})
			}, []string{"checkpoint does not verify"}},
		)
	}
	cases = append(cases,
		tc{"parquet changed value", export.Parquet, crm, func(t *testing.T, p string) {
			rewriteParquet(t, p, func(rows []map[string]any) { rows[2]["after"] = `{"id":99}` })
		}, []string{"row 3 (seq 4)", "does not hash to its proven leaf"}},
		tc{"parquet dropped row", export.Parquet, query.Filter{}, func(t *testing.T, p string) {
			rewriteParquet(t, p, func(rows []map[string]any) { rows[5] = nil })
		}, []string{"row 6", "rows were dropped"}},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, _ := e.export(t, c.format, c.filter)
			if _, err := e.verify(t, path); err != nil {
				t.Fatalf("untampered export: %v", err)
			}
			c.tamper(t, path)
			_, err := e.verify(t, path)
			if !errors.Is(err, export.ErrVerify) {
				t.Fatalf("tampered export: %v, want ErrVerify", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// rewriteParquet rewrites a Parquet export through parquet-go's generic row
// API, as a tamperer with ordinary tools would; a nil row is dropped.
func rewriteParquet(t *testing.T, path string, fn func([]map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r := parquet.NewGenericReader[map[string]any](f, f.Schema())
	rows := make([]map[string]any, f.NumRows())
	for i := range rows {
		rows[i] = map[string]any{}
	}
	if n, err := r.Read(rows); n != len(rows) {
		t.Fatalf("read %d of %d rows: %v", n, len(rows), err)
	}
	fn(rows)
	var out bytes.Buffer
	w := parquet.NewGenericWriter[map[string]any](&out, f.Schema())
	for _, row := range rows {
		if row == nil {
			continue
		}
		if _, err := w.Write([]map[string]any{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestForeignKeyRefused(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 10)
	path, _ := e.export(t, export.CSV, query.Filter{})
	// A forger re-signs the checkpoint with a key of their own and puts
	// that key in the proof: self-consistent, but not the log's key.
	skey, vkey, err := note.GenerateKey(nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp := e.store.LatestCheckpoint()
	n, err := note.Open(cp.Note, note.VerifierList(e.store.Keys().Verifier))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: n.Text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, path+export.ProofSuffix, func(b []byte) []byte {
		oldNote, _ := json.Marshal(string(cp.Note))
		newNote, _ := json.Marshal(string(forged))
		b = bytes.Replace(b, oldNote, newNote, 1)
		return bytes.Replace(b, []byte(e.store.Keys().VerifierKey), []byte(vkey), 1)
	})
	if _, err := e.verify(t, path); !errors.Is(err, export.ErrVerify) || !strings.Contains(err.Error(), "checkpoint does not verify") {
		t.Fatalf("pinned key: %v, want a checkpoint failure", err)
	}
	rep, err := export.VerifyFile(context.Background(), path, export.VerifyOptions{})
	if err != nil || rep.KeyPinned {
		t.Fatalf("unpinned: %v %+v: the export is self-consistent and must say the key was not pinned", err, rep)
	}
}

func TestReadHookNeverReveals(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 8)
	cp, err := e.store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A caller's context that would reveal personal data to a query.
	ctx := query.WithReadHook(context.Background(), func(_ context.Context, r *record.Record) error {
		r.After = json.RawMessage(`{"email":"alice@example.com"}`)
		return nil
	})
	var data, pf bytes.Buffer
	if _, err := e.ex.Write(ctx, export.Options{Format: export.JSONL, Filter: query.Filter{Source: "crm"}, Size: cp.Size,
		Checkpoint: cp, VerifierKey: e.store.Keys().VerifierKey}, &data, &pf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data.Bytes(), []byte("alice@example.com")) || !bytes.Contains(data.Bytes(), []byte(`"$sealed"`)) {
		t.Fatalf("export passed records through the read hook:\n%s", data.Bytes())
	}
}

func TestEmptyLogExports(t *testing.T) {
	e := newEnv(t)
	for _, format := range export.Formats {
		path, sum := e.export(t, format, query.Filter{})
		if sum.Records != 0 {
			t.Fatalf("%s: %d records from an empty log", format, sum.Records)
		}
		if rep, err := e.verify(t, path); err != nil || rep.Records != 0 {
			t.Fatalf("%s: empty export: %v %+v", format, err, rep)
		}
	}
}
