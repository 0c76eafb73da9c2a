package index

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stele/stele/record"
)

// Damage. The index is derived data, so damage is never fatal: a corrupt
// block (Pebble's checksums), a malformed key or value, or a merge operand
// of the wrong size marks the index damaged. Reads then answer
// ErrRebuilding (the API's 503 with Retry-After), and, once a Rebuilder is
// set, the damaged directory is set aside and a fresh index is filled from
// the log up to the last watermark applied; appends wait for that (their
// duplicate check needs a sound index) rather than fail.
var (
	// ErrCorrupt marks every error caused by a damaged index.
	ErrCorrupt = errors.New("the index is damaged")
	// ErrRebuilding is the answer to reads while a damaged index is set
	// aside and rebuilt from the log; retrying shortly succeeds.
	ErrRebuilding = errors.New("the index is being rebuilt from the log")
)

// damageError keeps the cause for errors.Is and errors.As but prints only
// what is safe to show: Pebble's corruption text names key bounds, and
// index keys hold entity keys and actor ids.
type damageError struct {
	what  string
	cause error
}

func (e *damageError) Error() string {
	return e.what + ": " + ErrCorrupt.Error() + " (derived data: it is rebuilt from the log)"
}
func (e *damageError) Unwrap() []error { return []error{ErrCorrupt, e.cause} }

// isDamage reports whether err comes from a damaged index.
func isDamage(err error) bool {
	return err != nil && (errors.Is(err, ErrCorrupt) || pebble.IsCorruptionError(err))
}

// Rebuilder replays the first n records of the log to apply, in order and
// in batches, with their Derived personal-data entries set, the way the
// log's catch-up does at open.
type Rebuilder func(ctx context.Context, n uint64, apply func([]*record.Record) error) error

// RebuildFrom lets the index rebuild itself from the log when it finds
// damage, from now on and for damage already seen. Without it, damage
// makes reads fail with ErrCorrupt until `stele reindex`.
func (ix *Index) RebuildFrom(r Rebuilder) {
	if ix.rebuilder.Swap(&r) != nil {
		return
	}
	ix.loop.Go(func() {
		for {
			if ix.damaged.Load() {
				if err := ix.rebuildNow(); err != nil && ix.bgCtx.Err() == nil {
					ix.logger.Error("rebuilding the damaged index failed; reads stay refused until a restart or `stele reindex`", "err", err, "component", "index")
				}
			}
			select {
			case <-ix.damage:
			case <-ix.bgCtx.Done():
				return
			}
		}
	})
}

// noteDamage marks the index damaged and wakes the rebuild loop. It never
// blocks: Pebble calls it from inside reads that hold mu.
func (ix *Index) noteDamage(what string) {
	if ix.damaged.CompareAndSwap(false, true) {
		ix.logger.Error("the index is damaged; setting it aside and rebuilding it from the log", "cause", what, "dir", ix.dir, "component", "index")
	}
	select {
	case ix.damage <- struct{}{}:
	default:
	}
}

// checkDamage notes damage behind err and returns err as the caller
// should see it: ErrRebuilding (and ErrCorrupt) when damaged.
func (ix *Index) checkDamage(err error) error {
	if !isDamage(err) {
		return err
	}
	ix.noteDamage("a read found corruption")
	return ix.unavailable(err)
}

// unavailable is the error of a read refused because the index is damaged.
func (ix *Index) unavailable(cause error) error {
	if cause == nil {
		cause = ErrCorrupt
	}
	if ix.rebuilder.Load() == nil {
		return &damageError{what: "read index; run `stele reindex`", cause: cause}
	}
	return fmt.Errorf("%w: %w", ErrRebuilding, &damageError{what: "read index", cause: cause})
}

// readable is nil when reads may use the database.
func (ix *Index) readable() error {
	if ix.damaged.Load() {
		return ix.unavailable(nil)
	}
	return nil
}

// rebuildNow sets a damaged database aside and fills a fresh one from the
// log. It holds mu for writing throughout, so no read or apply sees a half
// rebuilt index; a call that finds the index sound returns at once.
func (ix *Index) rebuildNow() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.damaged.Load() {
		return nil
	}
	r := ix.rebuilder.Load()
	if r == nil {
		return ErrCorrupt
	}
	start := time.Now()
	n := ix.applied.Load()
	ix.bg.Wait()
	ix.closeDB()
	aside, err := SetAside(ix.dir)
	if err != nil {
		return err
	}
	db, err := ix.openDB()
	if err != nil {
		return fmt.Errorf("open a fresh index: %w", err)
	}
	ix.db = db
	idw, err := ix.idWatermark(ix.bgCtx, 0)
	if err != nil {
		return fmt.Errorf("open a fresh index: %w", err)
	}
	ix.pend = newPendingIDs(idw)
	ix.ids = newIDFilter(db, max(2*uint(n), 1<<20), ix.logger)
	ix.applied.Store(0)
	if err := (*r)(ix.bgCtx, n, func(recs []*record.Record) error {
		seqs := make([]uint64, len(recs))
		entries := make([][]byte, len(recs))
		for i, r := range recs {
			e, err := ix.Prepare(r)
			if err != nil {
				return fmt.Errorf("index seq %d: %w", r.Seq, err)
			}
			seqs[i], entries[i] = r.Seq, e
		}
		return ix.apply(seqs, entries)
	}); err != nil {
		return fmt.Errorf("rebuild the index from the log: %w", err)
	}
	if got := ix.applied.Load(); got != n {
		return fmt.Errorf("rebuild the index from the log: replayed %d of %d records", got, n)
	}
	ix.damaged.Store(false)
	ix.logger.Warn("index rebuilt from the log", "records", n, "damaged_copy", aside,
		"elapsed", time.Since(start).Round(time.Millisecond), "component", "index")
	return nil
}

// closeDB closes the database and its id filter, once; mu is held.
func (ix *Index) closeDB() {
	if ix.ids != nil {
		ix.ids.close()
		ix.ids = nil
	}
	if ix.db != nil {
		_ = ix.db.Close() // damaged: its error says nothing new
		ix.db = nil
	}
}

// SetAside renames a damaged or unusable index directory next to itself,
// keeping it for inspection, and returns the new name.
func SetAside(dir string) (string, error) {
	aside := dir + ".corrupt-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Rename(dir, aside); err != nil {
		return "", fmt.Errorf("set the damaged index %s aside: %w", dir, err)
	}
	return aside, nil
}
