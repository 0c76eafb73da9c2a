package mysql

// Test helpers, kept independent of any one test so that a conformance
// harness (package capture/capturetest) can drive this source with them:
// a real log store, a source running in a goroutine, a database on the
// throwaway server.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/index"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// testStore is a real log store with its index (which recognises
// duplicate ids across commits).
type testStore struct {
	*logstore.Store
	ix *index.Index
}

func openStore(t testing.TB, dir string) *testStore {
	t.Helper()
	ix, err := index.Open(filepath.Join(dir, "index"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	st, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		ix.Close()
		t.Fatalf("open log: %v", err)
	}
	ts := &testStore{Store: st, ix: ix}
	t.Cleanup(ts.close)
	return ts
}

func (ts *testStore) close() {
	if ts.Store != nil {
		ts.Store.Close()
		ts.ix.Close()
		ts.Store = nil
	}
}

// records waits until the store holds at least n records and returns all.
func (ts *testStore) records(t testing.TB, n uint64) []*record.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ts.Size() < n {
		if time.Now().After(deadline) {
			t.Fatalf("log holds %d records, want at least %d", ts.Size(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var out []*record.Record
	for seq := range ts.Size() {
		r, err := ts.Read(seq)
		if err != nil {
			t.Fatalf("read %d: %v", seq, err)
		}
		out = append(out, r)
	}
	return out
}

// settle waits until the store stops growing for a moment and returns
// every record.
func (ts *testStore) settle(t testing.TB) []*record.Record {
	t.Helper()
	last, since := ts.Size(), time.Now()
	for time.Since(since) < 300*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
		if n := ts.Size(); n != last {
			last, since = n, time.Now()
		}
	}
	return ts.records(t, last)
}

// dupCounter passes appends to the real store and counts the duplicates
// it reports.
type dupCounter struct {
	capture.Sink
	dups atomic.Int64
}

func (d *dupCounter) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	res, err := d.Sink.Append(ctx, recs)
	for _, a := range res {
		if a.Duplicate {
			d.dups.Add(1)
		}
	}
	return res, err
}

// logBuffer collects log output so tests can assert warnings.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is a source running in a goroutine.
type running struct {
	src    *Source
	cancel context.CancelFunc
	done   chan error
	logs   *logBuffer
}

// testConfig fills in what tests always want: short intervals and a state
// directory.
func testConfig(t testing.TB, cfg Config) Config {
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.PositionInterval == 0 {
		cfg.PositionInterval = 50 * time.Millisecond
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	return cfg
}

func start(t testing.TB, cfg Config, sink capture.Sink) *running {
	t.Helper()
	cfg = testConfig(t, cfg)
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{src: src, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- src.Run(ctx, sink) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("source %s logs:\n%s", src.Name(), logs)
		}
	})
	return r
}

// startReady starts a source and waits until it streams, so changes made
// afterwards are certainly captured.
func startReady(t testing.TB, cfg Config, sink capture.Sink) *running {
	t.Helper()
	r := start(t, cfg, sink)
	r.waitStreaming(t)
	return r
}

func (r *running) waitStreaming(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.src.Stats().State != capture.StateStreaming {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("source stopped before streaming: %v\n%s", err, r.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("source not streaming after 30s (state %s)\n%s", r.src.Stats().State, r.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err // stop and wait may be called again
	return err
}

// wait returns Run's error once it ends by itself.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("source did not stop; logs:\n%s", r.logs)
		return nil
	}
}

// newDB creates a database with the given statements run in it and
// returns its URL.
func newDB(t testing.TB, srv *mysqltest.Server, name string, stmts ...string) string {
	t.Helper()
	srv.CreateDatabase(t, name, stmts...)
	return srv.URL(name)
}

func fields(t testing.TB, raw json.RawMessage) map[string]string {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("image %s: %v", raw, err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// ops lists the records' ops and tables, for failure messages.
func ops(recs []*record.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s.%s %s\n", r.Op, r.Source.Database, r.Source.Table, r.Key)
	}
	return b.String()
}
