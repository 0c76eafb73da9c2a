package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// fillDir makes a data directory holding n records and returns its
// verifier key.
func fillDir(t *testing.T, dir string, n int) string {
	t.Helper()
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "cli.test/log"})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*record.Record
	for i := range n {
		r, err := record.ParseIngest([]byte(fmt.Sprintf(
			`{"source":{"name":"crm","table":"customers"},"op":"update","key":{"id":%d},"after":{"id":%d,"email":{"$sealed":"v1.x%d"}},"actor":{"id":"u-%d"}}`,
			i, i, i, i%2)), record.IngestOptions{Now: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if _, err := store.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	vkey := store.Keys().VerifierKey
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return vkey
}

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := run(context.Background(), args, &stderr)
	return code, stderr.String()
}

func TestExportDataDirAndVerify(t *testing.T) {
	data := t.TempDir()
	vkey := fillDir(t, data, 25)
	out := t.TempDir()
	for _, format := range []string{"jsonl", "csv", "parquet"} {
		for _, filter := range [][]string{nil, {"--actor", "u-1"}} {
			file := filepath.Join(out, fmt.Sprintf("e%d.%s", len(filter), format))
			args := append([]string{"export", "--data", data, "--out", file}, filter...)
			if code, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, stderr)
			}
			if code, stderr := runCLI(t, "verify", "--export", file, "--key", vkey); code != 0 {
				t.Fatalf("verify %s: exit %d: %s", file, code, stderr)
			}
		}
	}
	// A changed value fails verification with exit status 1.
	file := filepath.Join(out, "e0.jsonl")
	raw, _ := os.ReadFile(file)
	if err := os.WriteFile(file, bytes.Replace(raw, []byte(`"u-1"`), []byte(`"u-9"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := runCLI(t, "verify", "--export", file, "--key", vkey); code != exitFailure {
		t.Fatalf("tampered export: exit %d, want %d", code, exitFailure)
	}
	// Bad filters are usage errors naming the flag; no files are left.
	for flagName, args := range map[string][]string{
		"--key":    {"--key", "1"},
		"--op":     {"--op", "rename"},
		"--since":  {"--since", "yesterday"},
		"--format": {"--format", "xml"},
	} {
		file := filepath.Join(out, "bad.jsonl")
		code, stderr := runCLI(t, append([]string{"export", "--data", data, "--out", file}, args...)...)
		if code != exitUsage || !strings.Contains(stderr, flagName) {
			t.Errorf("%v: exit %d, stderr %q; want usage error naming %s", args, code, stderr, flagName)
		}
		if _, err := os.Stat(file); err == nil {
			t.Errorf("%v left %s behind", args, file)
		}
	}
}

func TestExportDataDirLocked(t *testing.T) {
	data := t.TempDir()
	fillDir(t, data, 3)
	lock, err := lockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	file := filepath.Join(t.TempDir(), "x.csv")
	code, stderr := runCLI(t, "export", "--data", data, "--out", file)
	if code != exitFailure || !strings.Contains(stderr, "in use by another stele process") || !strings.Contains(stderr, "--url") {
		t.Fatalf("locked data directory: exit %d, stderr %q", code, stderr)
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 0 {
		t.Fatalf("files left behind: %v", entries)
	}
}

func TestExportFromURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = t.TempDir(), "127.0.0.1:0"
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for i := range 30 {
		fmt.Fprintf(&body, `{"source":{"name":"crm","table":"t%d"},"op":"insert","key":{"id":%d},"after":{"id":%d}}`+"\n", i%3, i, i)
	}
	resp, err := http.Post(base+"/v1/records", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %s", resp.Status)
	}
	vkey, err := logstore.LoadVerifierKey(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"--format", "parquet", "--out", filepath.Join(dir, "all.pq")}, {"--out", filepath.Join(dir, "t1.csv"), "--source", "crm", "--table", "t1"}} {
		if code, stderr := runCLI(t, append([]string{"export", "--url", base}, args...)...); code != 0 {
			t.Fatalf("export %v: exit %d: %s", args, code, stderr)
		}
	}
	for file, want := range map[string]uint64{"all.pq": 30, "t1.csv": 10} {
		rep, err := export.VerifyFile(ctx, filepath.Join(dir, file), export.VerifyOptions{VerifierKey: vkey})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if rep.Records != want {
			t.Errorf("%s: %d records, want %d", file, rep.Records, want)
		}
	}
	// The server's 400 reaches the user as a usage error naming the field.
	code, stderr := runCLI(t, "export", "--url", base, "--out", filepath.Join(dir, "x.jsonl"), "--op", "rename")
	if code != exitUsage || !strings.Contains(stderr, "op") {
		t.Fatalf("bad op: exit %d, %q", code, stderr)
	}
}
