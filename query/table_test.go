package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// tableSim applies changes to a table the test models itself, keeping the
// table's full contents after each change: the ground truth a state query
// must match.
type tableSim struct {
	rows map[int]map[string]any
	// snaps[i] is the table after change i, at times[i].
	snaps []map[int]map[string]any
	times []time.Time
	recs  []*record.Record
}

func (s *tableSim) commit(r *record.Record) {
	s.recs = append(s.recs, r)
	s.times = append(s.times, r.OccurredAt)
	snap := make(map[int]map[string]any, len(s.rows))
	for k, row := range s.rows {
		snap[k] = maps.Clone(row)
	}
	s.snaps = append(s.snaps, snap)
}

// at is the table as it was at t: after the last change at or before t.
func (s *tableSim) at(t time.Time) map[int]map[string]any {
	out := map[int]map[string]any{}
	for i, ct := range s.times {
		if !ct.After(t) {
			out = s.snaps[i]
		}
	}
	return out
}

func TestTableStateAtMatchesGroundTruth(t *testing.T) {
	v := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 7))
	sim := &tableSim{rows: map[int]map[string]any{}}
	src := record.Source{Name: "crm", Kind: "postgres", Table: "accounts"}
	now := base
	for i := range 1500 {
		// Several changes share a commit time (one transaction), so the
		// boundary at exactly that time is exercised.
		if rng.IntN(3) > 0 {
			now = now.Add(time.Duration(1+rng.IntN(90)) * time.Second)
		}
		r := &record.Record{ID: fmt.Sprintf("t-%d", i), Source: src, OccurredAt: now}
		k := rng.IntN(120)
		row, exists := sim.rows[k]
		switch p := rng.IntN(1000); {
		case p < 4:
			r.Op = record.OpTruncate
			r.Key = mustJSON(map[string]string{"table": "accounts"})
			sim.rows = map[int]map[string]any{}
		case p < 10:
			r.Op = record.OpDDL
			r.Key = mustJSON(map[string]string{"table": "accounts"})
			r.After = mustJSON(map[string]string{"statement": "ALTER TABLE accounts ADD COLUMN note text"})
		case !exists:
			row = map[string]any{"id": float64(k), "name": fmt.Sprintf("n%d", i), "balance": float64(rng.IntN(1000))}
			r.Op, r.Key, r.After = record.OpInsert, entityKey(k), mustJSON(row)
			sim.rows[k] = row
		case p < 650:
			// A partial after image: only the changed columns, as a
			// capture with default replica identity sends for TOASTed
			// columns; the model applies it to its own full row.
			changes := map[string]any{"balance": float64(rng.IntN(1000))}
			if p%3 == 0 {
				changes["name"] = fmt.Sprintf("u%d", i)
			}
			if p%7 == 0 {
				changes["note"] = fmt.Sprintf("note %d", i)
			}
			r.Op, r.Key, r.After = record.OpUpdate, entityKey(k), mustJSON(changes)
			maps.Copy(row, changes)
		case p < 700:
			r.Op, r.Key = record.OpEvent, entityKey(k)
			r.Cause = mustJSON(map[string]string{"type": "viewed"})
		case p < 760:
			row = map[string]any{"id": float64(k), "name": fmt.Sprintf("s%d", i), "balance": float64(0)}
			r.Op, r.Key, r.After = record.OpSnapshot, entityKey(k), mustJSON(row)
			sim.rows[k] = row
		default:
			r.Op, r.Key, r.Before = record.OpDelete, entityKey(k), mustJSON(row)
			delete(sim.rows, k)
		}
		sim.commit(r)
	}
	// Another table of the same source and a same-named table of another
	// source must not leak in.
	noise := []*record.Record{
		{ID: "n-1", Source: record.Source{Name: "crm", Kind: "postgres", Table: "orders"}, Op: record.OpInsert, Key: entityKey(1), After: mustJSON(map[string]int{"id": 1}), OccurredAt: base.Add(time.Hour)},
		{ID: "n-2", Source: record.Source{Name: "billing", Kind: "mysql", Table: "accounts"}, Op: record.OpInsert, Key: entityKey(2), After: mustJSON(map[string]int{"id": 2}), OccurredAt: base.Add(time.Hour)},
		{ID: "n-3", Source: record.Source{Name: "crm", Kind: "postgres", Table: "accountsx"}, Op: record.OpInsert, Key: entityKey(3), After: mustJSON(map[string]int{"id": 3}), OccurredAt: base.Add(time.Hour)},
	}
	for i := 0; i < len(sim.recs); i += 50 {
		v.append(t, sim.recs[i:min(i+50, len(sim.recs))]...)
	}
	v.append(t, noise...)

	truncates := 0
	for _, r := range sim.recs {
		if r.Op == record.OpTruncate {
			truncates++
		}
	}
	if truncates < 2 {
		t.Fatalf("only %d truncates: the data set does not exercise them", truncates)
	}

	ctx := context.Background()
	instants := []time.Time{base.Add(-time.Second), base, sim.times[len(sim.times)-1], sim.times[len(sim.times)-1].Add(time.Hour)}
	for i := 0; i < len(sim.times); i += 37 {
		instants = append(instants, sim.times[i], sim.times[i].Add(-time.Nanosecond), sim.times[i].Add(time.Nanosecond))
	}
	for i, r := range sim.recs {
		if r.Op == record.OpTruncate {
			instants = append(instants, sim.times[i], sim.times[i].Add(-time.Nanosecond))
			if i > 0 {
				instants = append(instants, sim.times[i-1])
			}
		}
	}
	nonEmpty := 0
	for _, at := range instants {
		want := sim.at(at)
		if len(want) > 0 {
			nonEmpty++
		}
		got := map[int]map[string]any{}
		var order []string
		err := v.e.TableStateAt(ctx, "crm", "accounts", at, func(u query.Unit) error {
			k, err := strconv.Atoi(u.Key)
			if err != nil {
				return fmt.Errorf("unit key %q: %w", u.Key, err)
			}
			if _, dup := got[k]; dup {
				return fmt.Errorf("unit %d served twice", k)
			}
			var row map[string]any
			if err := json.Unmarshal(u.State, &row); err != nil {
				return err
			}
			got[k] = row
			order = append(order, u.Key)
			// The unit's seq is the newest change to it in effect at at.
			rec := sim.recs[u.Seq]
			if rec.OccurredAt.After(at) || !rec.OccurredAt.Equal(u.OccurredAt) {
				return fmt.Errorf("unit %d: seq %d occurred at %s, unit says %s, at %s", k, u.Seq, rec.OccurredAt, u.OccurredAt, at)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("at %s: %v", at, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("table at %s:\n got  %v\n want %v", at, got, want)
		}
		// Order: shorter keys first, then bytewise.
		if !slices.IsSortedFunc(order, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return compareStrings(a, b)
		}) {
			t.Fatalf("units not in key order: %v", order)
		}

		// Paging yields the same units, in the same order.
		var paged []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("paging does not end")
			}
			p, err := v.e.TableStatePage(ctx, "crm", "accounts", at, 7, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Units) > 7 {
				t.Fatalf("page of %d units", len(p.Units))
			}
			for _, u := range p.Units {
				paged = append(paged, u.Key)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if !slices.Equal(paged, order) {
			t.Fatalf("paged at %s: %v, streamed %v", at, paged, order)
		}
	}
	if nonEmpty < len(instants)/2 {
		t.Fatalf("only %d of %d instants have rows", nonEmpty, len(instants))
	}

	var n int
	if err := v.e.TableStateAt(ctx, "billing", "accounts", base.Add(2*time.Hour), func(u query.Unit) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("billing.accounts: %v, %d units", err, n)
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TableStateAt agrees with StateAt for every entity on the random history
// of query_test.go, where occurred_at is not in log order.
func TestTableStateAtAgreesWithStateAt(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 800)
	all := v.all(t)
	ctx := context.Background()
	for _, i := range []int{0, 100, 250, 400, 555, 799} {
		for _, at := range []time.Time{all[i].OccurredAt, all[i].OccurredAt.Add(-time.Nanosecond)} {
			for _, tb := range tables {
				got := map[string]query.Unit{}
				err := v.e.TableStateAt(ctx, tb.source, tb.name, at, func(u query.Unit) error {
					got[u.Key] = u
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for e := range 50 {
					if tables[e%3] != tb {
						continue
					}
					key := strconv.Itoa(e)
					st, err := v.e.StateAt(ctx, tb.source, tb.name, key, at)
					u, ok := got[key]
					if errors.Is(err, query.ErrNotFound) {
						if ok {
							t.Fatalf("%v key %s at %s: table state has %s, StateAt says not found", tb, key, at, u.State)
						}
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					if !ok || string(u.State) != string(st.State) || u.Seq != st.Seq || !u.OccurredAt.Equal(st.OccurredAt) {
						t.Fatalf("%v key %s at %s: table state %+v (present %v), StateAt %+v", tb, key, at, u, ok, st)
					}
					delete(got, key)
				}
				// The only other key is the table's own (truncate/ddl
				// records), which never holds a state.
				if len(got) != 0 {
					t.Fatalf("%v at %s: extra units %v", tb, at, got)
				}
			}
		}
	}
}

func TestTableStateErrors(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 200)
	ctx := context.Background()
	at := base.Add(1000 * time.Hour)
	var fe *record.FieldError
	if err := v.e.TableStateAt(ctx, "", "customers", at, func(query.Unit) error { return nil }); !errors.As(err, &fe) || fe.Field != "source" {
		t.Errorf("no source: %v", err)
	}
	if err := v.e.TableStateAt(ctx, "crm", "", at, func(query.Unit) error { return nil }); !errors.As(err, &fe) || fe.Field != "table" {
		t.Errorf("no table: %v", err)
	}
	if _, err := v.e.TableStatePage(ctx, "crm", "customers", at, query.MaxLimit+1, ""); !errors.As(err, &fe) || fe.Field != "limit" {
		t.Errorf("limit too big: %v", err)
	}
	for _, c := range []string{"!!!", "Zm9vYmFy", "djE6YTox"} {
		if _, err := v.e.TableStatePage(ctx, "crm", "customers", at, 5, c); !errors.Is(err, query.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
	// fn's error stops the walk and comes back unchanged.
	stop := errors.New("client went away")
	calls := 0
	err := v.e.TableStateAt(ctx, "crm", "customers", at, func(query.Unit) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("fn error: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := v.e.TableStateAt(cctx, "crm", "customers", at, func(query.Unit) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// An unknown table is empty, not an error.
	n := 0
	if err := v.e.TableStateAt(ctx, "crm", "nope", at, func(query.Unit) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("unknown table: %v, %d units", err, n)
	}
}

// BenchmarkTableStateAt reports units/s for a whole-table state over a
// table of STELE_BENCH_UNITS units (default 1,000,000), each inserted once
// and a fifth of them updated, and as the same-run baseline the rate of
// plain log.Read over every record of the log.
func BenchmarkTableStateAt(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("STELE_BENCH_UNITS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "bench.example/log", Hook: ix})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	defer s.Close()
	src := record.Source{Name: "crm", Kind: "postgres", Table: "accounts"}
	batch := make([]*record.Record, 0, 1000)
	add := func(r *record.Record) {
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if _, err := s.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for i := range n {
		add(&record.Record{ID: fmt.Sprintf("i-%d", i), Source: src, Op: record.OpInsert, Key: entityKey(i),
			After: mustJSON(map[string]any{"id": i, "name": fmt.Sprintf("customer %d", i), "email": fmt.Sprintf("c%d@example.test", i), "balance": i % 997}), OccurredAt: base.Add(time.Duration(i) * time.Millisecond)})
	}
	for i := 0; i < n; i += 5 {
		add(&record.Record{ID: fmt.Sprintf("u-%d", i), Source: src, Op: record.OpUpdate, Key: entityKey(i),
			After: mustJSON(map[string]any{"balance": i % 13}), OccurredAt: base.Add(time.Duration(n+i) * time.Millisecond)})
	}
	if len(batch) > 0 {
		if _, err := s.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	e := query.New(s, ix)
	at := base.Add(time.Duration(2*n) * time.Millisecond)
	ctx := context.Background()
	b.Run("table-state", func(b *testing.B) {
		// The heap sampled during the walk shows memory does not grow with
		// the table.
		var ms runtime.MemStats
		var peak uint64
		runtime.GC()
		for b.Loop() {
			units := 0
			if err := e.TableStateAt(ctx, "crm", "accounts", at, func(query.Unit) error {
				if units++; units%50_000 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if units != n {
				b.Fatalf("%d units, want %d", units, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	})
	// With a read hook (here one that changes nothing) the records are
	// still read on the workers, but passed through the hook and folded on
	// the consumer: the ratio to table-state is the cost of that.
	b.Run("table-state-hooked", func(b *testing.B) {
		hctx := query.WithReadHook(ctx, func(context.Context, *record.Record) error { return nil })
		for b.Loop() {
			units := 0
			if err := e.TableStateAt(hctx, "crm", "accounts", at, func(query.Unit) error { units++; return nil }); err != nil {
				b.Fatal(err)
			}
			if units != n {
				b.Fatalf("%d units, want %d", units, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
	})
	b.Run("baseline-log-read", func(b *testing.B) {
		size := s.Size()
		for b.Loop() {
			for seq := range size {
				if _, err := s.Read(seq); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}

// Across many batches of units: order, early stop by fn, cancellation
// mid-walk, and no goroutine left behind.
func TestTableStateManyUnits(t *testing.T) {
	v := newEnv(t)
	src := record.Source{Name: "crm", Kind: "postgres", Table: "big"}
	const n = 2000
	var recs []*record.Record
	for i := range n {
		recs = append(recs, &record.Record{ID: fmt.Sprintf("b-%d", i), Source: src, Op: record.OpInsert, Key: entityKey(i),
			After: mustJSON(map[string]int{"id": i}), OccurredAt: base.Add(time.Duration(i) * time.Second)})
	}
	v.append(t, recs...)
	ctx := context.Background()
	at := base.Add(time.Duration(n) * time.Second)
	before := runtime.NumGoroutine()
	var keys []int
	if err := v.e.TableStateAt(ctx, "crm", "big", at, func(u query.Unit) error {
		k, _ := strconv.Atoi(u.Key)
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != n || !slices.IsSorted(keys) {
		t.Fatalf("%d units, sorted %v", len(keys), slices.IsSorted(keys))
	}
	stop := errors.New("enough")
	calls := 0
	err := v.e.TableStateAt(ctx, "crm", "big", at, func(query.Unit) error {
		if calls++; calls == 600 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 600 {
		t.Fatalf("stop at 600: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = v.e.TableStateAt(cctx, "crm", "big", at, func(query.Unit) error {
		if calls++; calls == 300 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled mid-walk: %v after %d calls", err, calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Fatalf("%d goroutines after, %d before", g, before)
	}
}

// hookEmails is a read hook that rewrites every email in an after image to
// name the record it came from, and notes the seqs it saw; it takes no
// lock, so the race detector checks that table state calls it on the
// caller's goroutine.
func hookEmails(seen map[uint64]string) query.ReadHook {
	return func(_ context.Context, r *record.Record) error {
		seen[r.Seq] = string(r.Key)
		if len(r.After) == 0 {
			return nil
		}
		var img map[string]any
		if err := json.Unmarshal(r.After, &img); err != nil {
			return err
		}
		if _, ok := img["email"]; ok {
			img["email"] = fmt.Sprintf("hooked-%d", r.Seq)
			r.After = mustJSON(img)
		}
		return nil
	}
}

// A read hook shapes table state as it shapes StateAt: the units are
// folded from what the hook left, and it sees only records of units served.
func TestTableStateReadHook(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 800)
	all := v.all(t)
	at := all[555].OccurredAt
	for _, tb := range tables {
		seen := map[uint64]string{}
		ctx := query.WithReadHook(context.Background(), hookEmails(seen))
		got := map[string]query.Unit{}
		if err := v.e.TableStateAt(ctx, tb.source, tb.name, at, func(u query.Unit) error {
			got[u.Key] = u
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		hooked := 0
		for key, u := range got {
			stSeen := map[uint64]string{}
			st, err := v.e.StateAt(query.WithReadHook(context.Background(), hookEmails(stSeen)), tb.source, tb.name, key, at)
			if err != nil {
				t.Fatal(err)
			}
			if string(u.State) != string(st.State) {
				t.Fatalf("%v key %s: table state %s, StateAt %s", tb, key, u.State, st.State)
			}
			if strings.Contains(string(u.State), `"email"`) && !strings.Contains(string(u.State), "hooked-") {
				t.Fatalf("%v key %s: state %s was not folded from hooked records", tb, key, u.State)
			}
			if _, ok := seen[u.Seq]; !ok {
				t.Fatalf("%v key %s: the last record folded, seq %d, was not shown to the hook", tb, key, u.Seq)
			}
			hooked++
		}
		// Every record the hook saw belongs to a unit served.
		for seq, key := range seen {
			k, err := record.KeyString(json.RawMessage(key))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got[k]; !ok {
				t.Fatalf("%v: the hook saw seq %d of key %s, which was not served", tb, seq, k)
			}
		}
		if hooked == 0 {
			t.Fatalf("%v: no unit at %s", tb, at)
		}
	}

	// A page: the hook sees the units of the page and none read ahead.
	src := record.Source{Name: "crm", Kind: "postgres", Table: "big"}
	var recs []*record.Record
	for i := range 2000 {
		recs = append(recs, &record.Record{ID: fmt.Sprintf("b-%d", i), Source: src, Op: record.OpInsert, Key: entityKey(i),
			After: mustJSON(map[string]any{"id": i, "email": "x"}), OccurredAt: base})
	}
	v.append(t, recs...)
	cursor := ""
	for page := range 2 {
		seen := map[uint64]string{}
		ctx := query.WithReadHook(context.Background(), hookEmails(seen))
		p, err := v.e.TableStatePage(ctx, "crm", "big", base, 3, cursor)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, u := range p.Units {
			keys = append(keys, u.Key)
			if !strings.Contains(string(u.State), "hooked-") {
				t.Fatalf("page %d: unit %s not folded from the hooked record: %s", page, u.Key, u.State)
			}
		}
		want := []string{strconv.Itoa(3 * page), strconv.Itoa(3*page + 1), strconv.Itoa(3*page + 2)}
		if !slices.Equal(keys, want) || len(seen) != 3 || p.NextCursor == "" {
			t.Fatalf("page %d: units %v (want %v), hook saw %d records %v, cursor %q", page, keys, want, len(seen), seen, p.NextCursor)
		}
		cursor = p.NextCursor
	}

	// The hook's error ends the walk.
	boom := errors.New("reveal failed")
	err := v.e.TableStateAt(query.WithReadHook(context.Background(), func(context.Context, *record.Record) error { return boom }),
		"crm", "big", base, func(query.Unit) error { return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("hook error: %v", err)
	}
}
