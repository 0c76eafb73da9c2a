package keystore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stele/stele/internal/vfs"
)

func openT(t testing.TB, dir string, m MasterKey, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, m, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	kid, key, err := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != KeySize || len(kid) != kidTextLen {
		t.Fatalf("key %d bytes, kid %q", len(key), kid)
	}
	kid2, key2, err := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice")
	if err != nil || kid2 != kid || !bytes.Equal(key2, key) {
		t.Fatalf("second GetOrCreate: %v %s", err, kid2)
	}
	// Same name, other kind: another key.
	pkid, pkey, err := s.GetOrCreate(ctx, KindPeriod, "hmac-of-alice")
	if err != nil || pkid == kid || bytes.Equal(pkey, key) {
		t.Fatalf("kinds not separate: %v", err)
	}
	got, err := s.Key(ctx, kid)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Key: %v", err)
	}
	got[0] ^= 0xff // callers get a copy; the cache must not change
	if again, _ := s.Key(ctx, kid); !bytes.Equal(again, key) {
		t.Fatal("caller mutation reached the cache")
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}

	s = openT(t, dir, m, Options{})
	defer s.Close()
	got, err = s.Key(ctx, kid) // uncached: unwrapped from disk
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("after reopen: %v", err)
	}
	if k, _, _ := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice"); k != kid {
		t.Fatal("reopen made a new generation")
	}
	if n := s.Names(KindPeriod); len(n) != 1 || n[0] != "hmac-of-alice" {
		t.Fatalf("Names: %v", n)
	}
}

func TestKeyUnknownAndMalformed(t *testing.T) {
	s := openT(t, t.TempDir(), testMaster(t, 1), Options{})
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Key(ctx, strings.Repeat("ab", 16)); !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrDestroyed) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := s.Key(ctx, "zz"); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("malformed: %v", err)
	}
	if _, _, err := s.GetOrCreate(ctx, KindSubject, ""); err == nil {
		t.Fatal("empty name accepted")
	}
	long := strings.Repeat("x", MaxNameLen+1)
	if _, _, err := s.GetOrCreate(ctx, KindSubject, long); err == nil || strings.Contains(err.Error(), "xxxx") {
		t.Fatalf("long name: %v", err)
	}
	if _, _, err := s.GetOrCreate(ctx, Kind(9), "n"); err == nil || !strings.Contains(err.Error(), "kind 9") {
		t.Fatalf("bad kind: %v", err)
	}
}

// snapshot copies dir as a crash would leave it: only what reached the files.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestUnsyncedKeysAreNotDurableSyncedAre(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	defer s.Close()
	synced, _, _ := s.GetOrCreate(ctx, KindSubject, "a")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	unsynced, _, _ := s.GetOrCreate(ctx, KindSubject, "b")
	crash := snapshot(t, dir) // "crash" before the second Sync
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)

	c := openT(t, crash, m, Options{})
	if _, err := c.Key(ctx, synced); err != nil {
		t.Fatalf("synced key lost: %v", err)
	}
	if _, err := c.Key(ctx, unsynced); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unsynced key present after crash: %v", err)
	}
	c.Close()
	a := openT(t, after, m, Options{})
	defer a.Close()
	if _, err := a.Key(ctx, unsynced); err != nil {
		t.Fatalf("key synced later lost: %v", err)
	}
}

func shardFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".keys") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestTornTailIsCutOnOpen(t *testing.T) {
	ctx := context.Background()
	m := testMaster(t, 1)
	for _, tc := range []struct {
		name string
		tail func(frame []byte) []byte
	}{
		{"half frame", func(f []byte) []byte { return f[:len(f)/2] }},
		{"header only", func(f []byte) []byte { return f[:5] }},
		{"bad crc last frame", func(f []byte) []byte { g := bytes.Clone(f); g[len(g)-1] ^= 1; return g }},
		{"zero fill", func(f []byte) []byte { return make([]byte, len(f)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, m, Options{})
			kid, key, _ := s.GetOrCreate(ctx, KindSubject, "kept")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := shardFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("shard files %v", files)
			}
			data, _ := os.ReadFile(files[0])
			size := len(data)
			f, _ := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
			f.Write(tc.tail(data)) // the one frame, damaged, as a crash mid-append would leave it
			f.Close()

			s = openT(t, dir, m, Options{})
			defer s.Close()
			if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
				t.Fatalf("durable key lost: %v", err)
			}
			if st, _ := os.Stat(files[0]); st.Size() != int64(size) {
				t.Fatalf("tail not cut: %d bytes, want %d", st.Size(), size)
			}
			// Appends after the cut land on a clean frame boundary.
			kid2, _, _ := s.GetOrCreate(ctx, KindSubject, "next")
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = openT(t, dir, m, Options{})
			if _, err := s.Key(ctx, kid2); err != nil {
				t.Fatalf("key after cut: %v", err)
			}
		})
	}
}

func TestDamageInTheMiddleIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	for i := range 3 {
		s.GetOrCreate(ctx, KindSubject, fmt.Sprint("n", i))
	}
	s.Close()
	files := shardFiles(t, dir)
	data, _ := os.ReadFile(files[0])
	data[frameHeader+3] ^= 0x40 // inside the first frame's body
	os.WriteFile(files[0], data, 0o600)
	if _, err := Open(ctx, dir, m, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("mid-file damage: %v", err)
	}
}

// scan reports which of the needles appear in any file under dir.
func scan(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if bytes.Contains(data, n) {
				found = append(found, name+" in "+p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestDestroyErasesFromEveryFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	// Neighbours in the same shard must survive the rewrite.
	neighbours := map[string][]byte{}
	for i := range 50 {
		kid, key, _ := s.GetOrCreate(ctx, KindSubject, fmt.Sprint("neighbour-", i))
		neighbours[kid] = key
	}
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "erase-me")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	needles := map[string][]byte{"plaintext": key, "wrapped": wrapped}

	// The scan can fail: before Destroy the wrapped form is on disk.
	if found := scan(t, dir, needles); len(found) != 1 || !strings.HasPrefix(found[0], "wrapped") {
		t.Fatalf("before destroy: %v (want only the wrapped form)", found)
	}
	kids, err := s.Destroy(ctx, KindSubject, "erase-me")
	if err != nil || len(kids) != 1 || kids[0] != kid {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	if found := scan(t, dir, needles); len(found) != 0 {
		t.Fatalf("destroyed key still on disk: %v", found)
	}
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("Key after destroy: %v", err)
	}
	if _, err := s.Key(ctx, kid); err == nil || strings.Contains(err.Error(), "erase-me") {
		t.Fatalf("error names the subject: %v", err)
	}
	s.Close()
	if found := scan(t, dir, needles); len(found) != 0 {
		t.Fatalf("destroyed key on disk after close: %v", found)
	}
	s = openT(t, dir, m, Options{})
	defer s.Close()
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("after reopen: %v", err)
	}
	for nk, nkey := range neighbours {
		if got, err := s.Key(ctx, nk); err != nil || !bytes.Equal(got, nkey) {
			t.Fatalf("neighbour %s lost: %v", nk, err)
		}
	}
	if names := s.Names(KindSubject); len(names) != 50 {
		t.Fatalf("names %d", len(names))
	}
	// Nothing to destroy is not an error: erasure is idempotent.
	if kids, err := s.Destroy(ctx, KindSubject, "erase-me"); err != nil || len(kids) != 0 {
		t.Fatalf("second destroy: %v %v", kids, err)
	}
}

func TestDestroyUnsyncedKeyNeverReachesDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, testMaster(t, 1), Options{})
	defer s.Close()
	s.GetOrCreate(ctx, KindSubject, "other")
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "short-lived")
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	if _, err := s.Destroy(ctx, KindSubject, "short-lived"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if found := scan(t, dir, map[string][]byte{"plaintext": key, "wrapped": wrapped}); len(found) != 0 {
		t.Fatalf("%v", found)
	}
}

func TestDestroyThenGetOrCreateMakesNewGeneration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	old, oldKey, _ := s.GetOrCreate(ctx, KindPeriod, "P7Y/2019-05")
	s.Sync(ctx)
	if _, err := s.Destroy(ctx, KindPeriod, "P7Y/2019-05"); err != nil {
		t.Fatal(err)
	}
	if n := s.Names(KindPeriod); len(n) != 0 {
		t.Fatalf("destroyed name still listed: %v", n)
	}
	fresh, freshKey, err := s.GetOrCreate(ctx, KindPeriod, "P7Y/2019-05")
	if err != nil || fresh == old || bytes.Equal(freshKey, oldKey) {
		t.Fatalf("new generation: %v %s %s", err, fresh, old)
	}
	if _, err := s.Key(ctx, old); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("old kid: %v", err)
	}
	s.Close()
	s = openT(t, dir, m, Options{})
	defer s.Close()
	if got, err := s.Key(ctx, fresh); err != nil || !bytes.Equal(got, freshKey) {
		t.Fatalf("fresh after reopen: %v", err)
	}
	if _, err := s.Key(ctx, old); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("old after reopen: %v", err)
	}
}

func TestInterruptedDestroyIsFinishedByOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "victim")
	s.GetOrCreate(ctx, KindSubject, "bystander")
	k, _ := parseKid(kid)
	wrapped := bytes.Clone(s.shards[k[0]].entries[k].wrapped)
	s.Close()
	// A crash after Destroy recorded the kid but before the shard rewrite:
	// append the DESTROYED record by hand.
	f, _ := os.OpenFile(filepath.Join(dir, genName(1), "DESTROYED"), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(appendFrame(nil, appendDestroyedBody(nil, k)))
	f.Close()
	if found := scan(t, dir, map[string][]byte{"wrapped": wrapped}); len(found) != 1 {
		t.Fatalf("setup: wrapped key should still be in its shard: %v", found)
	}

	s = openT(t, dir, m, Options{})
	defer s.Close()
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("%v", err)
	}
	if found := scan(t, dir, map[string][]byte{"plaintext": key, "wrapped": wrapped}); len(found) != 0 {
		t.Fatalf("open did not scrub: %v", found)
	}
	if n := s.Names(KindSubject); len(n) != 1 || n[0] != "bystander" {
		t.Fatalf("%v", n)
	}
}

func TestCacheBound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{CacheSize: 8})
	var kids []string
	for i := range 100 {
		kid, _, _ := s.GetOrCreate(ctx, KindSubject, fmt.Sprint("s", i))
		kids = append(kids, kid)
		if n := s.cache.len(); n > 8 {
			t.Fatalf("cache holds %d keys, bound 8", n)
		}
	}
	for _, kid := range kids {
		if _, err := s.Key(ctx, kid); err != nil {
			t.Fatal(err)
		}
		if n := s.cache.len(); n > 8 {
			t.Fatalf("cache holds %d keys, bound 8", n)
		}
	}
	if s.cache.len() != 8 {
		t.Fatalf("cache %d, want full at 8", s.cache.len())
	}
	// LRU: the most recently used survives, the least recent is gone.
	last, _ := parseKid(kids[99])
	first, _ := parseKid(kids[0])
	if _, ok := s.cache.items[last]; !ok {
		t.Fatal("most recent key evicted")
	}
	if _, ok := s.cache.items[first]; ok {
		t.Fatal("least recent key kept")
	}
	s.Close()
	if s.cache.len() != 0 {
		t.Fatal("close kept unwrapped keys")
	}
	none := openT(t, dir, m, Options{CacheSize: -1})
	defer none.Close()
	if _, err := none.Key(ctx, kids[3]); err != nil || none.cache.len() != 0 {
		t.Fatalf("negative CacheSize cached: %v %d", err, none.cache.len())
	}
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldM, newM := testMaster(t, 1), testMaster(t, 2)
	s := openT(t, dir, oldM, Options{})
	keys := map[string][]byte{}
	for i := range 300 {
		kid, key, _ := s.GetOrCreate(ctx, KindSubject, fmt.Sprint("s", i))
		keys[kid] = key
	}
	s.Sync(ctx)
	gone, _, _ := s.GetOrCreate(ctx, KindSubject, "gone")
	s.Destroy(ctx, KindSubject, "gone")
	unsynced, ukey, _ := s.GetOrCreate(ctx, KindSystem, "blind-index")
	keys[unsynced] = ukey

	if err := s.Rotate(ctx, newM); err != nil {
		t.Fatal(err)
	}
	if s.MasterID() != newM.ID() {
		t.Fatal("master not switched")
	}
	for kid, key := range keys {
		if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
			t.Fatalf("after rotate %s: %v", kid, err)
		}
	}
	s.Close()

	// Every wrapping on disk: the old master opens none, the new one all.
	var frames int
	for _, p := range shardFiles(t, dir) {
		if _, err := readFrames(vfs.Default, p, func(body []byte) error {
			e, err := decodeEntry(body)
			if err != nil {
				return err
			}
			frames++
			if e.masterID != newM.ID() {
				t.Errorf("entry under %s", e.masterID)
			}
			if _, err := oldM.Unwrap(ctx, e.wrapped); err == nil {
				t.Errorf("old master unwraps kid %x", e.kid)
			}
			p, err := newM.Unwrap(ctx, e.wrapped)
			if err != nil {
				t.Errorf("new master cannot unwrap kid %x: %v", e.kid, err)
			}
			if _, err := keyFromPlain(e, p); err != nil {
				t.Error(err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if frames != len(keys) {
		t.Fatalf("%d entries on disk, want %d", frames, len(keys))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 { // LOCK, CURRENT, g00000002
		t.Fatalf("old generation left behind: %v", ents)
	}
	if _, err := Open(ctx, dir, oldM, Options{}); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("old master opened the rotated store: %v", err)
	}
	s = openT(t, dir, newM, Options{})
	defer s.Close()
	if _, err := s.Key(ctx, gone); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("destroyed list lost in rotation: %v", err)
	}
	if got, err := s.Key(ctx, unsynced); err != nil || !bytes.Equal(got, ukey) {
		t.Fatalf("unsynced key lost in rotation: %v", err)
	}
}

func TestRotationCutShortLeavesOldGeneration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldM := testMaster(t, 1)
	s := openT(t, dir, oldM, Options{})
	kid, key, _ := s.GetOrCreate(ctx, KindSubject, "a")
	s.Close()
	// A crash mid-rotation leaves a half-written next generation.
	half := filepath.Join(dir, genName(2))
	os.Mkdir(half, 0o700)
	os.WriteFile(filepath.Join(half, "00.keys"), []byte("partial"), 0o600)
	s = openT(t, dir, oldM, Options{})
	defer s.Close()
	if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
		t.Fatal(err)
	}
	if _, err := os.Stat(half); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("half generation not removed")
	}
}

func TestWrongMasterOnOpenAndKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	s.GetOrCreate(ctx, KindSubject, "a")
	s.Close()

	_, err := Open(ctx, dir, testMaster(t, 9), Options{})
	if !errors.Is(err, ErrWrongMaster) || !strings.Contains(err.Error(), m.ID()) {
		t.Fatalf("other key: %v", err)
	}
	// Same id, different key material (e.g. a key file replaced): the
	// canary catches it before any key is served.
	if _, err := Open(ctx, dir, sameIDMaster{testMaster(t, 9), m.ID()}, Options{}); !errors.Is(err, ErrWrongMaster) || !strings.Contains(err.Error(), "canary") {
		t.Fatalf("same id, other key: %v", err)
	}
}

func TestSwappedWrappingIsDetectedByKey(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), testMaster(t, 1), Options{CacheSize: -1})
	defer s.Close()
	ka, _, _ := s.GetOrCreate(ctx, KindSubject, "a")
	kb, _, _ := s.GetOrCreate(ctx, KindSubject, "b")
	a, _ := parseKid(ka)
	b, _ := parseKid(kb)
	ea, eb := s.shards[a[0]].entries[a], s.shards[b[0]].entries[b]
	ea.wrapped, eb.wrapped = eb.wrapped, ea.wrapped
	if _, err := s.Key(ctx, ka); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("swapped wrapping served: %v", err)
	}
}

type sameIDMaster struct {
	MasterKey
	id string
}

func (m sameIDMaster) ID() string { return m.id }

func TestSecondOpenOfSameDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testMaster(t, 1), Options{})
	defer s.Close()
	if _, err := Open(context.Background(), dir, testMaster(t, 1), Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("%v", err)
	}
}

func TestConcurrentGetOrCreateAndGroupSync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	var wg sync.WaitGroup
	kids := make([]string, 32)
	for g := range 32 {
		wg.Go(func() {
			kid, _, err := s.GetOrCreate(ctx, KindSubject, "shared")
			if err != nil {
				t.Error(err)
			}
			kids[g] = kid
			for i := range 20 {
				if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprint(g, "-", i)); err != nil {
					t.Error(err)
				}
				if err := s.Sync(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, k := range kids {
		if k != kids[0] {
			t.Fatal("concurrent GetOrCreate made two generations")
		}
	}
	snap := snapshot(t, dir) // everything was synced: a crash now loses nothing
	s.Close()
	c := openT(t, snap, m, Options{})
	defer c.Close()
	if c.Len() != 32*20+1 {
		t.Fatalf("%d keys durable, want %d", c.Len(), 32*20+1)
	}
}

func TestSyncHonoursContextWhileWaiting(t *testing.T) {
	s := openT(t, t.TempDir(), testMaster(t, 1), Options{})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s.GetOrCreate(ctx, KindSubject, "a")
	s.mu.Lock()
	s.flushing = true // another caller's flush in progress
	s.flushDone = make(chan struct{})
	s.mu.Unlock()
	cancel()
	if err := s.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v", err)
	}
	s.mu.Lock()
	s.flushing = false
	close(s.flushDone)
	s.mu.Unlock()
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSyncGroupCommitSharesOneFlush(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), testMaster(t, 1), Options{})
	defer s.Close()
	// Hold the file lock as an in-progress flush would, so every caller
	// queues behind it; then one flush must make all of them durable.
	s.fileMu.Lock()
	const n = 16
	errs := make(chan error, n)
	for g := range n {
		go func() {
			if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprint("g", g)); err != nil {
				errs <- err
				return
			}
			errs <- s.Sync(ctx)
		}()
	}
	for {
		s.mu.Lock()
		created := s.seq
		s.mu.Unlock()
		if created == n {
			break
		}
		runtime.Gosched()
	}
	before := s.flushes
	s.fileMu.Unlock()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.flushes - before; got != 1 {
		t.Fatalf("%d concurrent Syncs ran %d flushes, want 1", n, got)
	}
}

func TestDuplicateGenerationsOnDiskAreAllDestroyed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	kid1, _, _ := s.GetOrCreate(ctx, KindSubject, "twice")
	k1, _ := parseKid(kid1)
	e1 := *s.shards[k1[0]].entries[k1]
	s.Close()
	// Forge a second live generation of the same name in the same shard.
	e2 := e1
	e2.kid[15] ^= 0xff
	key := bytes.Repeat([]byte{5}, KeySize)
	w, _ := m.Wrap(ctx, wrapPlain(&e2, key))
	e2.wrapped = w
	frame, _ := appendEntryFrame(nil, &e2, nil)
	f, _ := os.OpenFile(filepath.Join(dir, genName(1), shardName(int(k1[0]))), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(frame)
	f.Close()

	s = openT(t, dir, m, Options{})
	defer s.Close()
	kids, err := s.Destroy(ctx, KindSubject, "twice")
	if err != nil || len(kids) != 2 {
		t.Fatalf("destroyed %v, %v; want both generations", kids, err)
	}
	for _, k := range kids {
		if _, err := s.Key(ctx, k); !errors.Is(err, ErrDestroyed) {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if found := scan(t, dir, map[string][]byte{"w1": e1.wrapped, "w2": w}); len(found) != 0 {
		t.Fatal(found)
	}
}

func TestParseKid(t *testing.T) {
	var k kidT
	for i := range k {
		k[i] = byte(i*17 + 3)
	}
	text := formatKid(k)
	if len(text) != kidTextLen || strings.ContainsAny(text, ".=+/") {
		t.Fatalf("kid text %q: want %d base64url characters, no padding and no dot (the envelope separates two kids with one)", text, kidTextLen)
	}
	legacy := hex.EncodeToString(k[:])
	for name, s := range map[string]string{"text": text, "hex": legacy, "upper-case hex": strings.ToUpper(legacy)} {
		if got, ok := parseKid(s); !ok || got != k {
			t.Errorf("%s form %q does not parse back", name, s)
		}
		if c, ok := CanonicalKid(s); !ok || c != text {
			t.Errorf("CanonicalKid(%q) = %q, %v; want %q", s, c, ok, text)
		}
	}
	// The last character carries 2 of 6 bits: any other value of the
	// 4 spare bits is a second spelling of the same kid, refused.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	alias := text[:kidTextLen-1] + string(alphabet[strings.IndexByte(alphabet, text[kidTextLen-1])|1])
	for _, bad := range []string{"", "00", strings.Repeat("g", 32), strings.Repeat("0", 31) + "x", strings.Repeat("0", 33),
		text[:kidTextLen-1], text + "A", text[:5] + "+" + text[6:], text[:5] + "." + text[6:], alias} {
		if _, ok := parseKid(bad); ok {
			t.Errorf("accepted %q", bad)
		}
		if _, ok := CanonicalKid(bad); ok {
			t.Errorf("CanonicalKid accepted %q", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseKid(text) }); n != 0 {
		t.Errorf("parseKid allocates %v times per call; it runs on every read of a sealed field", n)
	}
}

// TestLegacyHexKids: stores written before kids were base64url handed out
// 32 hex digits, which old envelopes keep. Key serves a key under either
// form, and after Destroy refuses both.
func TestLegacyHexKids(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), testMaster(t, 1), Options{CacheSize: -1})
	defer s.Close()
	kid, key, err := s.GetOrCreate(ctx, KindSubject, "old-subject")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := parseKid(kid)
	legacy := hex.EncodeToString(k[:])
	if got, err := s.Key(ctx, legacy); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Key(%s) = %v; want the key of %s", legacy, err, kid)
	}
	kids, err := s.Destroy(ctx, KindSubject, "old-subject")
	if err != nil || len(kids) != 1 || kids[0] != kid {
		t.Fatalf("Destroy: %v %v; want [%s] in today's form", kids, err, kid)
	}
	for _, form := range []string{kid, legacy} {
		if _, err := s.Key(ctx, form); !errors.Is(err, ErrDestroyed) {
			t.Errorf("Key(%s) after Destroy: %v, want ErrDestroyed", form, err)
		}
	}
	if _, err := s.Key(ctx, legacy[:31]+"z"); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed kid: %v", err)
	}
}

func TestMissingCurrentDoesNotWipeKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := testMaster(t, 1)
	s := openT(t, dir, m, Options{})
	kid, _, _ := s.GetOrCreate(ctx, KindSubject, "a")
	s.Close()
	os.Remove(filepath.Join(dir, "CURRENT"))
	if _, err := Open(ctx, dir, m, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "CURRENT is missing") {
		t.Fatalf("%v", err)
	}
	os.WriteFile(filepath.Join(dir, "CURRENT"), []byte(genName(1)+"\n"), 0o600)
	s = openT(t, dir, m, Options{})
	defer s.Close()
	if _, err := s.Key(ctx, kid); err != nil {
		t.Fatal(err)
	}
}

func TestCrashDuringCreationIsRetried(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, genName(1)), 0o700) // created, no CURRENT yet
	os.WriteFile(filepath.Join(dir, genName(1), "MASTER"), []byte("half"), 0o600)
	s := openT(t, dir, testMaster(t, 1), Options{})
	s.Close()
}
