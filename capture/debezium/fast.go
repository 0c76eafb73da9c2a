package debezium

import (
	"bytes"
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
	refused := false
	end, err := jsonscan.Members(b, 0, 0, func(lit []byte, v int) (int, error) {
		end, err := jsonscan.Skip(b, v, 1)
		if err != nil {
			return 0, err
		}
		name := lit[1 : len(lit)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(jsonscan.Unquote(lit))
		}
		if !refused && !fn(name, jsontext.Value(b[v:end:end])) {
			refused = true
		}
		return end, nil
	})
	return err == nil && !refused && end == len(b)
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
	return members(body, func(name []byte, v jsontext.Value) bool {
		ok := true
		switch string(name) {
		case "before":
			p.Before = v
		case "after":
			p.After = v
		case "source":
			p.Source = v
		case "op":
			p.Op, ok = optStr(v)
		case "ts_ms":
			p.TsMs, ok = optInt(v)
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
	})
}

// sourceFast fills s from the source block; ok false sends it to
// json.Unmarshal.
func sourceFast(b []byte, s *sourceBlock) bool {
	return members(b, func(name []byte, v jsontext.Value) bool {
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
			if isNull(v) {
				return true
			}
			g, ok := str(v)
			s.GTID = &g
			return ok
		case "snapshot":
			s.Snapshot = v
		}
		return ok
	})
}
