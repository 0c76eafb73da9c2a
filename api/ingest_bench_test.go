package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
)

// benchBody is a JSON array of n records of about 512 bytes in the shape
// of stele bench's HTTP ingest figure.
func benchBody(n int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"http-%012d","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":%d},`+
			`"before":{"email":"old%d@example.com","id":%d,"name":"Ada"},"after":{"email":"new%d@example.com","id":%d,"name":"Ada","note":"%s"},`+
			`"changed":["email","note"],"actor":{"app":"billing","id":"user-%d"},"tx":{"id":"%d","position":"0/%X"},"occurred_at":"%s"}`,
			i, i, i, i, i, i, strings.Repeat("x", 120), i%500, 1000+i/10, 0x1000000+i*600, time.Unix(1767225600+int64(i), 0).UTC().Format(time.RFC3339))
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// BenchmarkIngestBatch is the HTTP ingest path's own work on a batch of
// 1,000 records, without the log: splitting the body, validating the
// records (on every core) and encoding the answer. Each is reported per
// batch; their sum is what the path adds to an append.
func BenchmarkIngestBatch(b *testing.B) {
	store, err := logstore.Open(context.Background(), b.TempDir(), logstore.Options{Origin: "bench.example/log"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	s := New(Config{Log: store, MaxBatch: 1000})
	body := benchBody(1000)
	items, _, aerr := splitJSON(body, 1000)
	if aerr != nil {
		b.Fatal(aerr.Msg)
	}
	b.Run("split", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, aerr := splitJSON(body, 1000); aerr != nil {
				b.Fatal(aerr.Msg)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, aerr := s.parseBatch(items, true, ""); aerr != nil {
				b.Fatal(aerr.Msg)
			}
		}
	})
	res := make([]stele.Appended, len(items))
	for i := range res {
		res[i] = stele.Appended{Seq: uint64(1e9 + i), ID: fmt.Sprintf("http-%012d", i)}
	}
	b.Run("respond", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			writeAppended(w, res)
			if w.Code != http.StatusCreated {
				b.Fatal(w.Code)
			}
		}
	})
}

// TestWriteAppendedMatchesEncoder: the hand-encoded 201 answer is the
// bytes encoding/json gives, ids that need escaping included.
func TestWriteAppendedMatchesEncoder(t *testing.T) {
	for _, res := range [][]stele.Appended{
		nil,
		{{Seq: 0, ID: "a"}},
		{{Seq: 7, ID: "http-1"}, {Seq: 3, ID: "p3", Duplicate: true}, {Seq: 1<<64 - 1, ID: "x y~!<&>"}},
		{{Seq: 1, ID: "plain"}, {Seq: 2, ID: "quote\"d"}},
		{{Seq: 1, ID: "back\\slash"}, {Seq: 2, ID: "é"}},
		{{Seq: 1, ID: "\u2028\x7f\x01"}},
	} {
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		writeAppended(got, res)
		writeJSON(want, http.StatusCreated, struct {
			Records []stele.Appended `json:"records"`
		}{res})
		if got.Code != want.Code || got.Body.String() != want.Body.String() || fmt.Sprint(got.Header()) != fmt.Sprint(want.Header()) {
			t.Errorf("%v: answer %d %v %q, encoding/json gives %d %v %q", res, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}
