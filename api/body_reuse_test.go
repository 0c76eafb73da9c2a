package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/record"
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

// TestStoredFormStoredAsSent: records sent in their stored form are
// stored as the very bytes sent (the fast path hands them to the log
// instead of encoding them again), the others as encoded; requests that
// follow, on the fast path, on the checked one and in between, leave
// what is stored as it was.
func TestStoredFormStoredAsSent(t *testing.T) {
	e := newEnv(t)
	stored := func(i int) string {
		return fmt.Sprintf(`{"id":"s-%d","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":%d},`+
			`"before":{"email":"old@example.com","id":%d},"after":{"email":"new@example.com","id":%d,"note":%q},"changed":["email","note"],`+
			`"actor":{"app":"billing","id":"u"},"tx":{"id":"7","position":"0/%X"},"occurred_at":"2026-01-01T00:00:%02dZ"}`, i, i, i, i, strings.Repeat("n", i), i, i%60)
	}
	var sent []string
	var batches [][]string
	for b := range 3 {
		var batch []string
		for i := range 150 {
			r := stored(b*1000 + i)
			if i%50 == 7 {
				// Not in stored form: members out of order, a space.
				r = fmt.Sprintf(`{"op":"insert", "source":{"table":"t","name":"crm"},"key":{"id":%d},"id":"o-%d-%d","occurred_at":"2026-01-01T00:00:00Z"}`, i, b, i)
			}
			batch = append(batch, r)
		}
		batches = append(batches, batch)
		sent = append(sent, batch...)
	}
	for b, batch := range batches {
		body := "[" + strings.Join(batch, ",") + "]"
		var r response
		if b == 1 {
			// The checked path, which reuses its body buffers.
			r = e.doWith(t, http.MethodPost, "/v1/records", map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k1"}, []byte(body))
		} else {
			r = e.post(t, "application/json", body)
		}
		if r.status != http.StatusCreated {
			t.Fatalf("batch %d: %d %s", b, r.status, r.body)
		}
	}
	if got := e.store.Size(); got != uint64(len(sent)) {
		t.Fatalf("%d records stored, %d sent", got, len(sent))
	}
	for seq, in := range sent {
		raw, err := e.store.ReadRaw(uint64(seq))
		if err != nil {
			t.Fatal(err)
		}
		want := []byte(in)
		if strings.HasPrefix(in, `{"op"`) {
			r, err := record.ParseIngest(want, record.IngestOptions{DefaultKind: "http", Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			want = record.AppendBody(nil, r)
		}
		if got := raw[record.HeaderSize:]; !bytes.Equal(got, want) {
			t.Errorf("seq %d: stored %s, want %s", seq, got, want)
		}
	}
}
