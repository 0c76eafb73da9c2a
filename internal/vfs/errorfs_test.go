package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestErrorFSShortWriteAndToggle(t *testing.T) {
	dir := t.TempDir()
	e := NewErrorFS(nil)
	path := filepath.Join(dir, "records.log")
	f, err := e.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fault := e.Add(&Fault{Op: OpWrite, Match: "records", Err: syscall.ENOSPC, After: 5})
	n, err := f.Write([]byte("0123456789"))
	if n != 5 || !errors.Is(err, syscall.ENOSPC) || !IsNoSpace(err) {
		t.Fatalf("short write: %d %v", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "01234" {
		t.Fatalf("file holds %q, want the torn prefix", b)
	}
	e.Add(&Fault{Op: OpSync, Err: syscall.EIO})
	if err := f.SyncData(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: %v", err)
	}
	e.Add(&Fault{Op: OpRename, Match: "records", Err: syscall.EIO})
	if err := e.Rename(path, path+".x"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rename: %v", err)
	}
	fault.Off()
	e.Clear()
	if _, err := f.WriteAt([]byte("abc"), 5); err != nil {
		t.Fatalf("write after Off: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if fault.Hits() != 1 {
		t.Fatalf("hits %d", fault.Hits())
	}
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	l, err := Default.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Default.Lock(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	l.Close()
	l, err = Default.Lock(path)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l.Close()
}
