package projection_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/projection"
	"github.com/stele/stele/record"
)

func TestFolds(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	st := openStore(t, t.TempDir(), compile(t, testDefs()...), projection.Options{})
	defer st.Close()

	appendAll(t, lg,
		rec("r0", "orders", record.OpInsert, map[string]any{"id": 1}, map[string]any{"id": 1, "status": "new", "amount": 10, "customer": "c1"}, nil, "alice", 0),
		rec("r1", "orders", record.OpUpdate, map[string]any{"id": 1}, map[string]any{"status": "paid"}, []string{"status"}, "bob", 1),
	)
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	// An update merges its (partial) after image over the state.
	if got, want := get(t, st, "orders", "1"), `{"source":"crm","table":"orders","seq":1,"occurred_at":"2025-01-02T00:00:00Z","state":{"amount":10,"customer":"c1","id":1,"status":"paid"}}`; got != want {
		t.Errorf("orders/1 after update:\n got %s\nwant %s", got, want)
	}
	appendAll(t, lg,
		rec("r2", "orders", record.OpInsert, map[string]any{"id": 2}, map[string]any{"id": 2, "amount": 5.5, "customer": "c1"}, nil, "alice", 400),
		rec("r3", "orders", record.OpDelete, map[string]any{"id": 1}, nil, nil, "carol", 401),
		rec("r4", "orders", record.OpDDL, map[string]any{}, map[string]any{"statement": "ALTER"}, nil, "", 402),
		rec("r5", "customers", record.OpInsert, map[string]any{"id": 7}, map[string]any{"email": "x@y", "name": "Ann"}, nil, "alice", 402),
		rec("r6", "customers", record.OpUpdate, map[string]any{"id": 7}, map[string]any{"email": "z@y"}, []string{"email"}, "bob", 403),
		rec("r7", "orders", record.OpInsert, map[string]any{"id": 3}, map[string]any{"id": 3, "amount": 30, "customer": "c2"}, nil, "dave", 404),
	)
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get("orders", "1"); !errors.Is(err, projection.ErrNotFound) {
		t.Errorf("orders/1 after delete: err %v, want ErrNotFound", err)
	}
	if got, want := get(t, st, "orders", "2"), `"state":{"amount":5.5,"customer":"c1","id":2}`; !strings.Contains(got, want) {
		t.Errorf("orders/2 = %s, want it to contain %s", got, want)
	}
	for key, want := range map[string]string{"alice": "3", "bob": "2", "carol": "1", "dave": "1"} {
		if got := get(t, st, "by-actor", key); got != want {
			t.Errorf("by-actor/%s = %s, want %s", key, got, want)
		}
	}
	for key, want := range map[string]string{"2025": "2", "2026": "6"} {
		if got := get(t, st, "per-year", key); got != want {
			t.Errorf("per-year/%s = %s, want %s", key, got, want)
		}
	}
	wantFields := `{"email":{"seq":6,"occurred_at":"2026-02-08T00:00:00Z","op":"update","actor":{"id":"bob"}},` +
		`"name":{"seq":5,"occurred_at":"2026-02-07T00:00:00Z","op":"insert","actor":{"id":"alice"}}}`
	if got := get(t, st, "fields", "7"); got != wantFields {
		t.Errorf("fields/7:\n got %s\nwant %s", got, wantFields)
	}
	if got, want := get(t, st, "revenue", "c1"), `{"max":10.0,"n":2,"sum":15.5}`; got != want {
		t.Errorf("revenue/c1 = %s, want %s", got, want)
	}
	if got, want := get(t, st, "revenue", "c2"), `{"max":30.0,"n":1,"sum":30.0}`; got != want {
		t.Errorf("revenue/c2 = %s, want %s", got, want)
	}
	info, err := st.Info("by-actor")
	if err != nil {
		t.Fatal(err)
	}
	// r4 has no actor: record.actor.id fails and the record is skipped.
	if info.Applied != 8 || info.Keys != 4 || info.Skipped != 1 {
		t.Errorf("by-actor info = %+v, want applied 8, keys 4, skipped 1", info)
	}
	if info, _ := st.Info("orders"); info.Keys != 2 {
		t.Errorf("orders keys = %d, want 2 (1 was deleted)", info.Keys)
	}
}

func TestTruncateAndReduceNull(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	st := openStore(t, t.TempDir(), compile(t,
		projection.Definition{Name: "state", Key: `record.source.table + "/" + string(record.key.id)`, Fold: projection.FoldState},
		// A reduce that returns null removes the key.
		projection.Definition{Name: "open", Key: `string(record.key.id)`, Fold: projection.FoldReduce,
			Value: `record.op == "delete" ? null : record.op`},
	), projection.Options{})
	defer st.Close()
	appendAll(t, lg,
		rec("a", "orders", record.OpInsert, map[string]any{"id": 1}, map[string]any{"v": 1}, nil, "", 0),
		rec("b", "orders", record.OpInsert, map[string]any{"id": 2}, map[string]any{"v": 2}, nil, "", 0),
		rec("c", "customers", record.OpInsert, map[string]any{"id": 1}, map[string]any{"v": 3}, nil, "", 0),
	)
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	// The truncate and the re-insert after it land in one batch: the
	// overlay must see its own writes.
	appendAll(t, lg,
		rec("d", "orders", record.OpInsert, map[string]any{"id": 3}, map[string]any{"v": 4}, nil, "", 1),
		rec("e", "orders", record.OpTruncate, map[string]any{}, nil, nil, "", 2),
		rec("f", "orders", record.OpInsert, map[string]any{"id": 2}, map[string]any{"v": 5}, nil, "", 3),
		rec("g", "customers", record.OpDelete, map[string]any{"id": 1}, nil, nil, "", 3),
	)
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := st.Scan("state", func(k, v []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "orders/2" {
		t.Errorf("state keys after truncate = %v, want [orders/2]", keys)
	}
	if info, _ := st.Info("state"); info.Keys != 1 {
		t.Errorf("state keys count = %d, want 1", info.Keys)
	}
	if _, _, err := st.Get("open", "1"); !errors.Is(err, projection.ErrNotFound) {
		t.Errorf("open/1 after a delete (value null): %v, want ErrNotFound", err)
	}
	if got := get(t, st, "open", "2"); got != `"insert"` {
		t.Errorf("open/2 = %s", got)
	}
}

func TestDefinitionErrors(t *testing.T) {
	ok := projection.Definition{Name: "ok", Key: `record.id`, Fold: projection.FoldCount}
	for _, tc := range []struct {
		def          projection.Definition
		field, inMsg string
	}{
		{projection.Definition{Name: "Bad Name", Key: `record.id`, Fold: "count"}, "name", "a-z"},
		{projection.Definition{Name: "p", Filter: `record.op ==`, Key: `record.id`, Fold: "count"}, "filter", "Syntax error"},
		{projection.Definition{Name: "p", Filter: `"yes"`, Key: `record.id`, Fold: "count"}, "filter", "must be a bool expression"},
		{projection.Definition{Name: "p", Filter: `recrd.op == "x"`, Key: `record.id`, Fold: "count"}, "filter", "undeclared reference to 'recrd'"},
		{projection.Definition{Name: "p", Fold: "count"}, "key", "required"},
		{projection.Definition{Name: "p", Key: `1 + 2`, Fold: "count"}, "key", "must be a string expression"},
		{projection.Definition{Name: "p", Key: `record.id`, Fold: "sum"}, "fold", `unknown fold "sum"`},
		{projection.Definition{Name: "p", Key: `record.id`}, "fold", "required"},
		{projection.Definition{Name: "p", Key: `record.id`, Fold: "reduce"}, "value", "required"},
		{projection.Definition{Name: "p", Key: `record.id`, Fold: "reduce", Value: `state +`}, "value", "Syntax error"},
		{projection.Definition{Name: "p", Key: `record.id`, Fold: "reduce", Value: `1`, Initial: `record.seq`}, "initial", "constant"},
		{projection.Definition{Name: "p", Key: `record.id`, Fold: "count", Value: `1`}, "value", "only a reduce fold"},
		{ok, "name", "defined twice"},
	} {
		defs := []projection.Definition{tc.def}
		if tc.def.Name == "ok" {
			defs = append(defs, ok)
		}
		_, err := projection.Compile(defs)
		var de *projection.DefinitionError
		if !errors.As(err, &de) {
			t.Errorf("%+v: err %v, want a *DefinitionError", tc.def, err)
			continue
		}
		if de.Projection != tc.def.Name || de.Field != tc.field || !strings.Contains(err.Error(), tc.inMsg) {
			t.Errorf("%+v: got projection %q field %q: %v; want field %q and %q in the message", tc.def, de.Projection, de.Field, err, tc.field, tc.inMsg)
		}
		if !strings.Contains(err.Error(), `projection "`+tc.def.Name+`": `+tc.field+": ") {
			t.Errorf("message %q does not name the projection and the field", err)
		}
	}
	// Several bad definitions are all reported.
	_, err := projection.Compile([]projection.Definition{
		{Name: "a", Key: `1`, Fold: "count"}, {Name: "b", Key: `record.id`, Fold: "nope"},
	})
	if err == nil || !strings.Contains(err.Error(), `projection "a": key`) || !strings.Contains(err.Error(), `projection "b": fold`) {
		t.Errorf("two bad definitions: %v", err)
	}
}

// TestCrashSafety folds batches into a store on a file system that can
// lose whatever was not synced, "crashes" after random batches, reopens
// the surviving files and catches up from the log: the result must equal a
// store that never crashed — nothing lost, nothing folded twice (count and
// reduce would show a double application).
func TestCrashSafety(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	rng := rand.New(rand.NewPCG(1, 2))
	recs := mixedRecords(rng, "c", 3000)
	appendAll(t, lg, recs...)
	set := compile(t, testDefs()...)

	ref := openStore(t, t.TempDir(), set, projection.Options{})
	defer ref.Close()
	if err := ref.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}

	fs := vfs.NewCrashableMem()
	st := openStore(t, "proj", set, projection.Options{FS: fs})
	stored, err := readAll(lg)
	if err != nil {
		t.Fatal(err)
	}
	crashes, lostSome := 0, false
	for off := 0; off < len(stored); {
		n := 1 + rng.IntN(200)
		end := min(off+n, len(stored))
		if err := st.Apply(stored[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
		if rng.IntN(4) != 0 {
			continue
		}
		// Crash: keep what was synced plus a random share of the rest.
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(uint64(off), 7))})
		st.Close()
		crashes++
		fs = clone
		st = openStore(t, "proj", set, projection.Options{FS: fs})
		if a := st.Applied(); a < uint64(off) {
			lostSome = true
			// Resume from the surviving watermark, as the follower does.
			if err := st.Apply(stored[a:off]); err != nil {
				t.Fatalf("resume from %d: %v", a, err)
			}
		} else if a > uint64(off) {
			t.Fatalf("after a crash the watermark %d is past the %d records applied", a, off)
		}
	}
	if crashes == 0 || !lostSome {
		t.Fatalf("the test did not exercise a crash that lost a batch (crashes %d, lost %v)", crashes, lostSome)
	}
	for _, name := range set.Names() {
		if got, want := dump(t, st, name), dump(t, ref, name); !bytes.Equal(got, want) {
			t.Errorf("projection %s after %d crashes differs from the reference (%d vs %d bytes)", name, crashes, len(got), len(want))
		}
	}
	st.Close()
}

func readAll(lg interface {
	Size() uint64
	Read(uint64) (*record.Record, error)
}) ([]*record.Record, error) {
	out := make([]*record.Record, lg.Size())
	for i := range out {
		r, err := lg.Read(uint64(i))
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// TestLiveEqualsRebuilt follows the log while thousands of mixed records
// are appended in small concurrent batches, then rebuilds each projection
// by replay (in place, and into a fresh database): all three must be equal
// byte for byte.
func TestLiveEqualsRebuilt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg := newLog(t)
	set := compile(t, testDefs()...)
	live := openStore(t, t.TempDir(), set, projection.Options{})
	defer live.Close()
	done := make(chan error, 1)
	follows := follow.NewMetrics(nil)
	go func() { done <- live.Follow(ctx, lg, projection.FollowOptions{Metrics: follows}) }()

	rng := rand.New(rand.NewPCG(3, 4))
	recs := mixedRecords(rng, "l", 6000)
	for off := 0; off < len(recs); {
		end := min(off+1+rng.IntN(40), len(recs))
		appendAll(t, lg, recs[off:end]...)
		off = end
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := live.WaitApplied(wctx, lg.Size()); err != nil {
		t.Fatal(err)
	}
	if lag, ok := follows.Lag("projections"); !ok || lag.Running != 1 || lag.Processed == 0 {
		t.Errorf("follower metrics for projections = %+v (reported %t), want one running follower that processed records", lag, ok)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v", err)
	}

	liveDumps := map[string][]byte{}
	for _, name := range set.Names() {
		liveDumps[name] = dump(t, live, name)
		if info, _ := live.Info(name); info.Keys == 0 {
			t.Fatalf("projection %s is empty: the test data does not exercise it", name)
		}
	}
	fresh := openStore(t, t.TempDir(), set, projection.Options{})
	defer fresh.Close()
	if err := fresh.CatchUp(context.Background(), lg); err != nil {
		t.Fatal(err)
	}
	for _, name := range set.Names() {
		if got := dump(t, fresh, name); !bytes.Equal(got, liveDumps[name]) {
			t.Errorf("projection %s: a fresh build differs from the live one", name)
		}
		var calls int
		var last uint64
		err := live.Rebuild(context.Background(), name, lg, func(n, total uint64) { calls, last = calls+1, n })
		if err != nil {
			t.Fatal(err)
		}
		if calls == 0 || last != lg.Size() {
			t.Errorf("rebuild %s: progress called %d times, last %d, want the end at %d", name, calls, last, lg.Size())
		}
		if got := dump(t, live, name); !bytes.Equal(got, liveDumps[name]) {
			t.Errorf("projection %s: rebuilt in place differs from the live one", name)
		}
	}
	liveInfo, freshInfo := live.List(), fresh.List()
	for i := range liveInfo {
		if liveInfo[i] != freshInfo[i] {
			t.Errorf("info differs: live %+v, fresh %+v", liveInfo[i], freshInfo[i])
		}
	}
}

func TestDefinitionChangeRebuilds(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	appendAll(t, lg, mixedRecords(rand.New(rand.NewPCG(5, 6)), "d", 500)...)
	dir := filepath.Join(t.TempDir(), "projections")
	defs := testDefs()
	st := openStore(t, dir, compile(t, defs...), projection.Options{})
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	before := dump(t, st, "per-year")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Change one projection's filter, drop another.
	changed := defs[:4]
	changed[0].Filter = `record.source.table == "customers"`
	st = openStore(t, dir, compile(t, changed...), projection.Options{})
	defer st.Close()
	for _, info := range st.List() {
		want := lg.Size()
		if info.Name == "orders" {
			want = 0
		}
		if info.Applied != want {
			t.Errorf("after the definition change, %s has applied %d, want %d", info.Name, info.Applied, want)
		}
	}
	if _, err := st.Info("revenue"); !errors.Is(err, projection.ErrUnknown) {
		t.Errorf("dropped projection: %v, want ErrUnknown", err)
	}
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, st, "per-year"), before) {
		t.Error("an unchanged projection changed")
	}
	err := st.Scan("orders", func(k, v []byte) error {
		if !bytes.Contains(v, []byte(`"table":"customers"`)) {
			t.Fatalf("orders holds a value from another table after the filter change: %s", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPage(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	st := openStore(t, t.TempDir(), compile(t, projection.Definition{Name: "c", Key: `record.id`, Fold: projection.FoldCount}), projection.Options{})
	defer st.Close()
	var recs []*record.Record
	for i := range 25 {
		recs = append(recs, rec(string(rune('a'+i)), "t", record.OpEvent, map[string]any{"id": i}, nil, nil, "", 0))
	}
	appendAll(t, lg, recs...)
	if err := st.CatchUp(ctx, lg); err != nil {
		t.Fatal(err)
	}
	var keys []string
	after, has := "", false
	for pages := 0; ; pages++ {
		p, err := st.Page("c", after, has, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			keys = append(keys, e.Key)
		}
		if !p.More {
			if pages != 2 || len(p.Entries) != 5 {
				t.Errorf("last page %d holds %d entries", pages, len(p.Entries))
			}
			break
		}
		after, has = p.Entries[len(p.Entries)-1].Key, true
	}
	if len(keys) != 25 || keys[0] != "a" || keys[24] != "y" {
		t.Errorf("paged keys = %v", keys)
	}
	if _, err := st.Page("nope", "", false, 10); !errors.Is(err, projection.ErrUnknown) {
		t.Errorf("unknown projection: %v", err)
	}
}

// TestRecordMembersDecodedOnDemand: the JSON members of a record are
// decoded only for projections that read them, yet an expression that uses
// record whole sees every member whether or not another projection read
// them first.
func TestRecordMembersDecodedOnDemand(t *testing.T) {
	ctx := context.Background()
	lg := newLog(t)
	appendAll(t, lg, rec("a", "t", record.OpInsert, map[string]any{"id": 1}, map[string]any{"x": 1}, nil, "alice", 0))
	whole := projection.Definition{Name: "whole", Key: `string(size(record)) + ":" + string(record.exists(k, k == "after"))`, Fold: projection.FoldCount}
	reader := projection.Definition{Name: "reader", Key: `string(record.after.x)`, Fold: projection.FoldCount}
	for _, defs := range [][]projection.Definition{{whole}, {reader, whole}, {whole, reader}} {
		st := openStore(t, t.TempDir(), compile(t, defs...), projection.Options{})
		if err := st.CatchUp(ctx, lg); err != nil {
			t.Fatal(err)
		}
		// seq id source op occurred_at recorded_at changed key after actor
		if got := get(t, st, "whole", "10:true"); got != "1" {
			t.Errorf("%d definitions: whole = %s", len(defs), got)
		}
		st.Close()
	}
}

// TestDamagedDatabase: corrupt files are reported as ErrDamaged, which
// the server answers by setting the database aside and rebuilding.
func TestDamagedDatabase(t *testing.T) {
	dir := t.TempDir()
	set := compile(t, testDefs()...)
	st := openStore(t, dir, set, projection.Options{})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, err := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no manifest in %s: %v", dir, err)
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, bytes.Repeat([]byte{0xAB}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = projection.Open(dir, set, projection.Options{})
	if !errors.Is(err, projection.ErrDamaged) {
		t.Fatalf("open with a garbage manifest: %v, want ErrDamaged", err)
	}
}
