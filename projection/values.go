package projection

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// fieldMask selects the record members that cost a JSON decode.
type fieldMask uint8

const (
	fKey fieldMask = 1 << iota
	fBefore
	fAfter
	fActor
	fCause
	allFields fieldMask = 1<<iota - 1
)

// fieldBit is the mask of a costly member, 0 for the cheap ones.
func fieldBit(name string) fieldMask {
	switch name {
	case "key":
		return fKey
	case "before":
		return fBefore
	case "after":
		return fAfter
	case "actor":
		return fActor
	case "cause":
		return fCause
	}
	return 0
}

// recordValue builds the `record` variable's cheap members: the API form
// of r with its times as timestamps. Optional members the record lacks
// are absent, so expressions test them with has(). addFields adds the
// JSON members.
func recordValue(r *record.Record) map[string]any {
	src := map[string]any{
		"name": r.Source.Name, "kind": r.Source.Kind, "database": r.Source.Database,
		"schema": r.Source.Schema, "table": r.Source.Table,
	}
	m := map[string]any{
		"seq": int64(r.Seq), "id": r.ID, "source": src, "op": string(r.Op),
		"occurred_at": r.OccurredAt, "recorded_at": r.RecordedAt,
	}
	changed := make([]any, len(r.Changed))
	for i, c := range r.Changed {
		changed[i] = c
	}
	m["changed"] = changed
	if r.Tx != nil {
		tx := map[string]any{}
		if r.Tx.ID != "" {
			tx["id"] = r.Tx.ID
		}
		if r.Tx.Position != "" {
			tx["position"] = r.Tx.Position
		}
		if r.Tx.Index != nil {
			tx["index"] = *r.Tx.Index
		}
		if r.Tx.CommitTime != nil {
			tx["commit_time"] = *r.Tx.CommitTime
		}
		m["tx"] = tx
	}
	if r.Schema != nil {
		m["schema"] = map[string]any{"subject": r.Schema.Subject, "version": r.Schema.Version}
	}
	return m
}

// addFields decodes the JSON members of r selected by want into m, with
// JSON numbers as int (no fraction or exponent, fits int64) or double.
func addFields(m map[string]any, r *record.Record, want fieldMask) error {
	for _, f := range []struct {
		bit  fieldMask
		name string
		raw  json.RawMessage
	}{{fKey, "key", r.Key}, {fBefore, "before", r.Before}, {fAfter, "after", r.After}, {fActor, "actor", r.Actor}, {fCause, "cause", r.Cause}} {
		if want&f.bit == 0 || len(f.raw) == 0 {
			continue
		}
		v, err := decodeJSON(f.raw)
		if err != nil {
			return fmt.Errorf("record seq %d: %s: %w", r.Seq, f.name, err)
		}
		m[f.name] = v
	}
	return nil
}

// decodeJSON decodes a JSON value into the Go values CEL adapts: objects
// as map[string]any, arrays as []any, numbers as int64 when integral and in
// range (else uint64, else float64).
func decodeJSON(raw []byte) (any, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't', 'f':
		return tok.Bool(), nil
	case '"':
		return tok.String(), nil
	case '0':
		return number(tok.String()), nil
	case '{':
		m := map[string]any{}
		for dec.PeekKind() != '}' {
			k, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			name := k.String() // the token is only valid until the next read
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			m[name] = v
		}
		_, err := dec.ReadToken()
		return m, err
	case '[':
		l := []any{}
		for dec.PeekKind() != ']' {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err := dec.ReadToken()
		return l, err
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func number(s string) any {
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n
		}
	}
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// errNotJSON: a CEL value with no JSON form (NaN, a map with non-string
// keys, an unknown type).
var errNotJSON = errors.New("value has no JSON form")

// appendValueJSON appends the canonical JSON of a CEL value: object members
// sorted by name, doubles always with a fraction or exponent (so they read
// back as doubles, and ints as ints), timestamps as RFC 3339 strings,
// durations as Go duration strings, bytes as base64.
func appendValueJSON(dst []byte, v ref.Val) ([]byte, error) {
	switch x := v.(type) {
	case types.Null:
		return append(dst, "null"...), nil
	case types.Bool:
		return strconv.AppendBool(dst, bool(x)), nil
	case types.Int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case types.Uint:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, fmt.Errorf("%w: double %v", errNotJSON, f)
		}
		start := len(dst)
		dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
		if !bytes.ContainsAny(dst[start:], ".e") {
			dst = append(dst, ".0"...)
		}
		return dst, nil
	case types.String:
		return jsontext.AppendQuote(dst, string(x))
	case types.Bytes:
		return jsontext.AppendQuote(dst, base64.StdEncoding.EncodeToString(x))
	case types.Timestamp:
		return jsontext.AppendQuote(dst, x.UTC().Format(time.RFC3339Nano))
	case types.Duration:
		return jsontext.AppendQuote(dst, x.Duration.String())
	case traits.Mapper:
		type member struct {
			name string
			val  ref.Val
		}
		var members []member
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return dst, fmt.Errorf("%w: map key of type %s", errNotJSON, k.Type().TypeName())
			}
			members = append(members, member{string(ks), x.Get(k)})
		}
		slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
		dst = append(dst, '{')
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = jsontext.AppendQuote(dst, m.name); err != nil {
				return dst, err
			}
			dst = append(dst, ':')
			if dst, err = appendValueJSON(dst, m.val); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case traits.Lister:
		dst = append(dst, '[')
		it := x.Iterator()
		for i := 0; it.HasNext() == types.True; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValueJSON(dst, it.Next()); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case *types.Err:
		return dst, x
	}
	return dst, fmt.Errorf("%w: type %s", errNotJSON, v.Type().TypeName())
}
