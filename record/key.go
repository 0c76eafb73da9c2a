package record

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// keyValueEscaper keeps multi-column key strings unambiguous: a value holding
// ',' or '=' cannot be mistaken for a column boundary.
var keyValueEscaper = strings.NewReplacer("%", "%25", ",", "%2C", "=", "%3D")

// KeyString returns the canonical key string used in entity URLs and the
// entity index: the bare value for a single-column key, otherwise col=value
// pairs in key column order joined by ','. Strings appear unquoted, other
// values as their JSON text.
func KeyString(key json.RawMessage) (string, error) {
	if s, ok := singleScalarKey(key); ok {
		return s, nil
	}
	return parsedKeyString(key)
}

// parsedKeyString is KeyString through the full JSON parser.
func parsedKeyString(key json.RawMessage) (string, error) {
	members, err := objectMembers(key, "key")
	if err != nil {
		return "", err
	}
	if len(members) == 1 {
		return scalarText(members[0].value), nil
	}
	var b strings.Builder
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(keyValueEscaper.Replace(m.name))
		b.WriteByte('=')
		b.WriteString(keyValueEscaper.Replace(scalarText(m.value)))
	}
	return b.String(), nil
}

func scalarText(v []byte) string {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(v)
}

// ActorID returns actor.id, or "" when the record names no actor id.
func (r *Record) ActorID() string {
	if len(r.Actor) == 0 {
		return ""
	}
	if id, ok := flatActorID(r.Actor); ok {
		return id
	}
	return memberString(r.Actor, "id")
}

// CauseID is the record id the cause names (cause.record_id: the event
// record an outbox row became, see capture.JoinOutbox), or "".
func (r *Record) CauseID() string {
	if len(r.Cause) == 0 {
		return ""
	}
	return memberString(r.Cause, "record_id")
}

// memberString is the string member name of the JSON object obj, or "".
// It walks the members instead of unmarshalling: it runs for every
// indexed record.
func memberString(obj []byte, name string) string {
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for dec.PeekKind() == '"' {
		n, err := dec.ReadToken()
		if err != nil {
			return ""
		}
		if n.String() != name {
			if dec.SkipValue() != nil {
				return ""
			}
			continue
		}
		v, err := dec.ReadToken()
		if err != nil || v.Kind() != '"' {
			return ""
		}
		return v.String()
	}
	return ""
}

// singleScalarKey is KeyString's fast path for the commonest key, one column
// holding a number or a plain string, in the compact form ingest stores
// (`{"id":42}`). Anything with an escape, a nested value or a second member
// is left to the full parser, so the answer is always the same.
func singleScalarKey(key []byte) (string, bool) {
	v, ok := singleScalarValue(key)
	return string(v), ok
}

// singleScalarValue is singleScalarKey without the copy: the value's
// text within key.
func singleScalarValue(key []byte) ([]byte, bool) {
	n := len(key)
	if n < 7 || key[0] != '{' || key[1] != '"' || key[n-1] != '}' || bytes.IndexByte(key, '\\') >= 0 || !plainText(key) {
		return nil, false
	}
	end := bytes.IndexByte(key[2:], '"') + 2
	if end < 2 || end+2 >= n-1 || key[end+1] != ':' {
		return nil, false
	}
	v := key[end+2 : n-1]
	switch v[0] {
	case '"':
		if len(v) < 2 || v[len(v)-1] != '"' || bytes.IndexByte(v[1:len(v)-1], '"') >= 0 {
			return nil, false
		}
		return v[1 : len(v)-1], true
	case '{', '[':
		return nil, false
	}
	if bytes.ContainsAny(v, ",\" \t\r\n") || !json.Valid(v) {
		return nil, false
	}
	return v, true
}

// plainText reports valid UTF-8 without control characters: what a JSON
// string may hold unescaped.
func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	return utf8.Valid(b)
}

// flatActorID is ActorID's fast path, one pass over an actor object whose
// members are all strings of printable ASCII without escapes, such as
// {"id":"alice","type":"user"}; anything else (other values, escapes,
// white space, a repeated id) is left to the full parser (ok false).
func flatActorID(actor []byte) (id string, ok bool) {
	n := len(actor)
	if n < 2 || actor[0] != '{' || actor[n-1] != '}' {
		return "", false
	}
	if n == 2 {
		return "", true
	}
	var found []byte
	for i := 1; ; {
		k, j, ok := plainASCIIString(actor, i)
		if !ok || j >= n || actor[j] != ':' {
			return "", false
		}
		v, j, ok := plainASCIIString(actor, j+1)
		if !ok || j >= n {
			return "", false
		}
		if string(k) == "id" {
			if found != nil {
				return "", false
			}
			found = v
		}
		switch {
		case actor[j] == ',':
			i = j + 1
		case j == n-1: // the closing brace
			return string(found), true
		default:
			return "", false
		}
	}
}

// plainASCIIString reads the JSON string starting at b[i] when it holds
// only printable ASCII and no escapes, returning its contents and the
// index after its closing quote.
func plainASCIIString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}
