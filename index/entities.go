package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ScanEntities walks every entity posting list of one table: all postings
// of one key, in seq order, before those of the next key. Keys come in the
// index's order (shorter key strings first, then bytewise). With after
// non-nil the walk starts at the first key that sorts after *after, which
// lets a caller resume a paged walk. The key slice passed to fn is valid
// only during the call.
//
// This is what makes a whole-table state at an instant cheap in memory: a
// caller folds one entity at a time instead of holding every unit of the
// table while it walks the table's posting list.
func (ix *Index) ScanEntities(source, table string, after *string, fn func(key []byte, p Posting) bool) error {
	tl := list(pEntity, source, table)
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: tl.prefix, UpperBound: tl.upper()})
	if err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	defer it.Close()
	var valid bool
	if after != nil {
		valid = it.SeekGE(EntityList(source, table, *after).upper())
	} else {
		valid = it.First()
	}
	n := len(tl.prefix)
	for ; valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		klen, w := binary.Uvarint(k[n:])
		if w <= 0 || uint64(len(k)-n-w) != klen+8 || len(v) != postingValueSize {
			return fmt.Errorf("index entry of %d/%d bytes is damaged: run `stele reindex`", len(k), len(v))
		}
		key := k[n+w : n+w+int(klen)]
		p := Posting{Seq: binary.BigEndian.Uint64(k[len(k)-8:]), OccurredAt: occurredAt(v)}
		if !fn(key, p) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	return nil
}
