package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/projection"
	"github.com/stele/stele/record"
)

const projectionsYAML = `
projections:
  - name: orders
    filter: record.source.table == "orders" && record.op != "ddl"
    key: string(record.key.id)
    fold: state
  - name: per-actor
    filter: has(record.actor.id)
    key: record.actor.id
    fold: count
  - name: totals
    key: record.source.table
    fold: reduce
    initial: "0"
    value: state + 1
`

func TestConfigProjections(t *testing.T) {
	cfg, err := loadTest(t, projectionsYAML, nil)
	if err != nil {
		t.Fatal(err)
	}
	defs := cfg.projectionList()
	if len(defs) != 3 || defs[0].Name != "orders" || defs[0].Fold != projection.FoldState || defs[2].Initial != "0" || defs[2].Value != "state + 1" {
		t.Fatalf("projections = %+v", defs)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"projections:\n  - name: p\n    key: record.id\n    fold: count\n    filter: record.op = 1\n", `line 2: projections[0]: projection "p": filter: `},
		{"projections:\n  - name: p\n    key: 1\n    fold: count\n", `projection "p": key: must be a string expression`},
		{"projections:\n  - name: p\n    key: record.id\n    fold: sum\n", `projection "p": fold: unknown fold "sum"`},
		{"projections:\n  - name: p\n    key: record.id\n    fold: count\n    colour: red\n", `unknown key "colour"`},
		{"projections:\n  - {name: p, key: record.id, fold: count}\n  - {name: p, key: record.id, fold: count}\n", `projection "p" is already defined at projections[0]`},
		{"projections: 3\n", "projections: want a list"},
	} {
		_, err := loadTest(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// TestProjectionsRebuildCommand builds a data directory, lets the serve
// wiring fold it live, then rebuilds each projection with the command and
// compares the stored values byte for byte.
func TestProjectionsRebuildCommand(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	cfg, err := loadTest(t, projectionsYAML, nil, "--data", data)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	store, err := logstore.Open(ctx, data, logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	st, stop, err := startProjections(ctx, cfg, store, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	for batch := range 20 {
		var recs []*record.Record
		for i := range 50 {
			n := batch*50 + i
			op := []record.Op{record.OpInsert, record.OpUpdate, record.OpDelete, record.OpDDL}[n%4]
			recs = append(recs, &record.Record{
				ID: fmt.Sprintf("r%d", n), Source: record.Source{Name: "crm", Kind: "http", Table: []string{"orders", "lines"}[n%3%2]},
				Op: op, Key: json.RawMessage(fmt.Sprintf(`{"id":%d}`, n%17)), After: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
				Actor: json.RawMessage(fmt.Sprintf(`{"id":"u%d"}`, n%5)), OccurredAt: time.Unix(int64(n), 0),
			})
		}
		if _, err := store.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.WaitApplied(wctx, store.Size()); err != nil {
		t.Fatal(err)
	}
	live := dumpAll(t, st, "orders", "per-actor", "totals")
	stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"orders", "per-actor", "totals"} {
		var stdout, stderr bytes.Buffer
		pr := newProgress(&stderr, false, "rebuilding "+name, "records", 1)
		pr.every = time.Nanosecond
		if err := rebuildProjection(ctx, cfg, name, logger, pr, &stdout); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr.String(), "rebuilding "+name+": 100% (1000/1000 records, ") {
			t.Errorf("progress on stderr: %q", stderr.String())
		}
		if !strings.Contains(stdout.String(), "rebuilt projection "+name+": 1000 records") {
			t.Errorf("stdout: %q", stdout.String())
		}
	}
	var out bytes.Buffer
	if err := listProjections(cfg, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "per-actor") || !strings.Contains(out.String(), "1000") {
		t.Errorf("list output:\n%s", out.String())
	}
	set, err := projection.Compile(cfg.projectionList())
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := projection.Open(filepath.Join(data, "projections"), set, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dumpAll(t, rebuilt, "orders", "per-actor", "totals"); !bytes.Equal(got, live) {
		t.Errorf("rebuilt projections differ from the live ones (%d vs %d bytes)", len(got), len(live))
	}
	if err := rebuilt.Close(); err != nil {
		t.Fatal(err)
	}

	if err := rebuildProjection(ctx, cfg, "nope", logger, nil, io.Discard); err == nil || !strings.Contains(err.Error(), `no such projection: "nope"`) {
		t.Errorf("unknown projection: %v", err)
	}
	if code := run(ctx, []string{"projections", "rebuild"}, io.Discard); code != exitUsage {
		t.Errorf("rebuild without a name exits %d", code)
	}
}

func dumpAll(t *testing.T, st *projection.Store, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, name := range names {
		fmt.Fprintf(&buf, "== %s\n", name)
		if err := st.Scan(name, func(k, v []byte) error {
			fmt.Fprintf(&buf, "%q=%s\n", k, v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestREADMEProjectionsExample keeps the README's example configuration
// valid.
func TestREADMEProjectionsExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```yaml\nprojections:")
	if !ok {
		t.Fatal("README has no projections: example")
	}
	block, _, _ = strings.Cut(block, "```")
	cfg, err := loadTest(t, "projections:"+block, nil)
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if n := len(cfg.projectionList()); n != 5 {
		t.Errorf("README example defines %d projections, want 5", n)
	}
}
