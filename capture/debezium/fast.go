package debezium

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/internal/jsonscan"
)

// Fast paths: every message is an object of a handful of known members,
// and decoding it through reflection (json.Unmarshal into the structs of
// debezium.go), once for the envelope, once for the payload and once for
// the source block, was most of a Kafka source's CPU. These walk each
// object once with the allocation-free scanner and fill the same structs.
// They accept only what they are sure of (the kinds each field expects);
// anything else, valid or not, reports ok false and goes through
// json.Unmarshal, whose result and errors stay the reference (the fuzz
// test holds the two equal).

// members walks the object b (nothing around it) and calls fn with each
// member's name (unquoted; fn switches on string(name), which does not
// allocate) and value; ok is false when b is not exactly one valid object
// or fn refused a member.
func members(b []byte, fn func(name []byte, v jsontext.Value) bool) (ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	end, ok := walk(b, 0, 0, func(name []byte, v int) (int, bool) {
		end, err := jsonscan.Skip(b, v, 1)
		if err != nil {
			return 0, false
		}
		return end, fn(name, jsontext.Value(b[v:end:end]))
	})
	return ok && end == len(b)
}

// errRefused stops a walk whose callback refused a member.
var errRefused = errors.New("refused")

// walk walks the object at b[i] and calls fn with each member's name
// (unquoted) and the index where its value starts; fn scans the value and
// returns the index after it, or ok false to refuse it, which ends the
// walk. It returns the index after the object.
func walk(b []byte, i, depth int, fn func(name []byte, v int) (end int, ok bool)) (end int, ok bool) {
	end, err := jsonscan.Members(b, i, depth, func(lit []byte, v int) (int, error) {
		name := lit[1 : len(lit)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(jsonscan.Unquote(lit))
		}
		end, ok := fn(name, v)
		if !ok {
			return 0, errRefused
		}
		return end, nil
	})
	return end, err == nil
}

// str is the value of a string literal, ok false for another kind.
func str(v jsontext.Value) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	return jsonscan.Unquote(v), true
}

// optStr is str that takes null as "".
func optStr(v jsontext.Value) (string, bool) {
	if isNull(v) {
		return "", true
	}
	return str(v)
}

// optInt is an integer literal, nil for null, ok false for anything else.
func optInt(v jsontext.Value) (*int64, bool) {
	if isNull(v) {
		return nil, true
	}
	if jsonscan.Kind(v, 0) != jsonscan.Number {
		return nil, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return nil, false
	}
	return &n, true
}

// unwrapFast is unwrap for a valid object.
func unwrapFast(data []byte) (schema, body jsontext.Value, ok bool) {
	start, end := jsonscan.Space(data, 0), len(data)
	for end > start && (data[end-1] == ' ' || data[end-1] == '\t' || data[end-1] == '\n' || data[end-1] == '\r') {
		end--
	}
	obj := data[start:end]
	var payload jsontext.Value
	if !members(obj, func(name []byte, v jsontext.Value) bool {
		switch string(name) {
		case "schema":
			schema = v
		case "payload":
			payload = v
		}
		return true
	}) {
		return nil, nil, false
	}
	if len(payload) > 0 && len(schema) > 0 {
		return schema, payload, true
	}
	return nil, obj, true
}

// payloadFast fills p from body; ok false sends it to json.Unmarshal.
func payloadFast(body []byte, p *payload) bool {
	return members(body, func(name []byte, v jsontext.Value) bool { return payloadMember(p, name, v) })
}

// payloadMember fills the field of p that the member name names.
func payloadMember(p *payload, name []byte, v jsontext.Value) bool {
	ok := true
	switch string(name) {
	case "before":
		p.Before = v
	case "op":
		p.Op, ok = optStr(v)
	case "after":
		p.After = v
	case "ts_ms":
		p.TsMs, ok = optInt(v)
	case "source":
		p.Source = v
	case "transaction":
		if isNull(v) {
			return true
		}
		t := &txBlock{}
		p.Transaction = t
		ok = members(v, func(name []byte, v jsontext.Value) bool {
			switch string(name) {
			case "id":
				var ok bool
				t.ID, ok = optStr(v)
				return ok
			case "total_order":
				n, ok := optInt(v)
				if n != nil {
					t.TotalOrder = *n
				}
				return ok
			}
			return true
		})
	case "status":
		p.Status, ok = optStr(v)
	case "id":
		p.ID, ok = optStr(v)
	case "event_count":
		p.EventCount, ok = optInt(v)
	case "message":
		ok = false // op m: rare, left to the decoder
	}
	return ok
}

// decodeFast is unwrap, payloadFast and sourceFast in one walk of each
// object: a bare payload (schemas off, the common case) is the message's
// own top-level object, and its source block is read where the walk finds
// it, so no byte of the message is scanned twice here (unwrap and then
// payloadFast walked the top level twice, and the source block a third
// time, each walk validating every value below it). filled reports p (and,
// with srcOK, s) filled from body; ok false means the caller goes the
// separate ways, whose results and errors stay the reference.
func decodeFast(data []byte, p *payload, s *sourceBlock) (schema, body jsontext.Value, filled, srcOK, ok bool) {
	start, end := jsonscan.Space(data, 0), len(data)
	for end > start && (data[end-1] == ' ' || data[end-1] == '\t' || data[end-1] == '\n' || data[end-1] == '\r') {
		end--
	}
	obj := data[start:end]
	if len(obj) == 0 || obj[0] != '{' {
		return nil, nil, false, false, false
	}
	var wrapped jsontext.Value
	n, ok := payloadWalk(obj, 0, 0, p, s, &srcOK, &schema, &wrapped)
	if !ok || n != len(obj) {
		return nil, nil, false, false, false
	}
	if len(wrapped) == 0 || len(schema) == 0 {
		return nil, obj, true, srcOK, true
	}
	// {schema, payload}: what the top level gave p is not the event.
	*p, *s, srcOK = payload{}, sourceBlock{}, false
	if wrapped[0] != '{' {
		return schema, wrapped, false, false, true
	}
	if _, ok := payloadWalk(wrapped, 0, 1, p, s, &srcOK, nil, nil); !ok {
		*p, *s = payload{}, sourceBlock{}
		return schema, wrapped, false, false, true
	}
	return schema, wrapped, true, srcOK, true
}

// payloadWalk walks the payload object at b[i] into p, the source block
// into s (srcOK when sourceFast would have accepted it), and, when schema
// and wrapped are set, the converter envelope's members.
func payloadWalk(b []byte, i, depth int, p *payload, s *sourceBlock, srcOK *bool, schema, wrapped *jsontext.Value) (int, bool) {
	return walk(b, i, depth, func(name []byte, v int) (int, bool) {
		if string(name) == "source" && jsonscan.Kind(b, v) == jsonscan.Object {
			end, ok := walk(b, v, depth+1, func(name []byte, w int) (int, bool) {
				end, err := jsonscan.Skip(b, w, depth+2)
				if err != nil {
					return 0, false
				}
				return end, sourceMember(s, name, jsontext.Value(b[w:end:end]))
			})
			if !ok {
				// Refused or invalid: Skip says which, and sourceFast's
				// fallback decodes it later as before.
				*s = sourceBlock{}
				if end, err := jsonscan.Skip(b, v, depth+1); err == nil {
					p.Source = jsontext.Value(b[v:end:end])
					return end, true
				}
				return 0, false
			}
			p.Source, *srcOK = jsontext.Value(b[v:end:end]), true
			return end, true
		}
		end, err := jsonscan.Skip(b, v, depth+1)
		if err != nil {
			return 0, false
		}
		val := jsontext.Value(b[v:end:end])
		if schema != nil {
			switch string(name) {
			case "schema":
				*schema = val
			case "payload":
				*wrapped = val
			}
		}
		return end, payloadMember(p, name, val)
	})
}

// sourceFast fills s from the source block; ok false sends it to
// json.Unmarshal.
func sourceFast(b []byte, s *sourceBlock) bool {
	return members(b, func(name []byte, v jsontext.Value) bool { return sourceMember(s, name, v) })
}

// sourceMember fills the field of s that the member name names.
func sourceMember(s *sourceBlock, name []byte, v jsontext.Value) bool {
	ok := true
	switch string(name) {
	case "connector":
		s.Connector, ok = optStr(v)
	case "db":
		s.DB, ok = optStr(v)
	case "schema":
		s.Schema, ok = optStr(v)
	case "table":
		s.Table, ok = optStr(v)
	case "collection":
		s.Collection, ok = optStr(v)
	case "file":
		s.File, ok = optStr(v)
	case "ts_ms":
		s.TsMs, ok = optInt(v)
	case "lsn":
		s.LSN, ok = optInt(v)
	case "txId":
		s.TxID, ok = optInt(v)
	case "pos":
		s.Pos, ok = optInt(v)
	case "row":
		s.Row, ok = optInt(v)
	case "gtid":
		if !isNull(v) {
			var g string
			g, ok = str(v)
			s.GTID = &g
		}
	case "snapshot":
		s.Snapshot = v
	}
	return ok
}
