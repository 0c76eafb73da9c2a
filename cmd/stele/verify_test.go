package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// unprovenDir holds three batches of 10 records appended 5 s apart, each
// checkpointed, with checkpoints.log cut back to the first batch's
// checkpoint: 20 records no signature covers, over 5 s.
func unprovenDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "cli.test/log", CheckpointInterval: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		var recs []*record.Record
		for i := range 10 {
			r, err := record.ParseIngest([]byte(`{"source":{"name":"crm","table":"customers"},"op":"update","key":{"id":1},"after":{"n":1}}`),
				record.IngestOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			r.ID = r.ID + string(rune('a'+b)) + string(rune('a'+i))
			recs = append(recs, r)
		}
		if _, err := store.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		now = now.Add(5 * time.Second)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// Keep frames 0 (the empty log) and 1 (size 10).
	path := filepath.Join(dir, "checkpoints.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for range 2 {
		off += 8 + int(binary.LittleEndian.Uint32(b[off:]))
	}
	if err := os.Truncate(path, int64(off)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerifyDirUnprovenExitAndAllow(t *testing.T) {
	dir := unprovenDir(t)
	var out bytes.Buffer
	err := verifyDir(context.Background(), dir, logstore.VerifyOptions{CheckpointInterval: 500 * time.Millisecond}, nil, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitFailure {
		t.Fatalf("verify of a cut checkpoints.log: %v, want exit %d\n%s", err, exitFailure, out.String())
	}
	for _, want := range []string{"FAILED", "records 10 to 29 (20 records)", "--allow-unproven 20"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := verifyDir(context.Background(), dir, logstore.VerifyOptions{CheckpointInterval: 500 * time.Millisecond, AllowUnproven: 20}, nil, &out); err != nil {
		t.Fatalf("verify with --allow-unproven 20: %v\n%s", err, out.String())
	}
	for _, want := range []string{"UNPROVEN: 20 records", "accepted by --allow-unproven", "OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// Through the command line: exit 1, then 0 when told, and usage errors.
	if code, _ := runCLI(t, "verify", "--data", dir); code != exitFailure {
		t.Errorf("stele verify --data: exit %d, want %d", code, exitFailure)
	}
	if code, stderr := runCLI(t, "verify", "--data", dir, "--allow-unproven", "20"); code != 0 {
		t.Errorf("stele verify --data --allow-unproven 20: exit %d: %s", code, stderr)
	}
	// A server signing every 6 s can leave 5 s of records unsigned.
	if code, stderr := runCLI(t, "verify", "--data", dir, "--checkpoint-interval", "6s"); code != 0 {
		t.Errorf("stele verify --data --checkpoint-interval 6s: exit %d: %s", code, stderr)
	}
	if code, stderr := runCLI(t, "verify", "--url", "http://127.0.0.1:1", "--key", "k", "--allow-unproven", "3"); code != exitUsage || !strings.Contains(stderr, "--data only") {
		t.Errorf("--allow-unproven with --url: exit %d: %s", code, stderr)
	}
	if code, stderr := runCLI(t, "verify", "--data", dir, "--checkpoint-interval", "0s"); code != exitUsage || !strings.Contains(stderr, "positive") {
		t.Errorf("--checkpoint-interval 0s: exit %d: %s", code, stderr)
	}
}
