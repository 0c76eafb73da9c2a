package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestLargeBatchFirstErrorWins: a batch validated in parallel chunks
// answers with the error a record-by-record pass meets first, whichever
// chunk finds its own error sooner, and appends nothing.
func TestLargeBatchFirstErrorWins(t *testing.T) {
	e := newEnv(t)
	batch := func(edit func(i int) string) string {
		items := make([]string, 400)
		for i := range items {
			items[i] = edit(i)
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	for _, tc := range []struct {
		name  string
		edit  func(i int) string
		index int
		msg   string
	}{
		{"parse errors in two chunks", func(i int) string {
			switch i {
			case 390:
				return rec(i, `"op2":1`)
			case 150:
				return rec(i, `"seq":1`)
			}
			return rec(i, fmt.Sprintf(`"id":"r%d"`, i))
		}, 150, "seq: is assigned by the log and must not be sent"},
		{"a repeated id before a later chunk's bad record", func(i int) string {
			switch i {
			case 399:
				return rec(i, `"seq":1`)
			case 250:
				return rec(i, `"id":"r3"`)
			}
			return rec(i, fmt.Sprintf(`"id":"r%d"`, i))
		}, 250, "id: same id as record 3 of this batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, "application/json", batch(tc.edit))
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.json(t)
			if fmt.Sprint(m["index"]) != fmt.Sprint(tc.index) || !strings.Contains(fmt.Sprint(m["error"]), tc.msg) {
				t.Errorf("answer %s, want index %d and %q", r.body, tc.index, tc.msg)
			}
		})
	}
	if n := e.get(t, "/v1/records?limit=1").json(t)["records"]; n != nil && len(n.([]any)) != 0 {
		t.Errorf("a refused batch appended records: %v", n)
	}
}
