package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
// with a long history costs the reads of its recent updates alone.
func (e *Engine) TableStateAt(ctx context.Context, source, table string, at time.Time, fn func(Unit) error) error {
	return e.tableState(ctx, source, table, at, nil, fn)
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
	err := e.tableState(ctx, source, table, at, after, func(u Unit) error {
		if len(page.Units) == limit {
			page.NextCursor = encodeUnitCursor(page.Units[limit-1].Key)
			return errFull
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

func (e *Engine) tableState(ctx context.Context, source, table string, at time.Time, after *string, fn func(Unit) error) error {
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

	var (
		cur      []byte
		seqs     []uint64
		stopErr  error
		examined int
	)
	flush := func() error {
		if len(seqs) == 0 {
			return nil
		}
		u, ok, err := e.foldUnit(seqs)
		seqs = seqs[:0]
		if err != nil || !ok {
			return err
		}
		u.Key = string(cur)
		return fn(u)
	}
	err = e.ix.ScanEntities(source, table, after, func(key []byte, p index.Posting) bool {
		if examined++; examined%4096 == 0 && ctx.Err() != nil {
			stopErr = ctx.Err()
			return false
		}
		if string(key) != string(cur) {
			if stopErr = flush(); stopErr != nil {
				return false
			}
			cur = append(cur[:0], key...)
		}
		if p.Seq < size && p.OccurredAt.Compare(at) <= 0 && (!truncated || p.Seq > lastTrunc) {
			seqs = append(seqs, p.Seq)
		}
		return true
	})
	if err != nil {
		return err
	}
	if stopErr != nil {
		return stopErr
	}
	return flush()
}

// foldUnit folds the records at seqs (ascending, all in effect at the
// instant asked) into the unit's state; ok is false when the unit did not
// exist then.
func (e *Engine) foldUnit(seqs []uint64) (Unit, bool, error) {
	// Read newest first down to the last record that sets or clears the
	// whole image: nothing before it can show through.
	recs := make([]*record.Record, 0, 4)
	for i := len(seqs) - 1; i >= 0; i-- {
		r, err := e.log.Read(seqs[i])
		if err != nil {
			return Unit{}, false, err
		}
		recs = append(recs, r)
		if resets(r.Op) {
			break
		}
	}
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
	var state map[string]json.RawMessage
	for i := len(recs) - 1; i >= 0; i-- {
		next, err := fold(state, recs[i])
		if err != nil {
			return Unit{}, false, fmt.Errorf("fold seq %d: %w", recs[i].Seq, err)
		}
		state = next
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
