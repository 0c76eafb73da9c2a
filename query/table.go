package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

// Unit is one unit (row, entity) of a table as it was at an instant.
type Unit struct {
	// Key is the canonical key string (record.KeyString), as in entity URLs.
	Key string
	// State is the canonical JSON image of the unit.
	State json.RawMessage
	// Seq is the last record folded into State; OccurredAt is its time.
	Seq        uint64
	OccurredAt time.Time
}

// UnitPage is one page of a table's state. NextCursor is empty at the end.
type UnitPage struct {
	Units      []Unit
	NextCursor string
}

// TableStateAt calls fn with every unit of source/table that existed at at,
// with the same fold as StateAt. Units come in the index's key order
// (shorter key strings first, then bytewise). It stops at fn's first error
// and returns it.
//
// Memory stays proportional to the longest history of one unit, not to the
// table: the walk goes entity by entity through the index's entity lists,
// and for each unit reads back from its newest change only to the last
// change that set the whole image (insert, snapshot, delete), so a unit
// with a long history costs the reads of its recent updates alone. Units
// are folded in batches on up to four goroutines (reading and decoding
// records dominates), so in flight at once are a few thousand units.
//
// A read hook in ctx sees the records of each unit just before fn gets
// the unit, on fn's goroutine, and the unit is folded from what the hook
// left: units read ahead but never handed to fn are never shown to it.
func (e *Engine) TableStateAt(ctx context.Context, source, table string, at time.Time, fn func(Unit) error) error {
	return e.tableState(ctx, source, table, at, nil, unitBatchSize, func(_ string, unit func() (Unit, error)) error {
		u, err := unit()
		if err != nil {
			return err
		}
		return fn(u)
	})
}

// TableStatePage returns up to limit units (default DefaultLimit, at most
// MaxLimit) of source/table at at, continuing after cursor.
func (e *Engine) TableStatePage(ctx context.Context, source, table string, at time.Time, limit int, cursor string) (*UnitPage, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		return nil, &FieldError{Field: "limit", Reason: fmt.Sprintf("must be at most %d", MaxLimit)}
	}
	var after *string
	if cursor != "" {
		k, err := decodeUnitCursor(cursor)
		if err != nil {
			return nil, err
		}
		after = &k
	}
	page := &UnitPage{}
	errFull := errors.New("page full")
	// Small batches keep the units folded past the end of the page few.
	batch := min(unitBatchSize, max(8, limit/maxFoldWorkers))
	err := e.tableState(ctx, source, table, at, after, batch, func(_ string, unit func() (Unit, error)) error {
		if len(page.Units) == limit {
			// The unit past the page only proves there is more: it is not
			// folded, so a read hook never sees it.
			page.NextCursor = encodeUnitCursor(page.Units[limit-1].Key)
			return errFull
		}
		u, err := unit()
		if err != nil {
			return err
		}
		page.Units = append(page.Units, u)
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, err
	}
	return page, nil
}

// A unit cursor names the last key served; keys are not secret from the
// caller who received them, and base64 keeps them opaque in URLs.
func encodeUnitCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("u1:" + key))
}

func decodeUnitCursor(c string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	key, ok := strings.CutPrefix(string(raw), "u1:")
	if !ok {
		return "", fmt.Errorf("%w: not a table-state cursor", ErrBadCursor)
	}
	return key, nil
}

// emitFunc receives each unit that existed at the instant asked, in key
// order; unit folds it. With a read hook in the context, unit passes the
// unit's records through the hook first, so an emitFunc that stops before
// calling it keeps the unit from the hook.
type emitFunc func(key string, unit func() (Unit, error)) error

func (e *Engine) tableState(ctx context.Context, source, table string, at time.Time, after *string, batch int, fn emitFunc) error {
	if source == "" {
		return &FieldError{Field: "source", Reason: "is required"}
	}
	if table == "" {
		return &FieldError{Field: "table", Reason: "is required"}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	size, err := e.snapshot(ctx)
	if err != nil {
		return err
	}
	// A truncate empties the table, so only changes after the last
	// truncate at or before at count; seqs start at 0, so "none" is
	// recorded separately.
	var lastTrunc uint64
	truncated := false
	err = e.ix.Scan(index.TruncateList(source, table), false, 0, func(p index.Posting) bool {
		if p.Seq >= size {
			return false
		}
		if !p.OccurredAt.After(at) {
			lastTrunc, truncated = p.Seq, true
		}
		return true
	})
	if err != nil {
		return err
	}

	return e.foldTable(ctx, source, table, after, batch, func(p index.Posting) bool {
		return p.Seq < size && p.OccurredAt.Compare(at) <= 0 && (!truncated || p.Seq > lastTrunc)
	}, fn)
}

// unitGroup is one unit's postings in effect at the instant asked.
type unitGroup struct {
	key  string
	seqs []uint64
}

// unitBatch is a run of consecutive units, folded by one worker. With a
// read hook the worker only reads: recs holds each existing unit's records
// (newest first) for the consumer to pass through the hook and fold.
type unitBatch struct {
	groups []unitGroup
	units  []Unit
	recs   [][]*record.Record
	err    error
	done   chan struct{}
}

const (
	unitBatchSize  = 256
	firstUnitBatch = 8
	maxFoldWorkers = 4
)

// foldTable walks the table's entity lists on one goroutine and folds
// batches of units on up to maxFoldWorkers others, since reading and
// decoding records dominates; fn still sees units one at a time in key
// order. In flight at once: at most 2×workers+1 batches.
func (e *Engine) foldTable(ctx context.Context, source, table string, after *string, batch int, keep func(index.Posting) bool, fn emitFunc) error {
	hook := readHook(ctx)
	parent := ctx
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	workers := min(runtime.GOMAXPROCS(0), maxFoldWorkers)
	work := make(chan *unitBatch, workers)
	ordered := make(chan *unitBatch, workers+1)
	var wg sync.WaitGroup
	var scanErr error
	wg.Go(func() {
		defer close(work)
		defer close(ordered)
		b := &unitBatch{done: make(chan struct{})}
		// The first batches are small and each doubles, so the first
		// units reach fn after a few have been folded, not after
		// 2×workers+1 full batches.
		size := min(batch, firstUnitBatch)
		var cur []byte
		var seqs []uint64
		send := func() bool {
			select {
			case ordered <- b:
			case <-ctx.Done():
				return false
			}
			select {
			case work <- b:
			case <-ctx.Done():
				close(b.done) // the consumer may wait on it
				return false
			}
			b = &unitBatch{done: make(chan struct{})}
			size = min(2*size, batch)
			return true
		}
		flush := func() bool {
			if len(seqs) > 0 {
				b.groups = append(b.groups, unitGroup{key: string(cur), seqs: seqs})
				seqs = nil
			}
			return len(b.groups) < size || send()
		}
		examined := 0
		err := e.ix.ScanEntities(source, table, after, func(key []byte, p index.Posting) bool {
			if examined++; examined%4096 == 0 && ctx.Err() != nil {
				return false
			}
			if string(key) != string(cur) {
				if !flush() {
					return false
				}
				cur = append(cur[:0], key...)
			}
			if keep(p) {
				seqs = append(seqs, p.Seq)
			}
			return true
		})
		if err != nil {
			scanErr = err
			return
		}
		if ctx.Err() == nil && flush() && len(b.groups) > 0 {
			send()
		}
	})
	for range workers {
		wg.Go(func() {
			for b := range work {
				for _, g := range b.groups {
					if ctx.Err() != nil {
						b.err = ctx.Err()
						break
					}
					recs, err := e.readUnit(g.seqs, hook == nil)
					if err != nil {
						b.err = err
						break
					}
					if hook != nil {
						if exists(recs) {
							b.units = append(b.units, Unit{Key: g.key})
							b.recs = append(b.recs, recs)
						}
						continue
					}
					u, ok, err := foldUnit(recs)
					if err != nil {
						b.err = err
						break
					}
					if ok {
						u.Key = g.key
						b.units = append(b.units, u)
					}
				}
				close(b.done)
			}
		})
	}
	var err error
	for b := range ordered {
		<-b.done
		if err = b.err; err == nil {
			for i, u := range b.units {
				unit := func() (Unit, error) { return u, nil }
				if hook != nil {
					unit = func() (Unit, error) { return revealUnit(parent, hook, u.Key, b.recs[i]) }
				}
				if err = fn(u.Key, unit); err != nil {
					break
				}
			}
		}
		if err != nil {
			break
		}
	}
	cancel()
	for range ordered {
		// Unblock the walker; what it sent is abandoned.
	}
	wg.Wait()
	if err == nil {
		err = scanErr
	}
	if err == nil {
		// A walk cut short by the caller's context is not a full table.
		err = parent.Err()
	}
	return err
}

// readUnit reads the records at seqs (ascending, all in effect at the
// instant asked) newest first, down to the last record that sets or clears
// the whole image: nothing before it can show through.
//
// With foldOnly the records hold only what foldUnit reads (op, after,
// occurred_at, seq) when the log hands out stored bytes: decoding the whole
// record was most of a table walk's CPU, and a unit whose history is all
// partial-capable updates (no insert or snapshot since) is read back to its
// first record.
func (e *Engine) readUnit(seqs []uint64, foldOnly bool) ([]*record.Record, error) {
	recs := make([]*record.Record, 0, 4)
	raw, _ := e.log.(rawLog)
	for i := len(seqs) - 1; i >= 0; i-- {
		var r *record.Record
		var err error
		if foldOnly && raw != nil {
			r, err = readForFold(raw, seqs[i])
		} else {
			r, err = e.log.Read(seqs[i])
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
		if resets(r.Op) {
			break
		}
	}
	return recs, nil
}

// rawLog is a Log that also returns a record's stored bytes
// (logstore.Store does).
type rawLog interface {
	ReadRaw(seq uint64) ([]byte, error)
}

// revealUnit passes a unit's records (newest first) through hook, oldest
// first, and folds what it left.
func revealUnit(ctx context.Context, hook ReadHook, key string, recs []*record.Record) (Unit, error) {
	for i := len(recs) - 1; i >= 0; i-- {
		if err := hook(ctx, recs[i]); err != nil {
			return Unit{}, err
		}
	}
	u, _, err := foldUnit(recs)
	u.Key = key
	return u, err
}

// exists reports whether folding recs (newest first) leaves a unit, as
// foldUnit decides, without building its image.
func exists(recs []*record.Record) bool {
	for _, r := range recs {
		switch r.Op {
		case record.OpInsert, record.OpSnapshot, record.OpUpdate:
			return true
		case record.OpDelete, record.OpTruncate:
			return false
		}
	}
	return false
}

// foldUnit folds a unit's records (newest first, as readUnit returns them)
// into its state; ok is false when the unit did not exist then.
func foldUnit(recs []*record.Record) (Unit, bool, error) {
	last := recs[0]
	base := recs[len(recs)-1]
	if len(recs) == 1 || allUnchanged(recs[:len(recs)-1]) {
		// The common case needs no re-encoding: a stored image is already
		// canonical.
		switch base.Op {
		case record.OpInsert, record.OpSnapshot:
			img := base.After
			if len(img) == 0 {
				img = json.RawMessage("{}")
			}
			return Unit{State: img, Seq: last.Seq, OccurredAt: last.OccurredAt}, true, nil
		case record.OpDelete, record.OpTruncate:
			return Unit{}, false, nil
		}
	}
	// Folded newest first, as fold would oldest first: a member takes its
	// value from the newest image naming it, so each older image only adds
	// the members not yet seen, and no state is copied per record.
	var state map[string]json.RawMessage
	for _, r := range recs {
		switch r.Op {
		case record.OpDelete, record.OpTruncate:
			// What the newer records built is the state; nothing older.
		case record.OpInsert, record.OpSnapshot, record.OpUpdate:
			img, err := image(r.After)
			if err != nil {
				return Unit{}, false, fmt.Errorf("fold seq %d: %w", r.Seq, err)
			}
			if state == nil {
				state = img
			} else {
				for k, v := range img {
					if _, ok := state[k]; !ok {
						state[k] = v
					}
				}
			}
			if r.Op == record.OpUpdate {
				continue
			}
		default: // ddl, event: no change
			continue
		}
		break
	}
	if state == nil {
		return Unit{}, false, nil
	}
	img, err := json.Marshal(state)
	if err != nil {
		return Unit{}, false, err
	}
	if img, err = record.Canonical(img); err != nil {
		return Unit{}, false, err
	}
	return Unit{State: img, Seq: last.Seq, OccurredAt: last.OccurredAt}, true, nil
}

// resets reports whether op replaces or removes the whole image.
func resets(op record.Op) bool {
	switch op {
	case record.OpInsert, record.OpSnapshot, record.OpDelete, record.OpTruncate:
		return true
	}
	return false
}

// allUnchanged reports whether none of recs changes the image (ddl, event).
func allUnchanged(recs []*record.Record) bool {
	for _, r := range recs {
		if r.Op == record.OpUpdate {
			return false
		}
	}
	return true
}
