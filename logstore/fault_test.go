package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

func openFS(t *testing.T, dir string, fsys vfs.FS) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, FS: fsys, CheckpointInterval: time.Hour, ProbeInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func tryAppend(s *logstore.Store, from, n int) error {
	recs := make([]*record.Record, n)
	for i := range recs {
		recs[i] = testRecord(from + i)
	}
	_, err := s.Append(context.Background(), recs)
	return err
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// waitWritable waits for the probe loop to lift ErrNoSpace. The deadline
// only stops a hung test; it is no performance threshold.
func waitWritable(t *testing.T, s *logstore.Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.WriteErr() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("store still refuses appends after the fault cleared: %v", s.WriteErr())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpenLocksTheDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	_, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin})
	if !errors.Is(err, logstore.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v, want ErrLocked naming %s", err, dir)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close released it; a lock the caller holds is used, not taken again,
	// and outlives the store.
	lock, err := logstore.LockDir(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin}); !errors.Is(err, logstore.ErrLocked) {
		t.Fatalf("open under another holder's lock: %v", err)
	}
	s, err = logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := logstore.LockDir(nil, dir); !errors.Is(err, logstore.ErrLocked) {
		t.Fatalf("the caller's lock was released by Close: %v", err)
	}
	if _, err := logstore.Open(context.Background(), t.TempDir(), logstore.Options{Lock: lock}); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("open with the lock of another directory: %v", err)
	}
}

// TestFullDiskRollsBackAndResumes: a write cut short by ENOSPC leaves no
// trace of its batch, the caller gets ErrNoSpace, appends resume once the
// disk has room, and nothing acknowledged is lost.
func TestFullDiskRollsBackAndResumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault *vfs.Fault
	}{
		{"torn-records-write", &vfs.Fault{Op: vfs.OpWrite, Match: "records.log", Err: syscall.ENOSPC, After: 3000}},
		{"records-write", &vfs.Fault{Op: vfs.OpWrite, Match: "records.log", Err: syscall.EDQUOT}},
		// records.log is fsync'd when the index write fails: the cut back
		// is made durable, so the batch stays absent after a restart.
		{"index-write-after-fsync", &vfs.Fault{Op: vfs.OpWrite, Match: "records.idx", Err: syscall.ENOSPC}},
		{"tree-write-after-fsync", &vfs.Fault{Op: vfs.OpWrite, Match: "L00", Err: syscall.ENOSPC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			efs := vfs.NewErrorFS(nil)
			s := openFS(t, dir, efs)
			appendN(t, s, 0, 10)
			logSize := fileSize(t, filepath.Join(dir, "records.log"))
			fault := efs.Add(tc.fault)
			err := tryAppend(s, 10, 40)
			if !errors.Is(err, logstore.ErrNoSpace) || !vfs.IsNoSpace(err) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("append on a full disk: %v, want ErrNoSpace naming %s", err, dir)
			}
			if s.Size() != 10 || fileSize(t, filepath.Join(dir, "records.log")) != logSize {
				t.Fatalf("the failed batch left %d records, records.log %d bytes (was %d)", s.Size(), fileSize(t, filepath.Join(dir, "records.log")), logSize)
			}
			if err := tryAppend(s, 10, 1); !errors.Is(err, logstore.ErrNoSpace) {
				t.Fatalf("append while full: %v", err)
			}
			fault.Off()
			waitWritable(t, s)
			appendN(t, s, 10, 40)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openFS(t, dir, nil)
			if s.Size() != 50 {
				t.Fatalf("after reopen: %d records, want 50", s.Size())
			}
			for i := range uint64(50) {
				r, err := s.Read(i)
				if err != nil || r.ID != testRecord(int(i)).ID {
					t.Fatalf("seq %d: %v", i, err)
				}
			}
			s.Close()
			mustVerify(t, dir, 50)
		})
	}
}

// TestFsyncErrorStopsTheStore: a failed fsync is never retried on the same
// file (its dirty pages may be gone); the store refuses appends until it
// is reopened, and the reopened store holds exactly the acknowledged
// records.
func TestFsyncErrorStopsTheStore(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(nil)
	s := openFS(t, dir, efs)
	appendN(t, s, 0, 10)
	fault := efs.Add(&vfs.Fault{Op: vfs.OpSync, Match: "records.log", Err: syscall.EIO})
	if err := tryAppend(s, 10, 20); !errors.Is(err, logstore.ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failing fsync: %v, want ErrFailed", err)
	}
	fault.Off()
	if err := tryAppend(s, 10, 20); !errors.Is(err, logstore.ErrFailed) {
		t.Fatalf("append after a failed fsync: %v, want ErrFailed until reopened", err)
	}
	if s.Size() != 10 {
		t.Fatalf("size %d after the failed batch", s.Size())
	}
	s.Close()
	s = openFS(t, dir, efs)
	if s.Size() != 10 {
		t.Fatalf("reopened: %d records, want 10", s.Size())
	}
	appendN(t, s, 10, 20)
	s.Close()
	mustVerify(t, dir, 30)
}

// TestLegacyDirWithoutTrailersOpens: a data directory written before batch
// trailers is adopted as it is, and batches appended afterwards carry them.
func TestLegacyDirWithoutTrailersOpens(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 30)
	appendN(t, s, 30, 20)
	s.Close()
	// Rewrite records.log as an older version wrote it: records only.
	frames := recordFrames(t, dir)
	for i := range frames {
		frames[i].trailer = nil
	}
	writeFile(t, filepath.Join(dir, "records.log"), joinFrames(frames))
	if err := os.Remove(filepath.Join(dir, "FORMAT")); err != nil {
		t.Fatal(err)
	}
	// The offsets moved; records.idx is derived and rebuilt on open.
	writeFile(t, filepath.Join(dir, "records.idx"), nil)
	s = openStore(t, dir)
	if s.Size() != 50 {
		t.Fatalf("legacy dir: %d records, want 50", s.Size())
	}
	if got := len(quarantined(t, dir)); got != 0 {
		t.Fatalf("legacy records were cut: %d quarantined tails", got)
	}
	appendN(t, s, 50, 5)
	s.Close()
	format := readFile(t, filepath.Join(dir, "FORMAT"))
	if !bytes.HasPrefix(format, []byte("stele-log 2 batches-from ")) {
		t.Fatalf("FORMAT = %q", format)
	}
	frames = recordFrames(t, dir)
	if frames[49].trailer != nil || frames[54].trailer == nil {
		t.Fatalf("trailers: after seq 49 %v, after seq 54 %v", frames[49].trailer != nil, frames[54].trailer != nil)
	}
	s = openStore(t, dir)
	if s.Size() != 55 {
		t.Fatalf("reopened: %d records", s.Size())
	}
	s.Close()
	mustVerify(t, dir, 55)
}
