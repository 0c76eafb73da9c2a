package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = t.TempDir(), "127.0.0.1:0"
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	stopped := false
	stopServer := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	defer stopServer()
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Join([]string{
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":1},"after":{"id":1,"v":"a"},"occurred_at":"2026-01-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":2},"after":{"id":2,"v":"b"},"occurred_at":"2026-01-02T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"after":{"v":"a2"},"occurred_at":"2026-01-03T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"delete","key":{"id":2},"before":{"id":2},"occurred_at":"2026-01-04T00:00:00Z"}`,
	}, "\n")
	resp, err := http.Post(base+"/v1/records", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %s", resp.Status)
	}
	want := `{"key":"1","state":{"id":1,"v":"a2"},"seq":2,"occurred_at":"2026-01-03T00:00:00Z"}
{"key":"2","state":{"id":2,"v":"b"},"seq":1,"occurred_at":"2026-01-02T00:00:00Z"}
`
	dir := t.TempDir()
	snap := func(wantCode int, args ...string) string {
		t.Helper()
		var stderr bytes.Buffer
		if code := run(ctx, append([]string{"snapshot"}, args...), &stderr); code != wantCode {
			t.Fatalf("snapshot %v: exit %d, want %d; stderr %s", args, code, wantCode, stderr.String())
		}
		return stderr.String()
	}
	out := filepath.Join(dir, "url.jsonl")
	snap(0, "--url", base, "--source", "crm", "--table", "t", "--at", "2026-01-03T12:00:00Z", "--out", out)
	if b, _ := os.ReadFile(out); string(b) != want {
		t.Fatalf("--url snapshot:\n got  %s\n want %s", b, want)
	}

	// The data directory is the running server's: refused, nothing written.
	locked := filepath.Join(dir, "locked.jsonl")
	msg := snap(exitFailure, "--data", cfg.Data, "--source", "crm", "--table", "t", "--at", "2026-01-03T12:00:00Z", "--out", locked)
	if !strings.Contains(msg, "in use by another stele process") || !strings.Contains(msg, "--url") {
		t.Fatalf("locked data dir: %s", msg)
	}
	if _, err := os.Stat(locked); !os.IsNotExist(err) {
		t.Fatalf("a refused snapshot left %s: %v", locked, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a refused snapshot left files: %v", ents)
	}

	stopServer()
	data := filepath.Join(dir, "data.jsonl")
	snap(0, "--data", cfg.Data, "--source", "crm", "--table", "t", "--at", "2026-01-03T12:00:00Z", "--out", data)
	if b, _ := os.ReadFile(data); string(b) != want {
		t.Fatalf("--data snapshot:\n got  %s\n want %s", b, want)
	}
	later := filepath.Join(dir, "later.jsonl")
	snap(0, "--data", cfg.Data, "--source", "crm", "--table", "t", "--at", "2026-01-05T00:00:00Z", "--out", later)
	if b, _ := os.ReadFile(later); string(b) != `{"key":"1","state":{"id":1,"v":"a2"},"seq":2,"occurred_at":"2026-01-03T00:00:00Z"}`+"\n" {
		t.Fatalf("after the delete: %s", b)
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--source", "crm", "--table", "t", "--out", data}, "exactly one of --url and --data"},
		{[]string{"--url", base, "--data", cfg.Data, "--source", "crm", "--table", "t", "--out", data}, "exactly one of --url and --data"},
		{[]string{"--data", cfg.Data, "--table", "t", "--out", data}, "--source is required"},
		{[]string{"--data", cfg.Data, "--source", "crm", "--table", "t"}, "--out is required"},
		{[]string{"--data", cfg.Data, "--source", "crm", "--table", "t", "--at", "yesterday", "--out", data}, "--at"},
	} {
		if msg := snap(exitUsage, c.args...); !strings.Contains(msg, c.msg) {
			t.Errorf("%v: %s, want it to say %q", c.args, msg, c.msg)
		}
	}
	if msg := snap(exitFailure, "--data", dir, "--source", "crm", "--table", "t", "--out", filepath.Join(dir, "x")); !strings.Contains(msg, "not a Stele data directory") {
		t.Errorf("not a data dir: %s", msg)
	}
}
