// Package index keeps the secondary indexes that answer Stele's queries
// (by id, source, table, entity, actor, op and time). It is derived data:
// everything in it is rebuilt from the log by replay, so it is written
// without fsync and a lost or damaged index never loses a record.
package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"

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
//	H                         -> id watermark (idruns.go)
//	I id                      -> seq
//	S source bucket           -> postings      (chunked, see chunks.go)
//	T source table bucket     -> postings
//	E source table key seq    -> occurred_at   (entity history)
//	A actor bucket            -> postings
//	X source table seq        -> occurred_at   (truncates of a table)
//	K cause seq               -> occurred_at   (the changes an event caused:
//	                                            cause.record_id, see
//	                                            capture.JoinOutbox)
//	M bucket                  -> occurred_at span of 4,096 seqs (timeblocks.go)
//
// The Merger's name (chunks.go) is the format's version: an index of an
// older format fails to open with ErrIncompatible, and the server sets it
// aside and rebuilds it from the log (v4 added the cause list, v5 the time
// blocks).
const (
	pWatermark = 'W'
	// pIDWatermark sorts just before the ids and no other key sorts
	// between, so an id run's sstable spans no key of the memtable.
	pIDWatermark = 'H'
	pID          = 'I'
	pSource      = 'S'
	pTable       = 'T'
	pEntity      = 'E'
	pActor       = 'A'
	pTruncate    = 'X'
	pCause       = 'K'
	pTimeBlock   = 'M'
)

const cacheBytes = 128 << 20

// Index is an open index database.
type Index struct {
	dir    string
	logger *slog.Logger

	// mu guards db and ids: every use read-locks it, and only the swap of a
	// damaged database for a rebuilt one (rebuild.go) write-locks it, so a
	// reader never touches a closed database.
	mu  sync.RWMutex
	db  *pebble.DB
	ids *idFilter
	// pend and writerOpts belong to db (idruns.go).
	pend       *pendingIDs
	writerOpts sstable.WriterOptions

	// applied is the watermark after the last apply: what a rebuild must
	// restore before the log's follower applies the next batch.
	applied atomic.Uint64
	// damaged is set when corruption is seen, and cleared once the index
	// is rebuilt; reads meanwhile answer ErrRebuilding.
	damaged   atomic.Bool
	damage    chan struct{} // wakes the rebuild loop; buffered 1
	rebuilder atomic.Pointer[Rebuilder]
	loop      sync.WaitGroup

	// bg runs purge compactions; Close cancels and waits for them.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// ErrIncompatible: the index directory was written by an incompatible
// version; it is derived data, so set it aside and rebuild it.
var ErrIncompatible = errors.New("index written by an incompatible version")

// Open opens or creates the index in dir.
func Open(dir string, logger *slog.Logger) (*Index, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ix := &Index{dir: dir, logger: logger, damage: make(chan struct{}, 1)}
	db, err := ix.openDB()
	if err != nil {
		return nil, err
	}
	ix.db = db
	ix.bgCtx, ix.bgCancel = context.WithCancel(context.Background())
	w, err := ix.watermark()
	if err != nil {
		db.Close()
		if isDamage(err) {
			return nil, &damageError{what: "open index " + dir, cause: err}
		}
		return nil, err
	}
	idw, err := ix.idWatermark(ix.bgCtx, w)
	if err != nil {
		db.Close()
		return nil, err
	}
	ix.applied.Store(w)
	ix.pend = newPendingIDs(idw)
	// Room for the log to double before the filter is rebuilt bigger.
	ix.ids = newIDFilter(db, max(2*uint(w), 1<<20), logger)
	return ix, nil
}

// openDB opens the Pebble database in ix.dir. Corruption Pebble finds
// (a block checksum, a bad sstable) is reported to ix, which sets the index
// aside and rebuilds it, instead of Pebble's default of a fatal panic.
func (ix *Index) openDB() (*pebble.DB, error) {
	dir := ix.dir
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	// A cache large enough to hold the filter and index blocks keeps the
	// per-append id lookup off the disk; the memtable batches the
	// scattered entity and actor keys before they reach compaction. It is
	// allocated outside the Go heap, and Pebble flushes only once the
	// full memtables add up to half its size, so at 64 MiB a bench run of
	// 300k records held 63 MiB of memtables and never flushed; at 16 MiB
	// the lineage stream's peak RSS fell by about 20 MiB (stele bench
	// --only stream, alternated with 64 MiB under the same load), but the
	// transaction-heavy PostgreSQL capture lost about a tenth against
	// pg_recvlogical (more flushes and compactions). 32 MiB sits between:
	// idle machine, alternated, tx-heavy medians 0.89-1.01x at 32, 0.84-0.96x
	// at 16, 0.90-1.08x at 64; peak RSS 180, 175 and 189 MiB.
	// No WAL: the log is this index's write-ahead log. After a crash the
	// index reopens at the watermark of its last flushed memtable and the
	// log replays the rest (logstore.Store's catch-up).
	opts := &pebble.Options{Logger: pebbleLogger{ix.logger}, Cache: cache, MemTableSize: 32 << 20, DisableWAL: true, Merger: indexMerger}
	opts.EventListener = &pebble.EventListener{
		// The bounds and details of a corruption may hold index keys,
		// which hold entity keys and actor ids: only the file is logged.
		DataCorruption: func(info pebble.DataCorruptionInfo) { ix.noteDamage("corrupt file " + info.Path) },
		BackgroundError: func(err error) {
			if isDamage(err) {
				ix.noteDamage("a background compaction found corruption")
				return
			}
			ix.logger.Error("index background error", "err", err, "component", "index")
		},
	}
	opts.EnsureDefaults()
	for i := range opts.Levels {
		// Bloom filters make the id lookup done for every append cheap when
		// the id is new, which is the common case.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	_ = os.Remove(filepath.Join(dir, runFile)) // a run a crash left unlinked
	db, err := pebble.Open(dir, opts)
	if err != nil && strings.Contains(err.Error(), "merger name") {
		return nil, fmt.Errorf("open index %s: %w: %v", dir, ErrIncompatible, err)
	}
	if err != nil {
		if isDamage(err) {
			return nil, fmt.Errorf("open index %s: %w: %w", dir, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	ix.writerOpts = opts.MakeWriterOptions(0, db.TableFormat())
	ix.writerOpts.Compression = sstable.NoCompression
	return db, nil
}

// Close flushes and closes the index.
func (ix *Index) Close() error {
	// Purge compactions are small; letting them finish (before the
	// cancel that also stops the rebuild loop) keeps erased subjects'
	// tokens out of the files.
	ix.bg.Wait()
	ix.bgCancel()
	ix.loop.Wait()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.bg.Wait()
	if ix.damaged.Load() || ix.db == nil {
		// Nothing worth flushing: the next open rebuilds it anyway.
		ix.closeDB()
		return nil
	}
	ix.ids.close()
	if err := ix.ingestIDs(context.Background()); err != nil {
		ix.db.Close()
		return err
	}
	if err := ix.db.Flush(); err != nil {
		ix.db.Close()
		return fmt.Errorf("flush index: %w", err)
	}
	return ix.db.Close()
}

// Watermark is the number of leading log records indexed, ids included:
// the log replays from there after a crash.
func (ix *Index) Watermark() (uint64, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return 0, err
	}
	w, err := ix.watermark()
	return min(w, ix.pend.until()), ix.checkDamage(err)
}

func (ix *Index) watermark() (uint64, error) {
	w, _, err := getUint64(ix.db, []byte{pWatermark}, "index watermark")
	return w, err
}

// getUint64 reads the 8-byte big-endian value at key; what names it in
// errors.
func getUint64(db *pebble.DB, key []byte, what string) (v uint64, found bool, err error) {
	b, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", what, err)
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, false, fmt.Errorf("%s is %d bytes, want 8: %w", what, len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), true, nil
}

// LookupID returns the seq of the record with this id. The log asks it
// before every append, so on damage it rebuilds the index there and then
// and asks the rebuilt one: an answer from a damaged index could let a
// duplicate in.
func (ix *Index) LookupID(id string) (uint64, bool, error) {
	seq, ok, err := ix.lookupID(id)
	if err != nil && isDamage(err) && ix.rebuilder.Load() != nil {
		if err := ix.rebuildNow(); err != nil {
			return 0, false, err
		}
		seq, ok, err = ix.lookupID(id)
	}
	return seq, ok, err
}

func (ix *Index) lookupID(id string) (uint64, bool, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.damaged.Load() {
		return 0, false, fmt.Errorf("look up record id: %w", ErrCorrupt)
	}
	// The filter holds the held ids too, so it answers first for the
	// common new id.
	if !ix.ids.mayContain([]byte(id)) {
		return 0, false, nil
	}
	if seq, ok := ix.pend.lookup([]byte(id)); ok {
		return seq, true, nil
	}
	v, closer, err := ix.db.Get(append([]byte{pID}, id...))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		ix.checkDamage(err)
		return 0, false, fmt.Errorf("look up record id: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		ix.noteDamage("a record id entry has the wrong size")
		return 0, false, fmt.Errorf("index entry for a record id is %d bytes, want 8: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// Prepare derives a record's index entries. The log calls it on the
// appending goroutine, before the record has a seq, so parsing the key and
// actor spreads over every core instead of the single goroutine that
// applies entries in order. The entry is compact, so a lagging index costs
// little memory.
//
// Entry layout: occurred_at (12 bytes, see putOccurredAt), uvarint length +
// id, then per posting list: uvarint length + list prefix.
func (ix *Index) Prepare(r *record.Record) ([]byte, error) {
	keyStr, err := record.KeyString(r.Key)
	if err != nil {
		return nil, fmt.Errorf("index a record key: %w", err)
	}
	e := make([]byte, postingValueSize, 96+len(r.ID)+3*len(r.Source.Name)+3*len(r.Source.Table)+len(keyStr))
	putOccurredAt(e, r.OccurredAt)
	e = binary.AppendUvarint(e, uint64(len(r.ID)))
	e = append(e, r.ID...)
	e = appendList(e, pSource, r.Source.Name)
	e = appendList(e, pTable, r.Source.Name, r.Source.Table)
	e = appendList(e, pEntity, r.Source.Name, r.Source.Table, keyStr)
	if actor := r.ActorID(); actor != "" {
		e = appendList(e, pActor, actor)
	}
	if r.Op == record.OpTruncate {
		e = appendList(e, pTruncate, r.Source.Name, r.Source.Table)
	}
	if len(r.Cause) > 0 {
		if cause := r.CauseID(); cause != "" {
			e = appendList(e, pCause, cause)
		}
	}
	for _, p := range derivedLists(r.Derived) {
		e = binary.AppendUvarint(e, uint64(len(p)))
		e = append(e, p...)
	}
	return e, nil
}

// Apply prepares and indexes records; each must carry its seq.
func (ix *Index) Apply(recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	seqs := make([]uint64, len(recs))
	entries := make([][]byte, len(recs))
	for i, r := range recs {
		e, err := ix.Prepare(r)
		if err != nil {
			return err
		}
		seqs[i], entries[i] = r.Seq, e
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.readable(); err != nil {
		return err
	}
	return ix.checkDamage(ix.apply(seqs, entries))
}

// ApplyPrepared indexes entries from Prepare for the records with seqs
// first, first+1, … . Batches arrive in log order. A damaged index is
// rebuilt first (when a Rebuilder is set), so the log's follower, which
// stops taking appends on an error here, never sees the damage.
func (ix *Index) ApplyPrepared(first uint64, entries [][]byte) error {
	seqs := make([]uint64, len(entries))
	for i := range seqs {
		seqs[i] = first + uint64(i)
	}
	if ix.damaged.Load() && ix.rebuilder.Load() != nil {
		if err := ix.rebuildNow(); err != nil {
			return err
		}
	}
	ix.mu.RLock()
	err := ix.readable()
	if err == nil {
		err = ix.apply(seqs, entries)
	}
	ix.mu.RUnlock()
	if err != nil && isDamage(ix.checkDamage(err)) && ix.rebuilder.Load() != nil {
		// The batch was applied in part at most; the rebuilt index ends
		// before it, and applying it again sets the same keys.
		if err := ix.rebuildNow(); err != nil {
			return err
		}
		ix.mu.RLock()
		err = ix.apply(seqs, entries)
		ix.mu.RUnlock()
	}
	return err
}

// apply splits large batches across two goroutines, each committing its
// own Pebble batch, so memtable inserts use both cores; the watermark moves
// in a last, separate commit. A crash in between leaves the old watermark,
// and replaying sets the same keys again.
func (ix *Index) apply(seqs []uint64, entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	if done := ix.applied.Load(); seqs[0] < done {
		// A replay from the id watermark (idruns.go).
		n, _ := slices.BinarySearch(seqs, done)
		if err := ix.applyIDs(seqs[:n], entries[:n]); err != nil {
			return err
		}
		return ix.apply(seqs[n:], entries[n:])
	}
	// An erasure receipt purges the entries of the records before it, not
	// of those after it (sealed under the subject's new key): a batch is
	// applied in parts that each end at a receipt.
	for i, e := range entries[:len(entries)-1] {
		if isPurge(e) {
			if err := ix.apply(seqs[:i+1], entries[:i+1]); err != nil {
				return err
			}
			return ix.apply(seqs[i+1:], entries[i+1:])
		}
	}
	if err := ix.addIDs(seqs, entries); err != nil {
		return err
	}
	parts := 1
	if len(entries) >= 512 {
		parts = 2
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		lo, hi := p*len(entries)/parts, (p+1)*len(entries)/parts
		wg.Go(func() { errs[p] = ix.applyPart(seqs[lo:hi], entries[lo:hi]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Subject counts and list chunks move with the watermark, in one
	// atomic batch: were they merged with the postings, a crash before the
	// watermark would count the replayed records again, or add their
	// postings to a chunk twice.
	b := ix.db.NewBatch()
	defer b.Close()
	var counts subjectCounts
	var chunks chunkBatch
	var purged [][2][]byte
	var spans timeSpans
	for i, e := range entries {
		spans.add(seqs[i], e[:postingValueSize])
		if err := forEachList(e, func(prefix []byte) error {
			switch {
			case chunked(prefix[0]):
				chunks.add(prefix, seqs[i], e[:postingValueSize])
			case prefix[0] == pSubjectCount:
				counts.add(prefix)
			case prefix[0] == pPurge:
				subject, _, ok := cutUvarintBytes(prefix[1:])
				if !ok {
					return errBadEntry
				}
				// The counts of the records before the receipt go in
				// before its reset below.
				if err := counts.merge(b); err != nil {
					return err
				}
				counts = subjectCounts{}
				ranges, err := ix.purgeSubject(b, string(subject))
				purged = append(purged, ranges...)
				if err != nil {
					return err
				}
				// The receipt counted the subject's records so far; the
				// next erasure of the same subject (records sealed under
				// a new key) counts from here. A receipt ends its part of
				// the batch (see above), so a replay ends at the same
				// count.
				return b.Delete(subjectPart([]byte{pSubjectCount}, string(subject)), nil)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := counts.merge(b); err != nil {
		return err
	}
	if err := chunks.merge(b); err != nil {
		return err
	}
	if err := spans.merge(b); err != nil {
		return err
	}
	var seqBuf [8]byte
	binary.BigEndian.PutUint64(seqBuf[:], seqs[len(seqs)-1]+1)
	if err := b.Set([]byte{pWatermark}, seqBuf[:], nil); err != nil {
		return fmt.Errorf("write index watermark: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write index watermark: %w", err)
	}
	ix.applied.Store(seqs[len(seqs)-1] + 1)
	ix.compactAway(purged)
	return ix.ingestIfFull()
}

// addIDs holds the entries' ids for the next run, after adding them to the
// filter, which must hold every id before Pebble does.
func (ix *Index) addIDs(seqs []uint64, entries [][]byte) error {
	ids := make([][]byte, len(entries))
	for i, e := range entries {
		if len(e) < postingValueSize {
			return errBadEntry
		}
		id, _, ok := cutUvarintBytes(e[postingValueSize:])
		if !ok {
			return errBadEntry
		}
		ids[i] = id
	}
	ix.ids.add(ids, ix.pend.each)
	ix.pend.add(seqs, ids)
	return nil
}

// applyIDs takes only the ids of records whose postings are stored.
func (ix *Index) applyIDs(seqs []uint64, entries [][]byte) error {
	if err := ix.addIDs(seqs, entries); err != nil {
		return err
	}
	return ix.ingestIfFull()
}

// isPurge reports whether a prepared entry is an erasure receipt's.
func isPurge(e []byte) bool {
	purge := false
	_ = forEachList(e, func(prefix []byte) error {
		purge = purge || prefix[0] == pPurge
		return nil
	})
	return purge
}

// forEachList calls fn with each list prefix of a prepared entry.
func forEachList(e []byte, fn func(prefix []byte) error) error {
	if len(e) < postingValueSize {
		return errBadEntry
	}
	_, rest, ok := cutUvarintBytes(e[postingValueSize:])
	if !ok {
		return errBadEntry
	}
	for len(rest) > 0 {
		var prefix []byte
		if prefix, rest, ok = cutUvarintBytes(rest); !ok || len(prefix) == 0 {
			return errBadEntry
		}
		if err := fn(prefix); err != nil {
			return err
		}
	}
	return nil
}

var errBadEntry = errors.New("malformed prepared index entry")

func (ix *Index) applyPart(seqs []uint64, entries [][]byte) error {
	// The keys are set in sorted order: Pebble inserts a batch into its
	// memtable key by key, starting each search from where the previous key
	// went, so keys in order cost a short step each instead of a search from
	// the top of the skiplist (most of the index's CPU on a capture load).
	var kv sortedKeys
	var seqBuf [8]byte
	for i, e := range entries {
		if len(e) < postingValueSize {
			return errBadEntry
		}
		occ, rest := e[:postingValueSize], e[postingValueSize:]
		binary.BigEndian.PutUint64(seqBuf[:], seqs[i])
		_, rest, ok := cutUvarintBytes(rest) // ids go in runs (idruns.go)
		if !ok {
			return errBadEntry
		}
		for len(rest) > 0 {
			var prefix []byte
			if prefix, rest, ok = cutUvarintBytes(rest); !ok || len(prefix) == 0 {
				return errBadEntry
			}
			switch {
			case prefix[0] == pSubjectCount || prefix[0] == pPurge || chunked(prefix[0]):
				continue // applied with the watermark, in apply
			case prefix[0] == pSubjectTerms:
				kv.add(nil, prefix, 0, nil)
				continue
			}
			kv.add(occ, prefix, 0, seqBuf[:])
		}
	}
	b := ix.db.NewBatch()
	defer b.Close()
	if err := kv.setAll(b); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return nil
}

// sortedKeys gathers a batch's keys and values in one buffer, to set them
// in key order.
type sortedKeys struct {
	buf []byte
	kvs []kvSpan
}

type kvSpan struct{ k, v [2]int32 }

// add appends the key head ‖ tail (head a prefix, or the byte lead when
// head is nil and lead is not 0) with value val.
func (s *sortedKeys) add(val, head []byte, lead byte, tail []byte) {
	k0 := len(s.buf)
	if head == nil && lead != 0 {
		s.buf = append(s.buf, lead)
	}
	s.buf = append(append(s.buf, head...), tail...)
	k1 := len(s.buf)
	s.buf = append(s.buf, val...)
	s.kvs = append(s.kvs, kvSpan{k: [2]int32{int32(k0), int32(k1)}, v: [2]int32{int32(k1), int32(len(s.buf))}})
}

func (s *sortedKeys) setAll(b *pebble.Batch) error {
	key := func(e kvSpan) []byte { return s.buf[e.k[0]:e.k[1]] }
	// Stable: of two sets of one key the later must still win.
	slices.SortStableFunc(s.kvs, func(a, c kvSpan) int { return bytes.Compare(key(a), key(c)) })
	for _, e := range s.kvs {
		var v []byte
		if e.v[1] > e.v[0] {
			v = s.buf[e.v[0]:e.v[1]]
		}
		if err := b.Set(key(e), v, nil); err != nil {
			return err
		}
	}
	return nil
}

// appendList appends list(p, parts...)'s prefix to a prepared entry,
// length first, without building the List: Prepare runs for every record.
func appendList(e []byte, p byte, parts ...string) []byte {
	n := 1
	for _, s := range parts {
		n += uvarintLen(len(s)) + len(s)
	}
	return appendListPrefix(binary.AppendUvarint(e, uint64(n)), p, parts...)
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

func cutUvarintBytes(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
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
