package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// damageQueries exercise every kind of index list: chunked (source, table,
// actor), per-posting (entity, truncate) and the whole-table entity walk.
var damageQueries = []string{
	"/v1/records?source=crm&limit=1000",
	"/v1/records?source=crm&table=orders&order=asc&limit=500",
	"/v1/records?actor=u-3&limit=1000",
	"/v1/entities/crm/customers/7/history",
	"/v1/entities/crm/orders/12/state?at=2030-01-01T00:00:00Z",
	"/v1/tables/crm/customers/state?at=2030-01-01T00:00:00Z",
}

// serveDir starts the server on data and returns its base URL and a stop
// function that fails the test if serve returned an error.
func serveDir(t *testing.T, ctx context.Context, data string) (string, func()) {
	t.Helper()
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = data, "127.0.0.1:0"
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	return base, func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

// copyDir copies a data directory keeping file modes (the master key must
// stay 0600).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), info.Mode().Perm())
		}
		if d.Name() == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		// A dropped connection: what a panicking handler used to cause.
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the answer: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestDamagedIndexIsRebuilt flips one bit in an index sstable, 40 times
// with fixed seeds, and queries through the server: every answer is either
// the undamaged one, or 503 with Retry-After until the rebuilt index gives
// the undamaged one. A panic anywhere ends the test binary.
func TestDamagedIndexIsRebuilt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := t.TempDir()
	store, err := logstore.Open(ctx, base, logstore.Options{Origin: "stele.local/log"})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*record.Record
	for i := range 3000 {
		table, op := "customers", "update"
		if i%3 == 0 {
			table = "orders"
		}
		if i == 2000 {
			op = "truncate"
		}
		r, err := record.ParseIngest([]byte(fmt.Sprintf(
			`{"source":{"name":"crm","table":%q},"op":%q,"key":{"id":%d},"after":{"id":%d,"n":%d},"actor":{"id":"u-%d"}}`,
			table, op, i%40, i%40, i, i%7)), record.IngestOptions{Now: time.Date(2026, 1, 1, 0, 0, 0, i, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if _, err := store.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// The first serve builds the index and flushes it to sstables on close.
	url, stop := serveDir(t, ctx, base)
	want := map[string]string{}
	for _, q := range damageQueries {
		code, body, _ := get(t, url+q)
		if code != http.StatusOK {
			t.Fatalf("GET %s on the sound index: %d %s", q, code, body)
		}
		want[q] = body
	}
	stop()

	const trials = 40
	rebuilt, refused := 0, 0
	for trial := range trials {
		data := t.TempDir()
		copyDir(t, base, data)
		rng := rand.New(rand.NewPCG(uint64(trial), 12))
		ssts, _ := filepath.Glob(filepath.Join(data, "index", "*.sst"))
		if len(ssts) == 0 {
			t.Fatal("the index has no sstable to damage")
		}
		f := ssts[rng.IntN(len(ssts))]
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		url, stop := serveDir(t, ctx, data)
		saw503 := false
		for _, q := range damageQueries {
			for {
				code, body, h := get(t, url+q)
				if code == http.StatusOK {
					if body != want[q] {
						t.Errorf("trial %d: GET %s answered differently from the sound index:\n%.300s\nwant\n%.300s", trial, q, body, want[q])
					}
					break
				}
				if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, "rebuilt") {
					t.Fatalf("trial %d: GET %s: %d %s (Retry-After %q), want 200 or 503 while rebuilding", trial, q, code, body, h.Get("Retry-After"))
				}
				saw503 = true
				if ctx.Err() != nil {
					t.Fatalf("trial %d: GET %s: still 503 when the test timed out", trial, q)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		stop()
		if aside, _ := filepath.Glob(filepath.Join(data, "index.corrupt-*")); len(aside) > 0 {
			rebuilt++
		}
		if saw503 {
			refused++
		}
	}
	t.Logf("%d trials: %d found damage and rebuilt the index (%d answered 503 meanwhile); the rest were answered from undamaged blocks", trials, rebuilt, refused)
	if rebuilt == 0 {
		t.Error("no trial found the damage: the test damages nothing that is read")
	}
}
