package keystore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/internal/vfs"
)

// BenchmarkBaselineFsync is the floor for Sync: one append of a batch's
// worth of frames (~140 KB) and one fsync, measured in the same run.
func BenchmarkBaselineFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1000*140)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetOrCreateSync1000: one op = 1,000 new subject keys + Sync.
func BenchmarkGetOrCreateSync1000(b *testing.B) {
	ctx := context.Background()
	s := openT(b, b.TempDir(), testMaster(b, 1), Options{})
	defer s.Close()
	n := 0
	var syncTime time.Duration
	for b.Loop() {
		for range 1000 {
			n++
			if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", n)); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		if err := s.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		syncTime += time.Since(t0)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
	b.ReportMetric(float64(syncTime.Microseconds())/1000/float64(b.N), "sync-ms/op")
}

func benchKey(b *testing.B, cacheSize int) {
	ctx := context.Background()
	s := openT(b, b.TempDir(), testMaster(b, 1), Options{CacheSize: cacheSize})
	defer s.Close()
	kids := make([]string, 1024)
	for i := range kids {
		kids[i], _, _ = s.GetOrCreate(ctx, KindSubject, fmt.Sprint("s", i))
	}
	i := 0
	for b.Loop() {
		if _, err := s.Key(ctx, kids[i%len(kids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkKeyCached(b *testing.B)   { benchKey(b, 0) }
func BenchmarkKeyUncached(b *testing.B) { benchKey(b, -1) }

// BenchmarkBaselineGCMOpen is the cost of the AES-GCM unwrap alone, the floor
// for an uncached Key with a local master.
func BenchmarkBaselineGCMOpen(b *testing.B) {
	k := make([]byte, 32)
	rand.Read(k)
	blk, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(blk)
	nonce := make([]byte, 12)
	ct := a.Seal(nil, nonce, make([]byte, 16+1+32+24), localWrapAAD)
	for b.Loop() {
		if _, err := a.Open(nil, nonce, ct, localWrapAAD); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDestroy1M: erasure cost with 1,000,000 keys in the store (about
// 3,900 per shard), next to the bare file I/O an erasure needs.
func BenchmarkDestroy1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds 1M keys")
	}
	const total = 1_000_000
	ctx := context.Background()
	dir := b.TempDir()
	s := openT(b, dir, testMaster(b, 1), Options{CacheSize: 1024})
	defer s.Close()
	start := time.Now()
	for i := range total {
		if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", i)); err != nil {
			b.Fatal(err)
		}
		if i%10000 == 9999 {
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	built := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapPerKey := float64(ms.HeapAlloc) / total
	b.Logf("built %d keys in %v; live heap %.0f bytes/key", total, built, heapPerKey)
	shardBytes := 0
	for _, p := range shardFiles(&testing.T{}, dir) {
		if st, err := os.Stat(p); err == nil && st.Size() > int64(shardBytes) {
			shardBytes = int(st.Size())
		}
	}
	// Destroy and its I/O floor run alternately in one loop so both see the
	// same disk: this machine's fsync latency swings several-fold over
	// seconds. The floor: a small append fsynced alongside a new file of one
	// shard's size, then rename and directory fsync, as Destroy does.
	floorDir := b.TempDir()
	list, err := os.Create(filepath.Join(floorDir, "list"))
	if err != nil {
		b.Fatal(err)
	}
	defer list.Close()
	floorBuf := make([]byte, shardBytes)
	floor := func() {
		list.Write(make([]byte, 25))
		done := make(chan error, 1)
		go func() { done <- list.Sync() }()
		tmp := filepath.Join(floorDir, "x.tmp")
		if err := writeFileSync(vfs.Default, tmp, floorBuf); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(floorDir, "x")); err != nil {
			b.Fatal(err)
		}
		if err := atomicfile.SyncDir(floorDir); err != nil {
			b.Fatal(err)
		}
	}
	i := 0 // outside the sub-benchmark: -count repeats must not reuse names
	b.Run("destroy", func(b *testing.B) {
		var inDestroy, inFloor time.Duration
		for b.Loop() {
			t0 := time.Now()
			kids, err := s.Destroy(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", i*7919%total))
			if err != nil || len(kids) != 1 {
				b.Fatalf("destroy %d: %v %v", i, kids, err)
			}
			t1 := time.Now()
			floor()
			inDestroy += t1.Sub(t0)
			inFloor += time.Since(t1)
			i++
		}
		b.ReportMetric(float64(inDestroy.Microseconds())/1000/float64(b.N), "ms/destroy")
		b.ReportMetric(float64(inFloor.Microseconds())/1000/float64(b.N), "ms/io-floor")
		b.ReportMetric(float64(inDestroy)/float64(inFloor), "x-floor")
		b.ReportMetric(heapPerKey, "heap-bytes/key")
		b.ReportMetric(float64(shardBytes), "shard-bytes")
	})
}

// BenchmarkRotate100k: one op re-wraps 100,000 keys under a new local master
// (the store is blocked meanwhile). Baseline: the same number of GCM
// open+seal pairs alone.
func BenchmarkRotate100k(b *testing.B) {
	if testing.Short() {
		b.Skip("builds 100k keys")
	}
	const total = 100_000
	ctx := context.Background()
	s := openT(b, b.TempDir(), testMaster(b, 1), Options{CacheSize: 1024})
	defer s.Close()
	for i := range total {
		if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	masters := []MasterKey{testMaster(b, 2), testMaster(b, 1)}
	b.Run("rotate", func(b *testing.B) {
		n := 0
		for b.Loop() {
			if err := s.Rotate(ctx, masters[n%2]); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("baseline-gcm-open-seal", func(b *testing.B) {
		m := testMaster(b, 3)
		w, _ := m.Wrap(ctx, make([]byte, 16+1+32+29))
		for b.Loop() {
			for range total {
				p, err := m.Unwrap(ctx, w)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Wrap(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "keys/s")
	})
}

// benchKeys is what the backend benchmarks call: both stores serve it.
type benchKeys interface {
	GetOrCreate(ctx context.Context, kind Kind, name string) (string, []byte, error)
	Key(ctx context.Context, kid string) ([]byte, error)
	Sync(ctx context.Context) error
}

// backend opens one keystore backend for a same-run comparison: "file",
// the KV store on one JetStream server ("kv-r1"), or on a 3-server
// cluster with the bucket replicated on all three ("kv-r3", the cluster's
// setting). Only the one measured runs, so the others do not load the CPU.
func backend(b *testing.B, name string, opts Options) benchKeys {
	b.Helper()
	m := testMaster(b, 1)
	switch name {
	case "kv-r1":
		return openKVT(b, connectJS(b, natstest.StartT(b, 1).URL(0)), m, opts)
	case "kv-r3":
		opts.Replicas = 3
		return openKVT(b, connectJS(b, natstest.StartT(b, 3).URL(0)), m, opts)
	}
	file := openT(b, b.TempDir(), m, opts)
	b.Cleanup(func() { file.Close() })
	return file
}

// BenchmarkBackendCreate: one op = one new subject key made durable
// (GetOrCreate then Sync: one fsync for the file store; for the KV store
// the entry and the name claim, each acknowledged by a quorum).
func BenchmarkBackendCreate(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"file", "kv-r1", "kv-r3"} {
		b.Run(name, func(b *testing.B) {
			s := backend(b, name, Options{})
			n := 0
			for b.Loop() {
				n++
				if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", n)); err != nil {
					b.Fatal(err)
				}
				if err := s.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkBackendGet: one op = GetOrCreate of an existing name and Key of
// its kid (the seal and reveal paths), over 1,000 keys; "uncached" turns
// the LRU off so each Key unwraps under the master key.
func BenchmarkBackendGet(b *testing.B) {
	ctx := context.Background()
	for _, cache := range []struct {
		name string
		size int
	}{{"cached", 0}, {"uncached", -1}} {
		for _, name := range []string{"file", "kv-r1", "kv-r3"} {
			b.Run(cache.name+"/"+name, func(b *testing.B) {
				s := backend(b, name, Options{CacheSize: cache.size})
				kids := make([]string, 1000)
				for i := range kids {
					kid, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", i))
					if err != nil {
						b.Fatal(err)
					}
					kids[i] = kid
				}
				if err := s.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				i := 0
				for b.Loop() {
					i++
					if _, _, err := s.GetOrCreate(ctx, KindSubject, fmt.Sprintf("subject-hmac-%012d", i%len(kids))); err != nil {
						b.Fatal(err)
					}
					if _, err := s.Key(ctx, kids[i%len(kids)]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
