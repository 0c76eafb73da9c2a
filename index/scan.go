package index

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// List names one posting list: the seqs of records sharing an attribute.
type List struct {
	prefix []byte
}

// Key identifies the list (its key prefix), for fingerprinting a query;
// the bytes are a copy.
func (l List) Key() []byte { return append([]byte(nil), l.prefix...) }

func list(p byte, parts ...string) List {
	return List{prefix: appendListPrefix(nil, p, parts...)}
}

// appendListPrefix appends the key prefix of list p over parts, each
// length-prefixed so no value can run into the next.
func appendListPrefix(dst []byte, p byte, parts ...string) []byte {
	dst = append(dst, p)
	for _, s := range parts {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// The posting lists a query can scan.
func SourceList(source string) List             { return list(pSource, source) }
func TableList(source, table string) List       { return list(pTable, source, table) }
func EntityList(source, table, key string) List { return list(pEntity, source, table, key) }
func ActorList(actor string) List               { return list(pActor, actor) }
func TruncateList(source, table string) List    { return list(pTruncate, source, table) }
func CauseList(eventID string) List             { return list(pCause, eventID) }

func (l List) key(dst []byte, seq uint64) []byte {
	dst = append(dst, l.prefix...)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func (l List) upper() []byte {
	// Every key of the list is prefix + 8 bytes, so prefix + 9 x 0xff bounds it.
	return append(append([]byte(nil), l.prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

// Posting is one entry of a list.
type Posting struct {
	Seq        uint64
	OccurredAt time.Time
}

// Scan walks l in seq order starting at from (inclusive), newest first when
// desc, calling fn until it returns false.
func (ix *Index) Scan(l List, desc bool, from uint64, fn func(Posting) bool) error {
	return ix.ScanBlocks(l, desc, from, nil, fn)
}

// ScanBlocks is Scan over the postings in blocks only (from TimeBlocks; nil
// is every block). A chunked list skips the other blocks with a seek each,
// so a time window costs its blocks, not the list's length.
func (ix *Index) ScanBlocks(l List, desc bool, from uint64, blocks *Blocks, fn func(Posting) bool) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return err
	}
	if chunked(l.prefix[0]) {
		return ix.checkDamage(ix.scanChunks(l, desc, from, blocks, fn))
	}
	if blocks != nil {
		// Entity, cause and truncate lists are short: filtered, not skipped.
		inner := fn
		fn = func(p Posting) bool { return !blocks.Has(p.Seq) || inner(p) }
	}
	return ix.checkDamage(ix.scan(l, desc, from, fn))
}

func (ix *Index) scan(l List, desc bool, from uint64, fn func(Posting) bool) error {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: l.prefix, UpperBound: l.upper()})
	if err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	defer it.Close()
	var valid bool
	if desc {
		if from == math.MaxUint64 {
			valid = it.Last()
		} else {
			valid = it.SeekLT(l.key(nil, from+1))
		}
	} else {
		valid = it.SeekGE(l.key(nil, from))
	}
	n := len(l.prefix)
	for ; valid; valid = step(it, desc) {
		k, v := it.Key(), it.Value()
		if len(k) != n+8 || len(v) != postingValueSize {
			return fmt.Errorf("index entry of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
		}
		p := Posting{Seq: binary.BigEndian.Uint64(k[n:]), OccurredAt: occurredAt(v)}
		if !fn(p) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	return nil
}

func step(it *pebble.Iterator, desc bool) bool {
	if desc {
		return it.Prev()
	}
	return it.Next()
}

const postingValueSize = 12

func putOccurredAt(dst []byte, t time.Time) {
	binary.BigEndian.PutUint64(dst[0:8], uint64(t.Unix()))
	binary.BigEndian.PutUint32(dst[8:12], uint32(t.Nanosecond()))
}

func occurredAt(v []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(v[0:8])), int64(binary.BigEndian.Uint32(v[8:12]))).UTC()
}
