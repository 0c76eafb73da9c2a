// Package index keeps the secondary indexes that answer Stele's queries
// (by id, source, table, entity, actor, op and time). It is derived data:
// everything in it is rebuilt from the log by replay, so it is written
// without fsync and a lost or damaged index never loses a record.
package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/stele/stele/record"
)

// Key layout. Variable-length parts are length-prefixed so no value can
// collide with a separator; seqs are big-endian so keys sort in log order.
//
// Posting values hold occurred_at as 8-byte Unix seconds and 4-byte
// nanoseconds (big endian): Unix nanoseconds alone would overflow outside
// the years 1678-2262, and records may carry any year 0000-9999.
//
//	W                         -> watermark (records indexed)
//	I id                      -> seq
//	S source seq              -> occurred_at
//	T source table seq        -> occurred_at
//	E source table key seq    -> occurred_at   (entity history)
//	A actor seq               -> occurred_at
//	X source table seq        -> occurred_at   (truncates of a table)
const (
	pWatermark = 'W'
	pID        = 'I'
	pSource    = 'S'
	pTable     = 'T'
	pEntity    = 'E'
	pActor     = 'A'
	pTruncate  = 'X'
)

const cacheBytes = 128 << 20

// Index is an open index database.
type Index struct {
	db *pebble.DB
}

// Open opens or creates the index in dir.
func Open(dir string, logger *slog.Logger) (*Index, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	// A cache large enough to hold the filter and index blocks keeps the
	// per-append id lookup off the disk; a large memtable batches the
	// scattered entity and actor keys before they reach compaction.
	// No WAL: the log is this index's write-ahead log. After a crash the
	// index reopens at the watermark of its last flushed memtable and the
	// log replays the rest (log.Store's catch-up).
	opts := &pebble.Options{Logger: pebbleLogger{logger}, Cache: cache, MemTableSize: 64 << 20, DisableWAL: true}
	opts.EnsureDefaults()
	for i := range opts.Levels {
		// Bloom filters make the id lookup done for every append cheap when
		// the id is new, which is the common case.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return &Index{db: db}, nil
}

// Close flushes and closes the index.
func (ix *Index) Close() error {
	if err := ix.db.Flush(); err != nil {
		ix.db.Close()
		return fmt.Errorf("flush index: %w", err)
	}
	return ix.db.Close()
}

// Watermark is the number of leading log records indexed.
func (ix *Index) Watermark() (uint64, error) {
	v, closer, err := ix.db.Get([]byte{pWatermark})
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read index watermark: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("index watermark is %d bytes, want 8: the index is damaged; run `stele reindex`", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// LookupID returns the seq of the record with this id.
func (ix *Index) LookupID(id string) (uint64, bool, error) {
	v, closer, err := ix.db.Get(append([]byte{pID}, id...))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up record id: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("index entry for a record id is %d bytes, want 8: run `stele reindex`", len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// Apply indexes a batch of records that directly follow the watermark.
// Large batches are split across two goroutines, each committing its own
// Pebble batch, so memtable inserts use both cores; the watermark moves in a
// last, separate commit. A crash in between leaves the old watermark, and
// replaying sets the same keys again.
func (ix *Index) Apply(recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	parts := 1
	if len(recs) >= 512 {
		parts = 2
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		lo, hi := p*len(recs)/parts, (p+1)*len(recs)/parts
		wg.Go(func() { errs[p] = ix.applyPart(recs[lo:hi]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var seqBuf [8]byte
	binary.BigEndian.PutUint64(seqBuf[:], recs[len(recs)-1].Seq+1)
	if err := ix.db.Set([]byte{pWatermark}, seqBuf[:], pebble.NoSync); err != nil {
		return fmt.Errorf("write index watermark: %w", err)
	}
	return nil
}

func (ix *Index) applyPart(recs []*record.Record) error {
	b := ix.db.NewBatch()
	defer b.Close()
	key := make([]byte, 0, 256)
	var val [postingValueSize]byte
	var seqBuf [8]byte
	for _, r := range recs {
		putOccurredAt(val[:], r.OccurredAt)
		binary.BigEndian.PutUint64(seqBuf[:], r.Seq)
		keyStr, err := record.KeyString(r.Key)
		if err != nil {
			return fmt.Errorf("index seq %d: %w", r.Seq, err)
		}
		if err := b.Set(append(append(key[:0], pID), r.ID...), seqBuf[:], nil); err != nil {
			return err
		}
		lists := []List{
			SourceList(r.Source.Name),
			TableList(r.Source.Name, r.Source.Table),
			EntityList(r.Source.Name, r.Source.Table, keyStr),
		}
		if actor := r.ActorID(); actor != "" {
			lists = append(lists, ActorList(actor))
		}
		if r.Op == record.OpTruncate {
			lists = append(lists, TruncateList(r.Source.Name, r.Source.Table))
		}
		for _, l := range lists {
			if err := b.Set(l.key(key[:0], r.Seq), val[:], nil); err != nil {
				return err
			}
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "index")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "index")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "index", "fatal", true)
	panic(fmt.Sprintf(format, args...))
}
