package privacy

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// keyCache is a bounded map of what was derived from data keys; when a
// shard is full, its older half generation is dropped. Erasure drops the
// entries of the destroyed keys (forget).
//
// It is read for every sealed record by every core preparing a batch: one
// lock shared by all of them made its cache line travel between cores on
// each lookup, so the entries are spread over shards, each with its own
// lock on its own cache line.
type keyCache[V any] struct {
	seed   maphash.Seed
	shards [keyCacheShards]keyShard[V]
}

const keyCacheShards = 16

type keyShard[V any] struct {
	mu       sync.RWMutex
	max      int
	cur, old map[string]V
	_        [64]byte // keeps the next shard's lock off this cache line
}

// init sizes the cache to hold about max entries; it must be called
// before any other method.
func (c *keyCache[V]) init(max int) {
	c.seed = maphash.MakeSeed()
	for i := range c.shards {
		c.shards[i].max = max / keyCacheShards
	}
}

func (c *keyCache[V]) get(key []byte) (V, bool) {
	sh := &c.shards[maphash.Bytes(c.seed, key)%keyCacheShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if v, ok := sh.cur[string(key)]; ok {
		return v, true
	}
	v, ok := sh.old[string(key)]
	return v, ok
}

// put caches v unless epoch moved since seen, which was read before the
// keys v comes from were looked up: forget moves the epoch before it takes
// the locks, so keys destroyed meanwhile are never cached.
func (c *keyCache[V]) put(key string, v V, epoch *atomic.Uint64, seen uint64) {
	// The same shard as get's: maphash hashes a string as its bytes.
	sh := &c.shards[maphash.String(c.seed, key)%keyCacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if epoch.Load() != seen {
		return
	}
	if sh.cur == nil || len(sh.cur) >= max(1, sh.max/2) {
		sh.old, sh.cur = sh.cur, map[string]V{}
	}
	sh.cur[key] = v
}

func (c *keyCache[V]) forget(gone func(key string, v V) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, m := range [...]map[string]V{sh.cur, sh.old} {
			for k, v := range m {
				if gone(k, v) {
					delete(m, k)
				}
			}
		}
		sh.mu.Unlock()
	}
}
