package query

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// The fold reader finds what encoding/json finds in stored bodies,
// whatever the other members hold (strings with quotes, braces and
// escapes, nested arrays, literals), and refuses what is not an object.
func TestFoldFieldsMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 31, 23, 59, 59, 123456789, time.UTC)
	recs := []*record.Record{
		{ID: `a"}{[`, Source: record.Source{Name: "crm", Table: `t\"x`}, Op: record.OpUpdate, Key: json.RawMessage(`{"id":1}`),
			Before: json.RawMessage(`{"a":"}\"{","b":[1,[2,{"c":null}]],"d":true}`), After: json.RawMessage(`{"a":"x\\","e":-1.5e3}`),
			Actor: json.RawMessage(`{"id":"op\"after\":"}`), OccurredAt: at},
		{ID: "d", Source: record.Source{Name: "crm", Table: "t"}, Op: record.OpDelete, Key: json.RawMessage(`{"id":2}`),
			Before: json.RawMessage(`{"id":2}`), OccurredAt: at.Add(-time.Hour)},
	}
	for _, r := range recs {
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{body, bytes.ReplaceAll(body, []byte(`,"`), []byte(" ,\n \""))} {
			op, after, occ, err := foldFields(b)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			var compact bytes.Buffer
			if len(after) > 0 {
				if err := json.Compact(&compact, after); err != nil {
					t.Fatalf("%s: after %s: %v", b, after, err)
				}
			}
			if op != r.Op || compact.String() != string(r.After) || !occ.Equal(r.OccurredAt) {
				t.Fatalf("%s: got %q %s %v, want %q %s %v", b, op, after, occ, r.Op, r.After, r.OccurredAt)
			}
		}
	}
	for _, bad := range []string{``, `[]`, `{"op":`, `{"op":"update"`, `{"op" "update"}`, `{"after":{"a":1}`, `{"op":"update",}x`, `{"occurred_at":"yesterday"}`} {
		if _, _, _, err := foldFields([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
