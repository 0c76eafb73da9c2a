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
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return err
	}
	return ix.checkDamage(ix.scanEntities(source, table, after, fn))
}

func (ix *Index) scanEntities(source, table string, after *string, fn func(key []byte, p Posting) bool) error {
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
		if len(k) < n+8 {
			return fmt.Errorf("entity index key of %d bytes: %w", len(k), ErrCorrupt)
		}
		// Compared without adding to klen, which a damaged key can make
		// large enough to wrap around.
		klen, w := binary.Uvarint(k[n:])
		if w <= 0 || klen != uint64(len(k)-n-w-8) || len(k)-n-w < 8 || len(v) != postingValueSize {
			return fmt.Errorf("entity index entry of %d/%d bytes: %w", len(k), len(v), ErrCorrupt)
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
