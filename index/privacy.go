package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stele/stele/record"
)

// Personal-data entries, derived before sealing (record.Derived) and never
// stored in the log. Keys:
//
//	B token subject seq  -> occurred_at   (blind index: keyed hash of field+value)
//	V subject token      -> ""            (the tokens a subject has, for purging)
//	C subject            -> uint64 count  (records naming the subject; merge operand)
//
// A prepared entry may also carry "P subject": the record is an erasure
// receipt, and applying it purges the subject's B and V entries and resets
// its C count (the receipt holds the count up to it).
//
// B keys carry the subject so erasure removes exactly that subject's entries
// with one range deletion per token, whatever its record count.
const (
	pBlind        = 'B'
	pSubjectTerms = 'V'
	pSubjectCount = 'C'
	pPurge        = 'P'
)

// sumMerger adds 8-byte big-endian operands: the subject counts are
// updated without reading, in the batch that moves the watermark, so a
// replay after a crash never counts a record twice.
type sumMerger struct{ sum uint64 }

func (m *sumMerger) add(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("index counter operand is %d bytes, want 8: %w", len(v), ErrCorrupt)
	}
	m.sum += binary.BigEndian.Uint64(v)
	return nil
}
func (m *sumMerger) MergeNewer(v []byte) error { return m.add(v) }
func (m *sumMerger) MergeOlder(v []byte) error { return m.add(v) }
func (m *sumMerger) Finish(bool) ([]byte, io.Closer, error) {
	return binary.BigEndian.AppendUint64(nil, m.sum), nil, nil
}

func blindPrefix(token []byte) []byte {
	b := binary.AppendUvarint([]byte{pBlind}, uint64(len(token)))
	return append(b, token...)
}

func subjectPart(dst []byte, subject string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(subject)))
	return append(dst, subject...)
}

// derivedLists are the list prefixes of a record's personal-data entries,
// encoded into its prepared entry like the other posting lists; apply tells
// them apart by their first byte.
func derivedLists(d *record.Derived) [][]byte {
	if d == nil {
		return nil
	}
	var out [][]byte
	for _, t := range d.Terms {
		out = append(out, subjectPart(blindPrefix(t.Token), t.Subject))
		v := subjectPart([]byte{pSubjectTerms}, t.Subject)
		out = append(out, append(binary.AppendUvarint(v, uint64(len(t.Token))), t.Token...))
	}
	for _, s := range d.Subjects {
		out = append(out, subjectPart([]byte{pSubjectCount}, s))
	}
	for _, s := range d.Erased {
		out = append(out, subjectPart([]byte{pPurge}, s))
	}
	return out
}

// subjectCounts sums a batch's count entries per subject, so the batch
// merges one operand per subject rather than one per record: reading a
// count merges every operand not yet compacted, which made counting a
// subject of a million records cost in proportion to them.
type subjectCounts struct {
	keys []string
	n    map[string]uint64
}

func (c *subjectCounts) add(key []byte) {
	if c.n == nil {
		c.n = map[string]uint64{}
	}
	if _, ok := c.n[string(key)]; !ok {
		c.keys = append(c.keys, string(key))
	}
	c.n[string(key)]++
}

func (c *subjectCounts) merge(b *pebble.Batch) error {
	for _, k := range c.keys {
		if err := b.Merge([]byte(k), binary.BigEndian.AppendUint64(nil, c.n[k]), nil); err != nil {
			return fmt.Errorf("write subject count: %w", err)
		}
	}
	return nil
}

// SearchBlind returns the seqs of records whose blind index holds token, in
// ascending order. Tokens are per field and value, so the lists are short.
func (ix *Index) SearchBlind(token []byte, fn func(Posting) bool) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return err
	}
	return ix.checkDamage(ix.searchBlind(token, fn))
}

func (ix *Index) searchBlind(token []byte, fn func(Posting) bool) error {
	prefix := blindPrefix(token)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("scan blind index: %w", err)
	}
	defer it.Close()
	var ps []Posting
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < len(prefix)+8 || len(v) != postingValueSize {
			return fmt.Errorf("blind index entry of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
		}
		ps = append(ps, Posting{Seq: binary.BigEndian.Uint64(k[len(k)-8:]), OccurredAt: occurredAt(it.Value())})
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan blind index: %w", err)
	}
	// Entries are grouped by subject, then by seq; merge them into log order.
	slices.SortFunc(ps, func(a, b Posting) int { return cmpU64(a.Seq, b.Seq) })
	for _, p := range ps {
		if !fn(p) {
			break
		}
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SubjectCount is the number of indexed records naming the subject.
func (ix *Index) SubjectCount(subject string) (uint64, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return 0, err
	}
	n, err := ix.subjectCount(subject)
	return n, ix.checkDamage(err)
}

func (ix *Index) subjectCount(subject string) (uint64, error) {
	n, _, err := getUint64(ix.db, subjectPart([]byte{pSubjectCount}, subject), "subject count")
	return n, err
}

// purgeSubject adds to b the range deletions that remove every blind-index
// entry of an erased subject — one per distinct token, whatever its record
// count — and returns the ranges, to be compacted once committed.
func (ix *Index) purgeSubject(b *pebble.Batch, subject string) ([][2][]byte, error) {
	vPrefix := subjectPart([]byte{pSubjectTerms}, subject)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: vPrefix, UpperBound: prefixEnd(vPrefix)})
	if err != nil {
		return nil, fmt.Errorf("purge subject: %w", err)
	}
	var ranges [][2][]byte
	for valid := it.First(); valid; valid = it.Next() {
		token, _, ok := cutUvarintBytes(it.Key()[len(vPrefix):])
		if !ok {
			continue
		}
		start := subjectPart(blindPrefix(token), subject)
		ranges = append(ranges, [2][]byte{start, prefixEnd(start)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("purge subject: %w", err)
	}
	ranges = append(ranges, [2][]byte{vPrefix, prefixEnd(vPrefix)})
	for _, r := range ranges {
		if err := b.DeleteRange(r[0], r[1], nil); err != nil {
			return nil, fmt.Errorf("purge subject: %w", err)
		}
	}
	return ranges, nil
}

// compactAway rewrites the purged ranges in the background, so deleted
// entries leave the files instead of lingering under range tombstones.
func (ix *Index) compactAway(ranges [][2][]byte) {
	if len(ranges) == 0 {
		return
	}
	// The database of this apply: a rebuild swaps ix.db, after waiting
	// for these.
	db := ix.db
	ix.bg.Go(func() {
		// Flushing first moves the memtable's copies into files that the
		// compaction then rewrites without them.
		if err := db.Flush(); err != nil {
			return
		}
		for _, r := range ranges {
			if ix.bgCtx.Err() != nil {
				return
			}
			_ = db.Compact(ix.bgCtx, r[0], r[1], false)
		}
	})
}

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
