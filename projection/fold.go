package projection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/stele/stele/record"
)

// view is what a fold step reads and writes: the projection's values as
// of the records folded so far in this batch.
type view interface {
	get(key string) ([]byte, error)
	put(key string, val []byte) error // nil val removes the key
	scan(fn func(key string, val []byte) error) error
}

// lazyRecord builds the `record` variable once per record, shared by every
// projection, and only if some projection evaluates an expression on it.
type lazyRecord struct {
	r    *record.Record
	val  map[string]any
	have fieldMask
}

// get returns the record variable with at least the members in need.
func (l *lazyRecord) get(need fieldMask) (map[string]any, error) {
	if l.val == nil {
		l.val = recordValue(l.r)
	}
	if missing := need &^ l.have; missing != 0 {
		if err := addFields(l.val, l.r, missing); err != nil {
			return nil, err
		}
		l.have |= missing
	}
	return l.val, nil
}

// evalError is an expression that failed on one record: the record is
// skipped for that projection (the same way live and on rebuild).
type evalError struct {
	field string
	err   error
}

func (e *evalError) Error() string { return e.field + ": " + e.err.Error() }

// step folds one record into v. It returns an *evalError when the record
// is skipped because an expression failed on it.
func (c *compiled) step(v view, lr *lazyRecord) error {
	r := lr.r
	rv, err := lr.get(c.need)
	if err != nil {
		return &evalError{"record", err}
	}
	act := map[string]any{"record": rv, "state": nil}
	if c.filter != nil {
		out, _, err := c.filter.Eval(act)
		if err != nil {
			return &evalError{"filter", err}
		}
		b, ok := out.(types.Bool)
		if !ok {
			return &evalError{"filter", fmt.Errorf("returned %s, want bool", out.Type().TypeName())}
		}
		if !b {
			return nil
		}
	}
	if c.def.Fold == FoldState && r.Op == record.OpTruncate {
		// A truncate removes every unit of its table, whatever their keys.
		return truncate(v, r.Source.Name, r.Source.Table)
	}
	out, _, err := c.key.Eval(act)
	if err != nil {
		return &evalError{"key", err}
	}
	ks, ok := out.(types.String)
	if !ok {
		return &evalError{"key", fmt.Errorf("returned %s, want string", out.Type().TypeName())}
	}
	key := string(ks)
	prev, err := v.get(key)
	if err != nil {
		return err
	}
	var next []byte
	switch c.def.Fold {
	case FoldCount:
		next, err = foldCount(prev)
	case FoldState:
		next, err = foldState(prev, r)
	case FoldLastChangePerField:
		next, err = foldLastChange(prev, r)
	case FoldReduce:
		next, err = c.foldReduce(prev, rv)
	}
	if err != nil {
		return err
	}
	return v.put(key, next)
}

func foldCount(prev []byte) ([]byte, error) {
	var n uint64
	if prev != nil {
		var err error
		if n, err = strconv.ParseUint(string(prev), 10, 64); err != nil {
			return nil, fmt.Errorf("stored count %q: %w", prev, err)
		}
	}
	return strconv.AppendUint(nil, n+1, 10), nil
}

// stateValue is a state fold's value per key.
type stateValue struct {
	Source     string                     `json:"source"`
	Table      string                     `json:"table"`
	Seq        uint64                     `json:"seq"`
	OccurredAt time.Time                  `json:"occurred_at"`
	State      map[string]json.RawMessage `json:"state"`
}

// foldState applies query.StateAt's semantics to one key.
func foldState(prev []byte, r *record.Record) ([]byte, error) {
	var img map[string]json.RawMessage
	switch r.Op {
	case record.OpDelete:
		return nil, nil
	case record.OpInsert, record.OpSnapshot:
		var err error
		if img, err = image(r.After); err != nil {
			return nil, err
		}
	case record.OpUpdate:
		after, err := image(r.After)
		if err != nil {
			return nil, err
		}
		img = after
		if prev != nil {
			var sv stateValue
			if err := json.Unmarshal(prev, &sv); err != nil {
				return nil, fmt.Errorf("stored state: %w", err)
			}
			img = maps.Clone(sv.State)
			if img == nil {
				img = map[string]json.RawMessage{}
			}
			maps.Copy(img, after)
		}
	default:
		// ddl and event records leave the state as it is.
		return prev, nil
	}
	// encoding/json sorts map keys, so the value is canonical.
	return marshal(stateValue{Source: r.Source.Name, Table: r.Source.Table, Seq: r.Seq, OccurredAt: r.OccurredAt.UTC(), State: img})
}

func image(raw json.RawMessage) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("after image: %w", err)
	}
	return m, nil
}

func truncate(v view, source, table string) error {
	var gone []string
	err := v.scan(func(key string, val []byte) error {
		var sv struct{ Source, Table string }
		if err := json.Unmarshal(val, &sv); err != nil {
			return fmt.Errorf("stored state: %w", err)
		}
		if sv.Source == source && sv.Table == table {
			gone = append(gone, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range gone {
		if err := v.put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// fieldChange is the last change of one field.
type fieldChange struct {
	Seq        uint64          `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	Op         record.Op       `json:"op"`
	Actor      json.RawMessage `json:"actor,omitempty"`
}

// foldLastChange notes r against each field it changed: the fields listed
// in changed, or, when the record lists none, the fields of its after
// image (an insert or snapshot sets them all).
func foldLastChange(prev []byte, r *record.Record) ([]byte, error) {
	fields := r.Changed
	if len(fields) == 0 {
		img, err := image(r.After)
		if err != nil {
			return nil, err
		}
		for f := range img {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return prev, nil
	}
	m := map[string]fieldChange{}
	if prev != nil {
		if err := json.Unmarshal(prev, &m); err != nil {
			return nil, fmt.Errorf("stored changes: %w", err)
		}
	}
	fc := fieldChange{Seq: r.Seq, OccurredAt: r.OccurredAt.UTC(), Op: r.Op, Actor: r.Actor}
	for _, f := range fields {
		m[f] = fc
	}
	return marshal(m)
}

// foldReduce evaluates the value expression. The previous state is always
// decoded from its stored JSON, so results do not depend on batching.
func (c *compiled) foldReduce(prev []byte, rv map[string]any) ([]byte, error) {
	if prev == nil {
		prev = c.initial
	}
	state, err := decodeJSON(prev)
	if err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	out, _, err := c.value.Eval(map[string]any{"record": rv, "state": state})
	if err != nil {
		return nil, &evalError{"value", err}
	}
	if _, null := out.(types.Null); null {
		return nil, nil
	}
	b, err := appendValueJSON(nil, out)
	if err != nil {
		return nil, &evalError{"value", err}
	}
	return b, nil
}

// marshal is json.Marshal without HTML escaping, so values keep the
// record's own text.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
