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
	// Walk the members instead of unmarshalling: this runs for every
	// indexed record.
	dec := jsontext.NewDecoder(bytes.NewReader(r.Actor))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return ""
		}
		if name.String() != "id" {
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
	n := len(key)
	if n < 7 || key[0] != '{' || key[1] != '"' || key[n-1] != '}' || bytes.IndexByte(key, '\\') >= 0 || !plainText(key) {
		return "", false
	}
	end := bytes.IndexByte(key[2:], '"') + 2
	if end < 2 || end+2 >= n-1 || key[end+1] != ':' {
		return "", false
	}
	v := key[end+2 : n-1]
	switch v[0] {
	case '"':
		if len(v) < 2 || v[len(v)-1] != '"' || bytes.IndexByte(v[1:len(v)-1], '"') >= 0 {
			return "", false
		}
		return string(v[1 : len(v)-1]), true
	case '{', '[':
		return "", false
	}
	if bytes.ContainsAny(v, ",\" \t\r\n") || !json.Valid(v) {
		return "", false
	}
	return string(v), true
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

// flatActorID is ActorID's fast path for an actor object without nested
// values or escapes, where the first `"id":"` at a member boundary is the
// top-level id.
func flatActorID(actor []byte) (string, bool) {
	if len(actor) < 2 || actor[0] != '{' || bytes.IndexByte(actor[1:], '{') >= 0 ||
		bytes.IndexByte(actor, '[') >= 0 || bytes.IndexByte(actor, '\\') >= 0 || !plainText(actor) ||
		bytes.ContainsAny(actor, " \t\r\n") || !json.Valid(actor) {
		return "", false
	}
	const needle = `"id":`
	if bytes.Count(actor, []byte(needle)) > 1 {
		return "", false // a duplicate member: let the parser decide
	}
	for i := 1; i+len(needle) <= len(actor); i++ {
		j := bytes.Index(actor[i:], []byte(needle))
		if j < 0 {
			return "", true // no top-level id
		}
		at := i + j
		if actor[at-1] != '{' && actor[at-1] != ',' {
			// Inside a string value, such as "app":"x\"id\":"; the escape
			// check above rules most of these out; be safe.
			return "", false
		}
		v := actor[at+len(needle):]
		if len(v) == 0 || v[0] != '"' {
			return "", true // id is not a string: no actor id
		}
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
			return "", false
		}
		return string(v[1 : 1+end]), true
	}
	return "", true
}
