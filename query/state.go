package query

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

// StateAt folds the changes to one unit up to at (by occurred_at, in log
// order): insert and snapshot set the image, update merges the after image
// over it field by field (so partial images work), delete and a truncate of
// the table remove it; ddl and event records leave it unchanged.
func (e *Engine) StateAt(ctx context.Context, source, table, key string, at time.Time) (*State, error) {
	size, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	collect := func(p index.Posting) bool {
		if p.Seq < size && !p.OccurredAt.After(at) {
			seqs = append(seqs, p.Seq)
		}
		return true
	}
	if err := e.ix.Scan(index.EntityList(source, table, key), false, 0, collect); err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, fmt.Errorf("%w: %s/%s/%s has no changes at or before %s", ErrNotFound, source, table, key, at.Format(time.RFC3339Nano))
	}
	if err := e.ix.Scan(index.TruncateList(source, table), false, 0, collect); err != nil {
		return nil, err
	}
	slices.Sort(seqs)
	var state map[string]json.RawMessage
	var lastSeq uint64
	var lastAt time.Time
	for i, seq := range seqs {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r, err := e.log.Read(seq)
		if err != nil {
			return nil, err
		}
		if err := ApplyReadHook(ctx, r); err != nil {
			return nil, err
		}
		next, err := fold(state, r)
		if err != nil {
			return nil, fmt.Errorf("fold seq %d: %w", seq, err)
		}
		state, lastSeq, lastAt = next, r.Seq, r.OccurredAt
	}
	if state == nil {
		return nil, fmt.Errorf("%w: %s/%s/%s did not exist at %s", ErrNotFound, source, table, key, at.Format(time.RFC3339Nano))
	}
	img, err := json.Marshal(state)
	if err != nil {
		return nil, err
	}
	img, err = record.Canonical(img)
	if err != nil {
		return nil, err
	}
	return &State{Source: source, Table: table, Key: key, At: at, State: img, Seq: lastSeq, OccurredAt: lastAt}, nil
}

func fold(state map[string]json.RawMessage, r *record.Record) (map[string]json.RawMessage, error) {
	switch r.Op {
	case record.OpDelete, record.OpTruncate:
		return nil, nil
	case record.OpInsert, record.OpSnapshot:
		return image(r.After)
	case record.OpUpdate:
		after, err := image(r.After)
		if err != nil || state == nil {
			return after, err
		}
		merged := maps.Clone(state)
		maps.Copy(merged, after)
		return merged, nil
	}
	return state, nil
}

func image(raw json.RawMessage) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}
