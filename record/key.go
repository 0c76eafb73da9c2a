package record

import (
	"bytes"
	"encoding/json"
	"strings"

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
