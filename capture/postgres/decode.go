package postgres

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stele/stele/record"
)

// Shared, never modified: images copy values.
var (
	jsonNull  = json.RawMessage("null")
	jsonTrue  = json.RawMessage("true")
	jsonFalse = json.RawMessage("false")
)

// columnJSON converts one column's text-format value to canonical JSON,
// typed by the column's type OID:
//
//	int2, int4, int8, oid        JSON number
//	numeric, float4, float8      JSON number with the server's digits kept
//	                             exactly; NaN and ±Infinity as strings
//	bool                         true / false
//	timestamptz                  RFC 3339 string in UTC
//	timestamp (no time zone)     RFC 3339 string, the wall time read as UTC
//	date                         "2006-01-02"
//	json, jsonb                  the JSON value itself (canonical)
//	bytea                        base64 string (standard encoding)
//	arrays                       JSON arrays of the element values
//	uuid, text and the rest      string (the server's text form)
//
// data belongs to the caller, and the result may alias it.
func columnJSON(m *pgtype.Map, oid uint32, data []byte) (json.RawMessage, error) {
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.UUIDOID:
		return quote(data), nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		if !isNumber(data) {
			return nil, fmt.Errorf("integer value %q is not a number", truncate(string(data), 64))
		}
		return data, nil
	case pgtype.NumericOID, pgtype.Float4OID, pgtype.Float8OID:
		if !isNumber(data) {
			return quote(data), nil // NaN, Infinity, -Infinity
		}
		return data, nil
	case pgtype.BoolOID:
		if len(data) == 1 && data[0] == 't' {
			return jsonTrue, nil
		}
		return jsonFalse, nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		v, err := record.Canonical(data)
		if err != nil {
			return nil, fmt.Errorf("json value is not valid JSON: %w", err)
		}
		return v, nil
	case pgtype.ByteaOID:
		if hx, ok := bytes.CutPrefix(data, []byte(`\x`)); ok {
			b := make([]byte, hex.DecodedLen(len(hx)))
			if _, err := hex.Decode(b, hx); err != nil {
				return nil, fmt.Errorf("bytea value: %w", err)
			}
			out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(b))+2)
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, b)
			return append(out, '"'), nil
		}
		return quote(data), nil // bytea_output = escape: keep the server's text
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID:
		if t, ok := parseISOTime(oid, data); ok {
			return appendTimeJSON(make([]byte, 0, len(`"2006-01-02T15:04:05.999999999Z"`)), oid, t), nil
		}
		v, err := decodeText(m, oid, data)
		if err != nil {
			return nil, err
		}
		t, ok := v.(time.Time)
		if !ok {
			return quote(data), nil // infinity, -infinity
		}
		return appendTimeJSON(make([]byte, 0, len(`"2006-01-02T15:04:05.999999999Z"`)), oid, t), nil
	}
	if typ, ok := m.TypeForOID(oid); ok {
		if _, isArray := typ.Codec.(*pgtype.ArrayCodec); isArray {
			v, err := decodeText(m, oid, data)
			if err != nil {
				return nil, err
			}
			return arrayJSON(m, typ.Codec.(*pgtype.ArrayCodec).ElementType.OID, v)
		}
	}
	return quote(data), nil
}

func appendTimeJSON(dst []byte, oid uint32, t time.Time) []byte {
	dst = append(dst, '"')
	if oid == pgtype.DateOID {
		dst = t.AppendFormat(dst, time.DateOnly)
	} else {
		dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

// parseISOTime reads the server's ISO DateStyle output of a date
// ("2006-01-02"), timestamp ("2006-01-02 15:04:05[.999999]") or timestamptz
// (the same and "±07[:00[:00]]"), four-digit years only; anything else
// (another DateStyle, BC, infinity) is left to pgx.
func parseISOTime(oid uint32, b []byte) (time.Time, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(b) > 0
	}
	if len(b) < 10 || b[4] != '-' || b[7] != '-' {
		return time.Time{}, false
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	if oid == pgtype.DateOID {
		if len(b) != 10 {
			return time.Time{}, false
		}
		t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		return t, t.Day() == d
	}
	b = b[10:]
	if len(b) < 9 || b[0] != ' ' || b[3] != ':' || b[6] != ':' {
		return time.Time{}, false
	}
	h, ok1 := num(b[1:3])
	mi, ok2 := num(b[4:6])
	s, ok3 := num(b[7:9])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, false
	}
	b = b[9:]
	ns := 0
	if len(b) > 0 && b[0] == '.' {
		i := 1
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == 1 || i > 10 {
			return time.Time{}, false
		}
		f, _ := num(b[1:i])
		for j := i - 1; j < 9; j++ {
			f *= 10
		}
		ns, b = f, b[i:]
	}
	off := 0
	if oid == pgtype.TimestamptzOID {
		// ±HH, ±HH:MM or ±HH:MM:SS.
		if len(b) != 3 && len(b) != 6 && len(b) != 9 || b[0] != '+' && b[0] != '-' {
			return time.Time{}, false
		}
		for i, unit := 1, 3600; i < len(b); i, unit = i+3, unit/60 {
			if i > 1 && b[i-1] != ':' {
				return time.Time{}, false
			}
			v, ok := num(b[i : i+2])
			if !ok {
				return time.Time{}, false
			}
			off += v * unit
		}
		if b[0] == '-' {
			off = -off
		}
	} else if len(b) != 0 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
	if t.Day() != d {
		return time.Time{}, false // 2006-02-31: let pgx report it
	}
	return t.Add(-time.Duration(off) * time.Second), true
}

// isNumber reports whether b is a JSON number.
func isNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// arrayJSON encodes a decoded array ([]any, possibly nested) element by
// element with the same rules as a column.
func arrayJSON(m *pgtype.Map, elemOID uint32, v any) (json.RawMessage, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("array value decoded as %T", v)
	}
	b := []byte{'['}
	for i, item := range items {
		if i > 0 {
			b = append(b, ',')
		}
		var raw json.RawMessage
		var err error
		switch x := item.(type) {
		case nil:
			raw = jsonNull
		case []any:
			raw, err = arrayJSON(m, elemOID, x)
		default:
			// Re-encode the element in text form and type it like a column.
			var buf []byte
			buf, err = m.Encode(elemOID, pgtype.TextFormatCode, x, nil)
			if err == nil {
				raw, err = columnJSON(m, elemOID, buf)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		b = append(b, raw...)
	}
	return append(b, ']'), nil
}

func decodeText(m *pgtype.Map, oid uint32, data []byte) (any, error) {
	typ, ok := m.TypeForOID(oid)
	if !ok {
		return string(data), nil
	}
	v, err := typ.Codec.DecodeValue(m, oid, pgtype.TextFormatCode, data)
	if err != nil {
		return nil, fmt.Errorf("decode %s value %q: %w", typ.Name, truncate(string(data), 64), err)
	}
	return v, nil
}

// quote encodes s as a canonical JSON string. Invalid UTF-8 (possible
// only in a SQL_ASCII database) becomes U+FFFD, as encoding/json would.
func quote[S ~[]byte | ~string](s S) json.RawMessage {
	b, _ := jsontext.AppendQuote(make([]byte, 0, len(s)+2), s)
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
