package index

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TableStats sums up one table's posting list: how many records name it
// and its newest one.
type TableStats struct {
	Source, Table string
	Records       uint64
	LastSeq       uint64
	LastChange    time.Time // occurred_at of LastSeq
}

// Tables calls fn with every table the index holds, in (source, table)
// order, until fn returns false. It reads only the table lists' chunks
// (one key per 4,096 records of a table), so it costs a few milliseconds
// per million records and holds no record.
func (ix *Index) Tables(fn func(TableStats) bool) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return err
	}
	return ix.checkDamage(ix.tables(fn))
}

func (ix *Index) tables(fn func(TableStats) bool) error {
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pTable}, UpperBound: []byte{pTable + 1}})
	if err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	defer it.Close()
	var cur *TableStats
	var scratch []chunkPosting
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		src, rest, ok := cutUvarintBytes(k[1:])
		var tbl []byte
		if ok {
			tbl, rest, ok = cutUvarintBytes(rest)
		}
		if !ok || len(rest) != 8 || len(v)%chunkPostingSize != 0 {
			return fmt.Errorf("index table chunk of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
		}
		if cur == nil || cur.Source != string(src) || cur.Table != string(tbl) {
			if cur != nil && !fn(*cur) {
				return nil
			}
			cur = &TableStats{Source: string(src), Table: string(tbl)}
		}
		scratch = chunkPostings(scratch[:0], v)
		if len(scratch) == 0 {
			continue
		}
		cur.Records += uint64(len(scratch))
		last := scratch[len(scratch)-1]
		cur.LastSeq = binary.BigEndian.Uint64(rest)<<chunkBits + uint64(last.offset)
		cur.LastChange = occurredAt(last.occ)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	if cur != nil {
		fn(*cur)
	}
	return nil
}
