package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Time blocks answer a time window without a scan of the log. occurred_at
// is the source's commit time, close to log order but not in it (sources
// commit in parallel, snapshots carry old times), so an index sorted by
// time would list records out of seq order, and pages and cursors are in
// seq order. Instead the index keeps, for every block of 2^chunkBits seqs
// (the blocks of the chunked lists), the earliest and latest occurred_at
// in it:
//
//	M bucket                  -> min occurred_at ‖ max occurred_at (merge: min, max)
//
// A window reads these (one key per 4,096 records) and a query visits only
// the blocks whose span meets it, in the log or in a chunked list alike.
// Min and max are idempotent, so replaying a batch after a crash leaves the
// same span.

const timeSpanSize = 2 * postingValueSize

func timeBlockKey(bucket uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pTimeBlock}, bucket)
}

// timeSpans gathers a batch's spans per block.
type timeSpans struct {
	buckets []uint64
	spans   map[uint64][]byte
}

func (s *timeSpans) add(seq uint64, occ []byte) {
	if s.spans == nil {
		s.spans = map[uint64][]byte{}
	}
	b := seq >> chunkBits
	span, ok := s.spans[b]
	if !ok {
		s.buckets = append(s.buckets, b)
		s.spans[b] = append(append(make([]byte, 0, timeSpanSize), occ...), occ...)
		return
	}
	widen(span, occ)
}

// widen widens span (min ‖ max) to hold occ. The encoding of
// putOccurredAt sorts as the times do for the years 1970-9999; earlier
// times (negative seconds) sort last, so they are compared as times.
func widen(span, occ []byte) {
	if compareOcc(occ, span[:postingValueSize]) < 0 {
		copy(span[:postingValueSize], occ)
	}
	if compareOcc(occ, span[postingValueSize:]) > 0 {
		copy(span[postingValueSize:], occ)
	}
}

func compareOcc(a, b []byte) int {
	sa, sb := int64(binary.BigEndian.Uint64(a)), int64(binary.BigEndian.Uint64(b))
	if sa != sb {
		if sa < sb {
			return -1
		}
		return 1
	}
	return bytes.Compare(a[8:postingValueSize], b[8:postingValueSize])
}

func (s *timeSpans) merge(b *pebble.Batch) error {
	for _, bucket := range s.buckets {
		if err := b.Merge(timeBlockKey(bucket), s.spans[bucket], nil); err != nil {
			return fmt.Errorf("write index: %w", err)
		}
	}
	return nil
}

// spanMerger merges time spans: the earliest min and the latest max.
type spanMerger struct{ span []byte }

func newSpanMerger(v []byte) (*spanMerger, error) {
	if len(v) != timeSpanSize {
		return nil, fmt.Errorf("index time block of %d bytes: %w", len(v), ErrCorrupt)
	}
	return &spanMerger{span: append([]byte(nil), v...)}, nil
}

func (m *spanMerger) MergeNewer(v []byte) error { return m.mergeSpan(v) }
func (m *spanMerger) MergeOlder(v []byte) error { return m.mergeSpan(v) }

func (m *spanMerger) mergeSpan(v []byte) error {
	if len(v) != timeSpanSize {
		return fmt.Errorf("index time block of %d bytes: %w", len(v), ErrCorrupt)
	}
	widen(m.span, v[:postingValueSize])
	widen(m.span, v[postingValueSize:])
	return nil
}

func (m *spanMerger) Finish(bool) ([]byte, io.Closer, error) { return m.span, nil, nil }

// Blocks is the set of seq blocks a time window may hold records of, from
// Index.TimeBlocks.
type Blocks struct {
	buckets []uint64 // ascending
}

// Has reports whether seq is in a block of b.
func (b *Blocks) Has(seq uint64) bool {
	i := b.search(seq >> chunkBits)
	return i < len(b.buckets) && b.buckets[i] == seq>>chunkBits
}

// Next returns the first seq at or after from in a block of b, or false.
func (b *Blocks) Next(from uint64) (uint64, bool) {
	i := b.search(from >> chunkBits)
	if i == len(b.buckets) {
		return 0, false
	}
	if b.buckets[i] == from>>chunkBits {
		return from, true
	}
	return b.buckets[i] << chunkBits, true
}

// Prev returns the last seq at or before from in a block of b, or false.
func (b *Blocks) Prev(from uint64) (uint64, bool) {
	i := b.search(from>>chunkBits + 1) // the first block after from's
	if from>>chunkBits == ^uint64(0)>>chunkBits {
		i = len(b.buckets)
	}
	if i == 0 {
		return 0, false
	}
	if bk := b.buckets[i-1]; bk != from>>chunkBits {
		return bk<<chunkBits | (1<<chunkBits - 1), true
	}
	return from, true
}

// search returns the index of the first bucket ≥ bucket.
func (b *Blocks) search(bucket uint64) int {
	lo, hi := 0, len(b.buckets)
	for lo < hi {
		mid := (lo + hi) / 2
		if b.buckets[mid] < bucket {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// TimeBlocks returns the blocks of seqs holding a record whose occurred_at
// may fall in [since, until) (a zero bound is open). It reads one key per
// 4,096 records.
func (ix *Index) TimeBlocks(since, until time.Time) (*Blocks, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return nil, err
	}
	b, err := ix.timeBlocks(since, until)
	return b, ix.checkDamage(err)
}

func (ix *Index) timeBlocks(since, until time.Time) (*Blocks, error) {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pTimeBlock}, UpperBound: []byte{pTimeBlock + 1}})
	if err != nil {
		return nil, fmt.Errorf("scan index: %w", err)
	}
	defer it.Close()
	out := &Blocks{}
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 9 || len(v) != timeSpanSize {
			return nil, fmt.Errorf("index time block of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
		}
		lo, hi := occurredAt(v[:postingValueSize]), occurredAt(v[postingValueSize:])
		if (!since.IsZero() && hi.Before(since)) || (!until.IsZero() && !lo.Before(until)) {
			continue
		}
		out.buckets = append(out.buckets, binary.BigEndian.Uint64(k[1:]))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("scan index: %w", err)
	}
	return out, nil
}
