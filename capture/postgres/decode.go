package postgres

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// columnJSON converts one column's text-format value to JSON, typed by the
// column's type OID:
//
//	int2, int4, int8, oid        JSON number
//	numeric, float4, float8      JSON number with the server's digits kept
//	                             exactly; NaN and ±Infinity as strings
//	bool                         true / false
//	timestamptz                  RFC 3339 string in UTC
//	timestamp (no time zone)     RFC 3339 string, the wall time read as UTC
//	date                         "2006-01-02"
//	json, jsonb                  the JSON value itself
//	bytea                        base64 string (standard encoding)
//	arrays                       JSON arrays of the element values
//	uuid, text and the rest      string (the server's text form)
func columnJSON(m *pgtype.Map, oid uint32, data []byte) (json.RawMessage, error) {
	s := string(data)
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return json.RawMessage(s), nil
	case pgtype.NumericOID, pgtype.Float4OID, pgtype.Float8OID:
		if !json.Valid(data) || strings.ContainsAny(s, "\"{[") {
			return quote(s), nil // NaN, Infinity, -Infinity
		}
		return json.RawMessage(s), nil
	case pgtype.BoolOID:
		if s == "t" {
			return json.RawMessage("true"), nil
		}
		return json.RawMessage("false"), nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		if !json.Valid(data) {
			return nil, fmt.Errorf("json value is not valid JSON")
		}
		return json.RawMessage(s), nil
	case pgtype.ByteaOID:
		if hx, ok := strings.CutPrefix(s, `\x`); ok {
			b, err := hex.DecodeString(hx)
			if err != nil {
				return nil, fmt.Errorf("bytea value: %w", err)
			}
			return quote(base64.StdEncoding.EncodeToString(b)), nil
		}
		return quote(s), nil // bytea_output = escape: keep the server's text
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID:
		v, err := decodeText(m, oid, data)
		if err != nil {
			return nil, err
		}
		t, ok := v.(time.Time)
		if !ok {
			return quote(s), nil // infinity, -infinity
		}
		if oid == pgtype.DateOID {
			return quote(t.Format(time.DateOnly)), nil
		}
		return quote(t.UTC().Format(time.RFC3339Nano)), nil
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
	return quote(s), nil
}

// arrayJSON encodes a decoded array ([]any, possibly nested) element by
// element with the same rules as a column.
func arrayJSON(m *pgtype.Map, elemOID uint32, v any) (json.RawMessage, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("array value decoded as %T", v)
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, item := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		var raw json.RawMessage
		var err error
		switch x := item.(type) {
		case nil:
			raw = json.RawMessage("null")
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
		b.Write(raw)
	}
	b.WriteByte(']')
	return json.RawMessage(b.String()), nil
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

func quote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
