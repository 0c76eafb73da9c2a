package mysql

// # Actor and cause
//
// A statement may carry its own context as a leading comment:
//
//	/* stele {"actor":{"id":"alice"},"cause":{"type":"ticket","id":"T-42"}} */ UPDATE …
//
// The binlog holds the statement's text only in MySQL's rows-query events
// (binlog_rows_query_log_events = ON) and MariaDB's annotate-rows events
// (binlog_annotate_row_events = ON, the default; the source asks for them
// with BINLOG_SEND_ANNOTATE_ROWS_EVENT). The comment applies to the rows of
// that statement only. Clients that strip comments (the mysql and mariadb
// command-line clients do unless started with --comments, and many ORMs) need
// the second way: a row written to the context table inside the
// transaction,
//
//	INSERT INTO stele_context (conn, actor, cause)
//	VALUES (CONNECTION_ID(), '{"id":"alice"}', '{"type":"ticket","id":"T-42"}')
//	ON DUPLICATE KEY UPDATE actor = VALUES(actor), cause = VALUES(cause), n = n + 1;
//
// which applies to every change of its transaction that has no statement
// comment of its own, wherever in the transaction it is written, and is not
// recorded as a change itself. The table keeps one row per connection (the
// update of n makes sure the binlog holds a row event even when the values
// repeat). Package capture/mysqlctx has the Go one-liner and the table's
// definition (TableDDL).

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/stele/stele/record"
)

var unknownActor = json.RawMessage(`{"id":"unknown","type":"unknown"}`)

// stmtContext is an actor and cause (either may be nil), canonical JSON
// objects.
type stmtContext struct {
	actor, cause json.RawMessage
}

// commentContext reads a leading /* stele {…} */ comment of a statement
// (ok false: none, or not a valid one).
func commentContext(stmt []byte) (stmtContext, bool) {
	s := bytes.TrimLeft(stmt, " \t\r\n")
	rest, ok := bytes.CutPrefix(s, []byte("/*"))
	if !ok {
		return stmtContext{}, false
	}
	end := bytes.Index(rest, []byte("*/"))
	for end >= 0 {
		body := bytes.TrimSpace(rest[:end])
		if js, ok := bytes.CutPrefix(body, []byte("stele")); ok && len(js) > 0 && (js[0] == ' ' || js[0] == '\t' || js[0] == '\n' || js[0] == '{') {
			if c, ok := parseContext(bytes.TrimSpace(js)); ok {
				return c, true
			}
		} else {
			return stmtContext{}, false
		}
		// "*/" inside the JSON: try the next one.
		next := bytes.Index(rest[end+2:], []byte("*/"))
		if next < 0 {
			break
		}
		end += 2 + next
	}
	return stmtContext{}, false
}

// parseContext reads {"actor": {…}, "cause": {…}}.
func parseContext(js []byte) (stmtContext, bool) {
	var c struct {
		Actor json.RawMessage `json:"actor"`
		Cause json.RawMessage `json:"cause"`
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return stmtContext{}, false
	}
	out := stmtContext{actor: canonObject(c.Actor), cause: canonObject(c.Cause)}
	return out, out.actor != nil || out.cause != nil
}

// canonObject is raw in canonical form when it is a JSON object, else nil.
func canonObject(raw []byte) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	c, err := record.Canonical(raw)
	if err != nil {
		return nil
	}
	return c
}

// contextRow reads the actor and cause of a context-table row image.
func contextRow(t *table, vals rowVals) stmtContext {
	var out stmtContext
	for name, dst := range map[string]*json.RawMessage{"actor": &out.actor, "cause": &out.cause} {
		i, ok := t.byName[name]
		if !ok || vals[i] == nil {
			continue
		}
		v := vals[i]
		switch {
		case len(v) > 0 && v[0] == '{':
			*dst = v // a JSON column, already canonical
		case len(v) > 0 && v[0] == '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				*dst = canonObject([]byte(strings.TrimSpace(s)))
			}
		}
	}
	return out
}
