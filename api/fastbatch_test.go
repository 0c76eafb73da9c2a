package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

func fastBatchServer(t testing.TB, maxBatch int) *Server {
	store, err := logstore.Open(context.Background(), t.TempDir(), logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	return New(Config{Log: store, MaxBatch: maxBatch, Now: func() time.Time { return now }})
}

// checkFastBatch: whatever fastBatch accepts, cut into ranges of chunk
// bytes, the checked path accepts too and makes the same records of.
func checkFastBatch(t *testing.T, s *Server, body []byte, chunk int) bool {
	t.Helper()
	fb, ok := s.fastBatch(context.Background(), body, chunk)
	if !ok {
		return false
	}
	fast := fb.recs
	if !utf8.Valid(body) {
		t.Fatalf("%q: fastBatch accepted a body that is not UTF-8", body)
	}
	items, batch, aerr := splitJSON(body, s.cfg.MaxBatch)
	if aerr == nil {
		var recs []*record.Record
		if recs, aerr = s.parseBatch(items, batch, ""); aerr == nil {
			if len(recs) != len(fast) {
				t.Fatalf("%q: fastBatch made %d records, the checked path %d", body, len(fast), len(recs))
			}
			for i := range recs {
				// What the log is given (Prepare fills in those it
				// encodes itself) is the record's body.
				if b := fb.bodies[i]; b != nil && !bytes.Equal(b, record.AppendBody(nil, fast[i])) {
					t.Fatalf("%q: record %d is given to the log as %s, its body is %s", body, i, b, record.AppendBody(nil, fast[i]))
				}
				if randomID(recs[i].ID, body) && randomID(fast[i].ID, body) {
					fast[i].ID = recs[i].ID
				}
				if got, want := record.Encode(fast[i]), record.Encode(recs[i]); !bytes.Equal(got, want) {
					t.Fatalf("%q: record %d is %s, the checked path makes %s", body, i, got, want)
				}
			}
			return true
		}
	}
	t.Fatalf("%q: fastBatch accepted a batch the checked path answers %s", body, aerr.Msg)
	return true
}

// sentBodies counts the bodies that are bytes of body itself, not copies.
func sentBodies(body []byte, bodies [][]byte) (n int) {
	for _, b := range bodies {
		if k := bytes.Index(body, b); len(b) > 0 && k >= 0 && &body[k] == &b[0] {
			n++
		}
	}
	return n
}

// randomID reports an id record.DeriveID drew at random, not one the
// client gave.
func randomID(id string, body []byte) bool {
	return len(id) == 27 && id[0] == 'r' && !bytes.Contains(body, []byte(id))
}

func TestFastBatch(t *testing.T) {
	s := fastBatchServer(t, 1000)
	body := benchBody(300)
	for _, chunk := range []int{1, 7, 500, 4096, fastChunkBytes, len(body)} {
		if !checkFastBatch(t, s, body, chunk) {
			t.Errorf("chunks of %d: fastBatch left a batch of usual records to the checked path", chunk)
		}
	}
	// The bench's records are sent in their stored form: the log is
	// given each as it came, the request's own bytes.
	if fb, ok := s.fastBatch(context.Background(), body, fastChunkBytes); !ok {
		t.Error("fastBatch left the bench's batch to the checked path")
	} else if n := sentBodies(body, fb.bodies); n != 300 {
		t.Errorf("fastBatch gave the log %d of 300 records' bodies as sent", n)
	}
	for _, body := range []string{
		// A "},{" inside a string: the range cut there does not meet its
		// neighbour.
		` [ {"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"after":{"s":"},{\"source\":{}}"}} ,` +
			"\n" + `{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":2}} ] `,
		`[{"id":"x","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"after":{"s":"},{"}},{"id":"y","source":{"name":"a","table":"t"},"op":"insert","key":{"id":2}}]`,
	} {
		for chunk := 1; chunk < len(body); chunk++ {
			checkFastBatch(t, s, []byte(body), chunk)
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"empty", `[]`},
		{"a repeated id", `[{"id":"x","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}},{"id":"x","source":{"name":"a","table":"t"},"op":"insert","key":{"id":2}}]`},
		{"a reserved source", `[{"source":{"name":"stele","table":"t"},"op":"insert","key":{"id":1}}]`},
		{"not UTF-8", "[{\"source\":{\"name\":\"a\xff\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1},\"after\":{\"s\":\"\xc3\"}}]"},
		{"trailing data", `[{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}}] x`},
		{"a trailing comma", `[{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}},]`},
		{"too many", `[` + strings.Repeat(`{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}},`, 1000) + `{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}}]`},
	} {
		if _, ok := s.fastBatch(context.Background(), []byte(tc.body), 16); ok {
			t.Errorf("%s: fastBatch accepted %.80s", tc.name, tc.body)
		}
	}
}

// FuzzFastBatchMatchesChecked: a batch fastBatch accepts, however it is
// cut into ranges, is accepted by the checked path, with the same records.
func FuzzFastBatchMatchesChecked(f *testing.F) {
	f.Add(benchBody(3), uint16(40))
	f.Add([]byte(`[{"id":"x","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"after":{"s":"},{"}},{"id":"y","source":{"name":"a","table":"t"},"op":"insert","key":{"id":2}}]`), uint16(30))
	f.Add([]byte(` [ {"id":"a","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}} , {"id":"b","source":{"name":"a","table":"t"},"op":"delete","key":{"id":1}} ] `), uint16(9))
	s := fastBatchServer(f, 4)
	f.Fuzz(func(t *testing.T, body []byte, chunk uint16) {
		checkFastBatch(t, s, body, int(chunk)+1)
	})
}

// TestBatchNotUTF8: a batch that is not UTF-8 is answered as it always
// was, though fastBatch is tried before the body's encoding is checked.
func TestBatchNotUTF8(t *testing.T) {
	s := fastBatchServer(t, 1000)
	for _, body := range []string{
		"[{\"source\":{\"name\":\"a\xff\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1}}]",
		"[{\"source\":{\"name\":\"a\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1},\"after\":{\"s\":\"\xed\xa0\x80\"}}]",
		"[{\"source\":{\"name\":\"a\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1}}\xc3]",
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "request body is not valid UTF-8") {
			t.Errorf("%q: answer %d %s", body, w.Code, w.Body)
		}
	}
}
