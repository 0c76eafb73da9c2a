package gctune

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultMemoryLimit is the Go memory `stele serve` aims to stay under
// unless configured otherwise (memory_limit) or GOMEMLIMIT is set. With
// GOGC at Percent the heap would grow to three times the live data before
// a collection; while the live heap is small that is well under this
// limit and costs nothing, and during a burst (a lineage stream catching
// up, a large transaction) the limit makes the collector run earlier
// instead of letting the process grow. Measured with stele bench --only
// stream, limits alternated under the same load: 300k records, peak RSS
// 212 MiB at 128 MiB against 225-238 MiB at 160 MiB; --quick, 157-159 MiB
// at 96 MiB against 166-178 MiB at 128 MiB, while the live heap during
// the stream's catch-up was about 36 MiB. Capture, whose live heap is
// about 20 MiB, does not reach it. The rest of the process's memory
// (the binary, the index's memtables and block cache, which Pebble
// allocates outside the Go heap) comes on top.
const DefaultMemoryLimit = 96 << 20

// limitEvery is how often the limit is checked against the live heap
// after a collection.
const limitEvery = 100 * time.Millisecond

// LimitMemory holds the Go runtime's memory under limit bytes (a soft
// limit: debug.SetMemoryLimit) until ctx ends, unless GOMEMLIMIT is set,
// which always wins (the runtime applied it at start). limit <= 0 sets
// none.
//
// A fixed limit below what the live heap needs would make the collector
// run back to back. So the limit is never held below twice the live heap
// (plus the runtime's own non-heap memory): when the live data outgrows
// the limit the collector falls back to GOGC=100's pace, doubling the
// live heap between collections, rather than spending the CPU.
func LimitMemory(ctx context.Context, limit int64) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || limit <= 0 {
		return
	}
	lim := limiter{base: limit, set: debug.SetMemoryLimit}
	lim.apply(lim.base)
	go func() {
		defer debug.SetMemoryLimit(math.MaxInt64) // the runtime's "no limit"
		t := time.NewTicker(limitEvery)
		defer t.Stop()
		samples := newHeapSamples()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if cycles, live, other := samples.read(); cycles != lim.cycles {
				lim.cycles = cycles
				lim.apply(lim.target(live, other))
			}
		}
	}()
}

// limiter adjusts the memory limit to the live heap.
type limiter struct {
	base   int64
	cycles uint64
	// set is debug.SetMemoryLimit: it sets the limit and returns the
	// previous one, or with a negative value only returns it.
	set func(int64) int64
}

// target is the limit for a live heap of live bytes and other bytes of
// the runtime's memory that is not heap (stacks, metadata).
func (l *limiter) target(live, other uint64) int64 {
	return max(l.base, int64(2*live+other))
}

// apply sets the limit when it is more than a MiB from the runtime's, so
// a steady heap does not reset it every tick. The runtime's, not the last
// one set: a nested LimitMemory that ended has reset it.
func (l *limiter) apply(v int64) {
	if d := v - l.set(-1); d > 1<<20 || d < -(1<<20) {
		l.set(v)
	}
}

// heapSamples reads the runtime metrics the limiter needs.
type heapSamples struct{ s []metrics.Sample }

const (
	mCycles = iota
	mLive
	mTotal
	mObjects
	mUnused
	mFree
	mReleased
)

func newHeapSamples() heapSamples {
	names := []string{"/gc/cycles/total:gc-cycles", "/gc/heap/live:bytes", "/memory/classes/total:bytes",
		"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes", "/memory/classes/heap/released:bytes"}
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	return heapSamples{s}
}

// read returns the collections so far, the live heap after the last one
// and the runtime's memory that is not heap.
func (h heapSamples) read() (cycles, live, other uint64) {
	metrics.Read(h.s)
	v := func(i int) uint64 {
		if h.s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return h.s[i].Value.Uint64()
	}
	heap := v(mObjects) + v(mUnused) + v(mFree) + v(mReleased)
	if t := v(mTotal); t > heap {
		other = t - heap
	}
	return v(mCycles), v(mLive), other
}
