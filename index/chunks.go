package index

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Source, table and actor lists are long and few: nearly every record adds
// a posting to one of each. Written as one key per posting they cost three
// memtable inserts per record, the index's largest cost under capture. So
// these lists are chunked instead: one key per list and block of 2^chunkBits
// seqs, whose value is the block's postings, and a batch adds to a block
// with one merge operand holding all of its postings for that block.
//
//	S source bucket           -> postings   (merge: concatenation)
//	T source table bucket     -> postings
//	A actor bucket            -> postings
//
// A posting in a chunk is the seq's offset in its block (2 bytes, big
// endian) and occurred_at (12 bytes, see putOccurredAt). The operands are
// merged in the batch that moves the watermark, so a replay after a crash
// never adds a posting twice and a block's postings are in seq order;
// readers still sort and drop duplicates should a block say otherwise.
//
// Entity lists stay one key per posting: an entity has few records, and a
// whole-table walk (ScanEntities) reads them key by key.
const (
	chunkBits        = 12
	chunkPostingSize = 2 + postingValueSize
)

func chunked(p byte) bool { return p == pSource || p == pTable || p == pActor }

func chunkKey(dst, prefix []byte, bucket uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefix...), bucket)
}

// chunkBatch gathers a batch's postings per chunk key, in first-seen order.
type chunkBatch struct {
	keys []string
	vals map[string][]byte
	key  []byte
}

func (c *chunkBatch) add(prefix []byte, seq uint64, occ []byte) {
	if c.vals == nil {
		c.vals = map[string][]byte{}
	}
	c.key = chunkKey(c.key[:0], prefix, seq>>chunkBits)
	v, ok := c.vals[string(c.key)]
	if !ok {
		c.keys = append(c.keys, string(c.key))
	}
	v = binary.BigEndian.AppendUint16(v, uint16(seq&(1<<chunkBits-1)))
	c.vals[string(c.key)] = append(v, occ...)
}

func (c *chunkBatch) merge(b *pebble.Batch) error {
	for _, k := range c.keys {
		if err := b.Merge([]byte(k), c.vals[k], nil); err != nil {
			return fmt.Errorf("write index: %w", err)
		}
	}
	return nil
}

// scanChunks is Scan over a chunked list.
func (ix *Index) scanChunks(l List, desc bool, from uint64, blocks *Blocks, fn func(Posting) bool) error {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: l.prefix, UpperBound: l.upper()})
	if err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	defer it.Close()
	// seek positions it at the last chunk at or before bucket (desc) or the
	// first at or after it.
	seek := func(bucket uint64) bool {
		switch {
		case !desc:
			return it.SeekGE(chunkKey(nil, l.prefix, bucket))
		case bucket == math.MaxUint64>>chunkBits:
			return it.Last()
		default:
			return it.SeekLT(chunkKey(nil, l.prefix, bucket+1))
		}
	}
	n := len(l.prefix)
	var scratch []chunkPosting
chunks:
	for valid := seek(from >> chunkBits); valid; valid = step(it, desc) {
		k, v := it.Key(), it.Value()
		if len(k) != n+8 || len(v)%chunkPostingSize != 0 {
			return fmt.Errorf("index chunk of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
		}
		bucket := binary.BigEndian.Uint64(k[n:])
		for blocks != nil && !blocks.Has(bucket<<chunkBits) {
			// Seek to the window's next block in this direction: always
			// strictly past this chunk, so the walk ends.
			var next uint64
			var ok bool
			if desc {
				next, ok = blocks.Prev(bucket << chunkBits)
			} else {
				next, ok = blocks.Next(bucket << chunkBits)
			}
			if !ok || !seek(next>>chunkBits) {
				break chunks
			}
			if k, v = it.Key(), it.Value(); len(k) != n+8 || len(v)%chunkPostingSize != 0 {
				return fmt.Errorf("index chunk of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
			}
			bucket = binary.BigEndian.Uint64(k[n:])
		}
		base := bucket << chunkBits
		scratch = chunkPostings(scratch[:0], v)
		for i := range scratch {
			if desc {
				i = len(scratch) - 1 - i
			}
			p := Posting{Seq: base + uint64(scratch[i].offset), OccurredAt: occurredAt(scratch[i].occ)}
			if (!desc && p.Seq < from) || (desc && p.Seq > from) {
				continue
			}
			if !fn(p) {
				return nil
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	return nil
}

type chunkPosting struct {
	offset uint16
	occ    []byte
}

// chunkPostings decodes a chunk's value into dst in seq order, once each.
func chunkPostings(dst []chunkPosting, v []byte) []chunkPosting {
	sorted := true
	for i := 0; i < len(v); i += chunkPostingSize {
		p := chunkPosting{offset: binary.BigEndian.Uint16(v[i:]), occ: v[i+2 : i+chunkPostingSize]}
		if len(dst) > 0 && p.offset <= dst[len(dst)-1].offset {
			sorted = false
		}
		dst = append(dst, p)
	}
	if sorted {
		return dst
	}
	slices.SortStableFunc(dst, func(a, b chunkPosting) int { return int(a.offset) - int(b.offset) })
	return slices.CompactFunc(dst, func(a, b chunkPosting) bool { return a.offset == b.offset })
}

// indexMerger merges the subject counters (sums), the list chunks
// (concatenations) and the time blocks (spans), told apart by their key's
// first byte.
var indexMerger = &pebble.Merger{
	Name: "stele.index.v5",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		if len(key) > 0 && chunked(key[0]) {
			return &concatMerger{newer: slices.Clone(value)}, nil
		}
		if len(key) > 0 && key[0] == pTimeBlock {
			return newSpanMerger(value)
		}
		m := &sumMerger{}
		return m, m.MergeNewer(value)
	},
}

// concatMerger joins operands oldest first. Forward iteration hands them
// over newest first (MergeOlder), so the older ones are kept apart and
// put in front at the end.
type concatMerger struct {
	older [][]byte // each older than the ones before it
	newer []byte
}

func (m *concatMerger) MergeNewer(v []byte) error {
	m.newer = append(m.newer, v...)
	return nil
}

func (m *concatMerger) MergeOlder(v []byte) error {
	m.older = append(m.older, slices.Clone(v))
	return nil
}

func (m *concatMerger) Finish(bool) ([]byte, io.Closer, error) {
	if len(m.older) == 0 {
		return m.newer, nil, nil
	}
	n := len(m.newer)
	for _, o := range m.older {
		n += len(o)
	}
	out := make([]byte, 0, n)
	for i := len(m.older) - 1; i >= 0; i-- {
		out = append(out, m.older[i]...)
	}
	return append(out, m.newer...), nil, nil
}
