package keystore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/stele/stele/internal/vfs"
)

// The faults below go through the FS seam (vfs.ErrorFS), the same one the
// log's fault tests use: what a real disk says (EIO on fsync, ENOSPC, a
// write cut short) reaches the store exactly where it would.

var errIO = syscall.EIO

func TestFailedSyncStopsTheStoreAndReopenRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	efs := vfs.NewErrorFS(nil)
	s := openT(t, dir, m, Options{FS: efs})
	durable, dkey, _ := s.GetOrCreate(ctx, KindSubject, "durable")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	efs.Add(&vfs.Fault{Op: vfs.OpSync, Match: ".keys", Err: errIO})
	lost, _, _ := s.GetOrCreate(ctx, KindSubject, "lost")
	if err := s.Sync(ctx); !errors.Is(err, errIO) || !strings.Contains(err.Error(), ".keys") {
		t.Fatalf("sync: %v", err)
	}
	// A failed fsync leaves the file in an unknown state: nothing more is
	// accepted until the store is reopened from disk.
	if _, _, err := s.GetOrCreate(ctx, KindSubject, "after"); !errors.Is(err, errIO) {
		t.Fatalf("store still accepts keys: %v", err)
	}
	if err := s.Sync(ctx); !errors.Is(err, errIO) {
		t.Fatalf("second sync: %v", err)
	}
	s.Close()
	efs.Clear()
	s = openT(t, dir, m, Options{FS: efs})
	defer s.Close()
	if got, err := s.Key(ctx, durable); err != nil || !bytes.Equal(got, dkey) {
		t.Fatalf("durable key: %v", err)
	}
	// The unsynced key's bytes were written, only the fsync "failed", so it
	// may or may not be there; it must never be half there.
	if _, err := s.Key(ctx, lost); err != nil && !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("lost key: %v", err)
	}
}

func TestDestroyWhoseRecordFailsIsRetriedAfterReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	efs := vfs.NewErrorFS(nil)
	s := openT(t, dir, m, Options{FS: efs})
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	s.Sync(ctx)
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	efs.Add(&vfs.Fault{Op: vfs.OpSync, Match: "DESTROYED", Err: errIO})
	if _, err := s.Destroy(ctx, KindSubject, "victim"); !errors.Is(err, errIO) {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := s.Destroy(ctx, KindSubject, "victim"); !errors.Is(err, errIO) {
		t.Fatalf("a failed store must not report a retried erasure as done: %v", err)
	}
	s.Close()
	efs.Clear()
	s = openT(t, dir, m, Options{FS: efs})
	defer s.Close()
	// The record's bytes may have reached the file despite the failed fsync
	// (here they did, so Open finished the erasure); either way the caller's
	// retry must leave the key destroyed and gone from disk.
	assertErased(ctx, t, s, dir, kid, key, wrapped)
}

// TestDestroyTornRecordIsCutAndRetried: the disk fills while the erasure
// record is written, leaving half a frame at the end of DESTROYED. The half
// frame is cut back off at once, so nothing is erased, the store keeps
// serving, and the caller's retry after space is freed erases the key for
// good. If even the cut fails (EIO), the store stops, and the reopen cuts
// the torn frame.
func TestDestroyTornRecordIsCutAndRetried(t *testing.T) {
	for _, cutFails := range []bool{false, true} {
		t.Run(map[bool]string{false: "rolled back", true: "cut on reopen"}[cutFails], func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			m := testMaster(t, 1)
			efs := vfs.NewErrorFS(nil)
			s := openT(t, dir, m, Options{FS: efs})
			defer func() { s.Close() }()
			bystander, bkey, _ := s.GetOrCreate(ctx, KindSubject, "bystander")
			kid, key, _ := s.GetOrCreate(ctx, KindSubject, "victim")
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			k, _ := parseKid(kid)
			wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
			full := efs.Add(&vfs.Fault{Op: vfs.OpWrite, Match: "DESTROYED", Err: syscall.ENOSPC, After: 5})
			if cutFails {
				efs.Add(&vfs.Fault{Op: vfs.OpTruncate, Match: "DESTROYED", Err: errIO})
			}
			_, err := s.Destroy(ctx, KindSubject, "victim")
			if !errors.Is(err, syscall.ENOSPC) || !vfs.IsNoSpace(err) || !strings.Contains(err.Error(), "DESTROYED") {
				t.Fatalf("destroy on a full disk: %v (want ENOSPC naming DESTROYED)", err)
			}
			if full.Hits() == 0 {
				t.Fatal("the fault never fired: the test does not exercise a torn record")
			}
			if got, err := s.Key(ctx, kid); !cutFails && (err != nil || !bytes.Equal(got, key)) {
				t.Fatalf("a rolled-back erasure must leave the key as it was until retried: %v", err)
			}
			_, _, err = s.GetOrCreate(ctx, KindSubject, "more")
			if cutFails != (err != nil) {
				t.Fatalf("new key after a torn erasure record (cut fails: %t): %v", cutFails, err)
			}
			efs.Clear()
			if cutFails {
				s.Close()
				s = openT(t, dir, m, Options{FS: efs})
				if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
					t.Fatalf("after reopen the key is as it was until retried: %v", err)
				}
			}
			assertErased(ctx, t, s, dir, kid, key, wrapped)
			if got, err := s.Key(ctx, bystander); err != nil || !bytes.Equal(got, bkey) {
				t.Fatalf("bystander key after the retried erasure: %v", err)
			}
			s.Close()
			s = openT(t, dir, m, Options{FS: efs}) // the DESTROYED file reads clean
			if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
				t.Fatalf("after reopen: %v", err)
			}
		})
	}
}

// TestDestroyOnFullDiskFinishesOnceSpaceIsFreed: the erasure is recorded
// (the key is no longer served) but rewriting its shard hits ENOSPC. The
// error says so, the store keeps serving other keys, and the next Sync
// after space is freed removes the wrapping from disk.
func TestDestroyOnFullDiskFinishesOnceSpaceIsFreed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	efs := vfs.NewErrorFS(nil)
	s := openT(t, dir, m, Options{FS: efs})
	defer s.Close()
	bystander, bkey, _ := s.GetOrCreate(ctx, KindSubject, "bystander")
	kid, _, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	full := efs.Add(&vfs.Fault{Op: vfs.OpWrite, Match: ".keys.tmp", Err: syscall.ENOSPC})
	kids, err := s.Destroy(ctx, KindSubject, "victim")
	if !errors.Is(err, syscall.ENOSPC) || len(kids) != 1 || !strings.Contains(err.Error(), "retried") {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("a recorded erasure must not serve the key: %v", err)
	}
	if got, err := s.Key(ctx, bystander); err != nil || !bytes.Equal(got, bkey) {
		t.Fatalf("bystander key while the disk is full: %v", err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 1 {
		t.Fatalf("setup: %v", found)
	}
	if err := s.Sync(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync must report the pending erasure while the disk is full: %v", err)
	}
	full.Off()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 0 {
		t.Fatal(found)
	}
}

func TestDestroyWhoseRewriteFailsIsFinishedBySync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	efs := vfs.NewErrorFS(nil)
	s := openT(t, dir, m, Options{FS: efs})
	defer s.Close()
	s.GetOrCreate(ctx, KindSubject, "bystander")
	kid, _, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	s.Sync(ctx)
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	fault := efs.Add(&vfs.Fault{Op: vfs.OpSync, Match: ".keys.tmp", Err: errIO})
	kids, err := s.Destroy(ctx, KindSubject, "victim")
	if !errors.Is(err, errIO) || len(kids) != 1 || !strings.Contains(err.Error(), "retried") {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	// Recorded and no longer served, but still on disk until the rewrite.
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("%v", err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 1 {
		t.Fatalf("setup: %v", found)
	}
	if err := s.Sync(ctx); !errors.Is(err, errIO) {
		t.Fatalf("sync must report the pending erasure: %v", err)
	}
	fault.Off()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 0 {
		t.Fatal(found)
	}
}

// assertErased retries the erasure of victim and checks the key is
// destroyed and neither it nor its wrapping is left anywhere on disk.
func assertErased(ctx context.Context, t *testing.T, s *Store, dir, kid string, key, wrapped []byte) {
	t.Helper()
	kids, err := s.Destroy(ctx, KindSubject, "victim")
	if err != nil || len(kids) > 1 || (len(kids) == 1 && kids[0] != kid) {
		t.Fatalf("retry: %v %v", kids, err)
	}
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("after retry: %v", err)
	}
	if found := scan(t, dir, map[string][]byte{"plaintext": key, "wrapped": wrapped}); len(found) != 0 {
		t.Fatal(found)
	}
}
