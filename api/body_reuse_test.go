package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestBodyBufferReuse: ingest reuses its body buffers across requests, and
// nothing of one request shows in the next: a large batch, then a shorter
// one sent without Content-Length (chunked) into the same buffer, then a
// malformed one whose error names its own bytes; every stored record is
// the one sent.
func TestBodyBufferReuse(t *testing.T) {
	e := newEnv(t)
	big := make([]string, 200)
	for i := range big {
		big[i] = rec(i, fmt.Sprintf(`"id":"big-%d","cause":{"note":%q}`, i, strings.Repeat("b", 200)))
	}
	if r := e.post(t, "application/json", "["+strings.Join(big, ",")+"]"); r.status != http.StatusCreated {
		t.Fatalf("large batch: %d %s", r.status, r.body)
	}
	small := "[" + rec(1000, `"id":"small-0"`) + "," + rec(1001, `"id":"small-1"`) + "]"
	if r := e.postChunked(t, io.MultiReader(strings.NewReader(small))); r.status != http.StatusCreated {
		t.Fatalf("chunked small batch: %d %s", r.status, r.body)
	}
	if r := e.post(t, "application/json", `[`+rec(2000, `"id":"bad"`)+`,{"op":]`); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "malformed JSON") {
		t.Fatalf("malformed batch after the others: %d %s", r.status, r.body)
	}
	got := e.get(t, "/v1/records?limit=500").json(t)["records"].([]any)
	if len(got) != 202 {
		t.Fatalf("%d records stored, want 202", len(got))
	}
	for _, r := range got {
		m := r.(map[string]any)
		id := m["id"].(string)
		after := fmt.Sprint(m["after"])
		switch {
		case strings.HasPrefix(id, "small-"):
			if m["cause"] != nil || !strings.Contains(after, "100") {
				t.Errorf("record %s holds %v: bytes of another request", id, m)
			}
		case !strings.HasPrefix(id, "big-"):
			t.Errorf("unexpected record %s", id)
		}
	}
}
