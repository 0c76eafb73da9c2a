package keystore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

var errInjected = errors.New("injected I/O error")

func TestFailedSyncStopsTheStoreAndReopenRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	durable, dkey, _ := s.GetOrCreate(ctx, KindSubject, "durable")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.faults = func(op, file string) error {
		if op == "fsync" && strings.HasSuffix(file, ".keys") {
			return errInjected
		}
		return nil
	}
	lost, _, _ := s.GetOrCreate(ctx, KindSubject, "lost")
	if err := s.Sync(ctx); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), ".keys") {
		t.Fatalf("sync: %v", err)
	}
	// A failed fsync leaves the file in an unknown state: nothing more is
	// accepted until the store is reopened from disk.
	if _, _, err := s.GetOrCreate(ctx, KindSubject, "after"); !errors.Is(err, errInjected) {
		t.Fatalf("store still accepts keys: %v", err)
	}
	if err := s.Sync(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("second sync: %v", err)
	}
	s.Close()
	s = openT(t, dir, m, Options{})
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
	s := openT(t, dir, m, Options{})
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	s.Sync(ctx)
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	s.faults = func(op, file string) error {
		if op == "fsync" && file == "DESTROYED" {
			return errInjected
		}
		return nil
	}
	if _, err := s.Destroy(ctx, KindSubject, "victim"); !errors.Is(err, errInjected) {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := s.Destroy(ctx, KindSubject, "victim"); !errors.Is(err, errInjected) {
		t.Fatalf("a failed store must not report a retried erasure as done: %v", err)
	}
	s.Close()
	s = openT(t, dir, m, Options{})
	defer s.Close()
	// The record's bytes may have reached the file despite the failed fsync
	// (here they did, so Open finished the erasure); either way the caller's
	// retry must leave the key destroyed and gone from disk.
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

func TestDestroyWhoseRewriteFailsIsFinishedBySync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	defer s.Close()
	s.GetOrCreate(ctx, KindSubject, "bystander")
	kid, _, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	s.Sync(ctx)
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	fail := true
	s.faults = func(op, file string) error {
		if op == "rewrite" && fail {
			return errInjected
		}
		return nil
	}
	kids, err := s.Destroy(ctx, KindSubject, "victim")
	if !errors.Is(err, errInjected) || len(kids) != 1 || !strings.Contains(err.Error(), "retried") {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	// Recorded and no longer served, but still on disk until the rewrite.
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("%v", err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 1 {
		t.Fatalf("setup: %v", found)
	}
	if err := s.Sync(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("sync must report the pending erasure: %v", err)
	}
	fail = false
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 0 {
		t.Fatal(found)
	}
}
