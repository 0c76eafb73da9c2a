package logstore_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stele/stele/logstore"
)

// TestRealFullDiskOnTmpfs fills a real 2 MiB tmpfs: the batch that hits
// ENOSPC is refused whole, appends resume once a ballast file is removed,
// and after a reopen the log holds exactly the acknowledged records.
func TestRealFullDiskOnTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	s := openFS(t, data, nil)
	acked := 0
	var err error
	for i := 0; i < 100000; i += 20 {
		if err = tryAppend(s, acked, 20); err != nil {
			break
		}
		acked += 20
	}
	if !errors.Is(err, logstore.ErrNoSpace) {
		t.Fatalf("filling the tmpfs ended with %v after %d records, want ErrNoSpace", err, acked)
	}
	if s.Size() != uint64(acked) {
		t.Fatalf("size %d, acknowledged %d", s.Size(), acked)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitWritable(t, s)
	appendN(t, s, acked, 20)
	acked += 20
	s.Close()
	s = openFS(t, data, nil)
	if s.Size() != uint64(acked) {
		t.Fatalf("reopened: %d records, acknowledged %d", s.Size(), acked)
	}
	s.Close()
	if _, err := logstore.VerifyDir(context.Background(), data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
