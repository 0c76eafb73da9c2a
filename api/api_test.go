package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/api"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

var testNow = time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)

type env struct {
	srv    *httptest.Server
	store  *logstore.Store
	health atomic.Pointer[[2]string]
}

type option func(*api.Config)

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: store}
	e.setHealth(api.StatusOK, "")
	cfg := api.Config{
		Log:      store,
		Query:    query.New(store, ix),
		Health:   func() (string, string) { h := e.health.Load(); return h[0], h[1] },
		Registry: prometheus.NewRegistry(),
		Now:      func() time.Time { return testNow },
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.srv = httptest.NewServer(api.New(cfg))
	t.Cleanup(func() {
		e.srv.Close()
		if err := store.Close(); err != nil {
			t.Error(err)
		}
		if err := ix.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func (e *env) setHealth(status, detail string) { e.health.Store(&[2]string{status, detail}) }

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("status %d, body %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

func (e *env) do(t testing.TB, method, path, contentType string, body []byte) response {
	t.Helper()
	var hdr map[string]string
	if contentType != "" {
		hdr = map[string]string{"Content-Type": contentType}
	}
	return e.doWith(t, method, path, hdr, body)
}

// doWith sends a request with the given headers and reads the whole answer.
func (e *env) doWith(t testing.TB, method, path string, hdr map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.send(t, req)
}

// send sends req and reads the whole answer.
func (e *env) send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) get(t *testing.T, path string) response { return e.do(t, http.MethodGet, path, "", nil) }

// postChunked posts a JSON body of unknown length (a reader other than
// the bytes and strings readers), which the client sends chunked.
func (e *env) postChunked(t testing.TB, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/records", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return e.send(t, req)
}

func (e *env) post(t testing.TB, contentType, body string) response {
	return e.do(t, http.MethodPost, "/v1/records", contentType, []byte(body))
}

// rec returns a valid record object; extra members are spliced in.
func rec(key int, extra string) string {
	s := fmt.Sprintf(`{"source":{"name":"crm","table":"customers"},"op":"update","key":{"id":%d},"after":{"id":%d,"n":"<x&y>"}`, key, key)
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

type appendedJSON struct {
	Records []stele.Appended `json:"records"`
}

func mustAppend(t *testing.T, e *env, contentType, body string) []stele.Appended {
	t.Helper()
	r := e.post(t, contentType, body)
	if r.status != http.StatusCreated {
		t.Fatalf("POST: status %d, body %s", r.status, r.body)
	}
	var a appendedJSON
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatal(err)
	}
	// The index follows the log asynchronously; queries in these tests
	// expect to see what was just appended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.store.WaitIndexed(ctx, e.store.Size()); err != nil {
		t.Fatal(err)
	}
	return a.Records
}

func seqs(as []stele.Appended) []uint64 {
	out := make([]uint64, len(as))
	for i, a := range as {
		out[i] = a.Seq
	}
	return out
}

func TestIngestFormats(t *testing.T) {
	e := newEnv(t)
	if got := seqs(mustAppend(t, e, "application/json", rec(1, ""))); fmt.Sprint(got) != "[0]" {
		t.Fatalf("single: seqs %v", got)
	}
	if got := seqs(mustAppend(t, e, "application/json; charset=utf-8", "["+rec(2, "")+",\n "+rec(3, "")+"]")); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("array: seqs %v", got)
	}
	nd := rec(4, "") + "\n\n" + rec(5, "") + "\r\n  \n" + rec(6, "") // blank lines and CRLF ignored, no final newline
	if got := seqs(mustAppend(t, e, "application/x-ndjson", nd)); fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("ndjson: seqs %v", got)
	}
	if got := seqs(mustAppend(t, e, "", rec(7, ""))); fmt.Sprint(got) != "[6]" {
		t.Fatalf("no content type: seqs %v", got)
	}
	if e.store.Size() != 7 {
		t.Fatalf("log size %d, want 7", e.store.Size())
	}
	// occurred_at defaults to the configured clock; kind to http.
	r, err := e.store.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OccurredAt.Equal(testNow) || r.Source.Kind != "http" {
		t.Fatalf("defaults not applied: occurred_at %v kind %q", r.OccurredAt, r.Source.Kind)
	}
}

func TestIngestRejectsBadInput(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 4096; c.MaxBatch = 3 })
	mustAppend(t, e, "application/json", rec(1, ""))
	big := `{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":1},"after":{"blob":"` + strings.Repeat("x", 5000) + `"}}`
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		status      int
		field       string // "-" for absent
		index       int    // -1 for absent
		msg         string // substring of the error
	}{
		{"atomic batch", "application/json", "[" + rec(2, "") + "," + rec(3, "") + `,{"source":{"name":"crm","table":"c"},"op":"insert"}]`, 400, "key", 2, "key: is required"},
		{"malformed single", "application/json", `{"source":`, 400, "source", -1, "malformed JSON"},
		{"malformed array item", "application/json", "[" + rec(2, "") + `,{"op":]`, 400, "", 1, "malformed JSON"},
		{"malformed after array", "application/json", "[" + rec(2, "") + `] x`, 400, "-", -1, "after the JSON array"},
		{"malformed ndjson line", "application/x-ndjson", rec(2, "") + "\n{nope\n", 400, "", 1, "malformed JSON"},
		{"wrong type", "application/json", rec(2, `"occurred_at":5`), 400, "occurred_at", -1, "RFC 3339"},
		{"wrong type in batch", "application/json", "[" + rec(2, `"changed":"n"`) + "]", 400, "changed", 0, "expected an array"},
		{"duplicate member", "application/json", "[" + rec(2, `"op":"insert"`) + "]", 400, "", 0, "duplicate"},
		{"missing required", "application/json", `{"source":{"name":"crm"},"op":"insert","key":{"id":1}}`, 400, "source.table", -1, "required"},
		{"unknown field", "application/json", rec(2, `"colour":"red"`), 400, "colour", -1, "unknown field"},
		{"seq sent", "application/x-ndjson", rec(2, `"seq":3`), 400, "seq", 0, "assigned by the log"},
		{"not an object", "application/json", `[1]`, 400, "", 0, "expected a JSON object"},
		{"invalid utf-8", "application/json", rec(2, "\"cause\":{\"t\":\"\xff\xfe\"}"), 400, "-", -1, "UTF-8"},
		{"duplicate id in batch", "application/json", "[" + rec(2, `"id":"a"`) + "," + rec(3, `"id":"b"`) + "," + rec(4, `"id":"a"`) + "]", 400, "id", 2, "record 0"},
		{"duplicate derived id", "application/x-ndjson", rec(2, `"tx":{"position":"0/1"}`) + "\n" + rec(2, `"tx":{"position":"0/1"}`), 400, "id", 1, "record 0"},
		{"reserved source", "application/json", "[" + rec(2, "") + `,{"source":{"name":"stele","table":"erasures"},"op":"event","key":{"receipt":"x"}}]`, 400, "source.name", 1, "reserved"},
		{"empty body", "application/json", "  ", 400, "-", -1, "empty"},
		{"empty array", "application/json", "[]", 400, "-", -1, "no records"},
		{"empty ndjson", "application/x-ndjson", "\n\n", 400, "-", -1, "no records"},
		{"unsupported content type", "text/plain", rec(2, ""), 415, "-", -1, "Content-Type"},
		{"unsupported charset", "application/json; charset=latin1", rec(2, ""), 415, "-", -1, "charset"},
		{"oversized body", "application/json", big, 413, "-", -1, "4096-byte limit"},
		{"too many records", "application/json", "[" + rec(2, "") + "," + rec(3, "") + "," + rec(4, "") + "," + rec(5, "") + "]", 413, "-", -1, "more than 3"},
		{"too many ndjson", "application/x-ndjson", rec(2, "") + "\n" + rec(3, "") + "\n" + rec(4, "") + "\n" + rec(5, ""), 413, "-", -1, "more than 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, tc.contentType, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			m := r.json(t)
			msg, _ := m["error"].(string)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q does not contain %q", msg, tc.msg)
			}
			field, hasField := m["field"]
			switch {
			case tc.field == "-" && hasField:
				t.Errorf("unexpected field %v", field)
			case tc.field != "-" && field != tc.field:
				t.Errorf("field %v, want %q", field, tc.field)
			}
			idx, hasIndex := m["index"]
			switch {
			case tc.index < 0 && hasIndex:
				t.Errorf("unexpected index %v", idx)
			case tc.index >= 0 && fmt.Sprint(idx) != fmt.Sprint(tc.index):
				t.Errorf("index %v, want %d", idx, tc.index)
			}
			if e.store.Size() != 1 {
				t.Fatalf("log grew to %d records on a rejected request", e.store.Size())
			}
		})
	}
}

func TestIngestNeverEchoesRecordContents(t *testing.T) {
	e := newEnv(t)
	r := e.post(t, "application/json", `{"source":{"name":"crm","table":"c"},"op":"insert","key":{"email":"secret@example.com"},"after":{"email":"secret@example.com"},"changed":["nope"],"before":{"email":"old-secret@example.com"}}`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d", r.status)
	}
	if bytes.Contains(r.body, []byte("secret")) {
		t.Fatalf("error echoes record contents: %s", r.body)
	}
}

func TestResubmitReturnsFirstSeq(t *testing.T) {
	e := newEnv(t)
	first := mustAppend(t, e, "application/json", "["+rec(1, `"id":"order-1"`)+","+rec(2, `"tx":{"position":"0/16B3748","index":0}`)+"]")
	if first[0].Duplicate || first[1].Duplicate {
		t.Fatalf("first submission marked duplicate: %+v", first)
	}
	size := e.store.Size()
	again := mustAppend(t, e, "application/json", "["+rec(1, `"id":"order-1"`)+","+rec(3, "")+","+rec(2, `"tx":{"position":"0/16B3748","index":0}`)+"]")
	if !again[0].Duplicate || again[0].Seq != first[0].Seq || again[0].ID != "order-1" {
		t.Fatalf("client id resubmitted: got %+v, want duplicate of %+v", again[0], first[0])
	}
	if !again[2].Duplicate || again[2].Seq != first[1].Seq || again[2].ID != first[1].ID {
		t.Fatalf("derived id resubmitted: got %+v, want duplicate of %+v", again[2], first[1])
	}
	if again[1].Duplicate || e.store.Size() != size+1 {
		t.Fatalf("log size %d, want %d (one new record)", e.store.Size(), size+1)
	}
	r := e.post(t, "application/json", rec(1, `"id":"order-1"`))
	if !bytes.Contains(r.body, []byte(`"duplicate":true`)) {
		t.Fatalf("body %s lacks duplicate:true", r.body)
	}
	if e.store.Size() != size+1 {
		t.Fatal("resubmission grew the log")
	}
}

type recordResp struct {
	Record   json.RawMessage `json:"record"`
	Leaf     string          `json:"leaf"`
	LeafHash string          `json:"leaf_hash"`
	Proof    struct {
		LeafIndex uint64   `json:"leaf_index"`
		TreeSize  uint64   `json:"tree_size"`
		Hashes    []string `json:"hashes"`
	} `json:"proof"`
	Checkpoint *string `json:"checkpoint"`
}

func decodeHashes(t *testing.T, in []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(in))
	for i, s := range in {
		h, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = h
	}
	return out
}

func appendN(t *testing.T, e *env, n int) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(rec(i, `"actor":{"id":"u-`+fmt.Sprint(i%3)+`"}`) + "\n")
	}
	mustAppend(t, e, "application/x-ndjson", b.String())
}

func (e *env) verifier(t *testing.T) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(e.store.Keys().VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGetRecordWithProof(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 10)
	for _, seq := range []uint64{0, 3, 9} {
		r := e.get(t, fmt.Sprintf("/v1/records/%d", seq))
		if r.status != http.StatusOK {
			t.Fatalf("seq %d: status %d %s", seq, r.status, r.body)
		}
		var got recordResp
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Checkpoint == nil {
			t.Fatal("no checkpoint without tree_size")
		}
		cp, err := stele.OpenCheckpoint([]byte(*got.Checkpoint), e.verifier(t))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size <= seq || got.Proof.TreeSize != cp.Size || got.Proof.LeafIndex != seq {
			t.Fatalf("checkpoint size %d, proof %+v for seq %d", cp.Size, got.Proof, seq)
		}
		leaf, err := base64.StdEncoding.DecodeString(got.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		leafHash := rfc6962.DefaultHasher.HashLeaf(leaf)
		if base64.StdEncoding.EncodeToString(leafHash) != got.LeafHash {
			t.Fatal("leaf_hash is not the hash of leaf")
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, cp.Size, leafHash, decodeHashes(t, got.Proof.Hashes), cp.Root); err != nil {
			t.Fatalf("seq %d: inclusion: %v", seq, err)
		}
		decoded, err := record.Decode(leaf)
		if err != nil || decoded.Seq != seq {
			t.Fatalf("leaf decodes to seq %v: %v", decoded, err)
		}
		if !bytes.Equal(got.Record, record.AppendJSON(nil, decoded)) {
			t.Fatalf("served record\n%s\nis not the leaf's\n%s", got.Record, record.AppendJSON(nil, decoded))
		}
	}
}

func TestGetRecordTreeSize(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 10)
	r := e.get(t, "/v1/records/3?tree_size=5")
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	var got recordResp
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Checkpoint != nil || got.Proof.TreeSize != 5 || got.Proof.LeafIndex != 3 {
		t.Fatalf("proof %+v checkpoint %v", got.Proof, got.Checkpoint)
	}
	root5, err := e.store.RootAt(5)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := base64.StdEncoding.DecodeString(got.Leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 3, 5, rfc6962.DefaultHasher.HashLeaf(leaf), decodeHashes(t, got.Proof.Hashes), root5); err != nil {
		t.Fatalf("inclusion at size 5: %v", err)
	}
	for _, tc := range []struct {
		path   string
		status int
		field  string
	}{
		{"/v1/records/3?tree_size=3", 400, "tree_size"},
		{"/v1/records/3?tree_size=11", 400, "tree_size"},
		{"/v1/records/3?tree_size=x", 400, "tree_size"},
		{"/v1/records/3?size=5", 400, "size"},
		{"/v1/records/abc", 400, "seq"},
		{"/v1/records/-1", 400, "seq"},
		{"/v1/records/10", 404, ""},
		{"/v1/records/18446744073709551615", 404, ""},
	} {
		r := e.get(t, tc.path)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.path, r.status, tc.status, r.body)
			continue
		}
		if f, _ := r.json(t)["field"].(string); f != tc.field {
			t.Errorf("%s: field %q, want %q", tc.path, f, tc.field)
		}
	}
}

func TestConsistencyProof(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 10)
	r := e.get(t, "/v1/proof/consistency?from=4&to=10")
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	var got struct {
		From, To uint64
		Hashes   []string
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	root4, _ := e.store.RootAt(4)
	root10, _ := e.store.RootAt(10)
	if got.From != 4 || got.To != 10 {
		t.Fatalf("from %d to %d", got.From, got.To)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 4, 10, decodeHashes(t, got.Hashes), root4, root10); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	if r := e.get(t, "/v1/proof/consistency?from=0&to=10"); r.status != 200 || !bytes.Contains(r.body, []byte(`"hashes":[]`)) {
		t.Fatalf("from=0: %d %s", r.status, r.body)
	}
	for _, tc := range []struct{ query, field string }{
		{"from=5&to=4", "from"},
		{"from=4&to=11", "to"},
		{"to=4", "from"},
		{"from=1", "to"},
		{"from=a&to=4", "from"},
		{"from=1&to=4&x=1", "x"},
	} {
		r := e.get(t, "/v1/proof/consistency?"+tc.query)
		if r.status != 400 {
			t.Errorf("%s: status %d", tc.query, r.status)
			continue
		}
		if f := r.json(t)["field"]; f != tc.field {
			t.Errorf("%s: field %v, want %s", tc.query, f, tc.field)
		}
	}
}

func TestCheckpointAndKey(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 3)
	// Asked right after an append, the checkpoint must already cover it.
	r := e.get(t, "/v1/checkpoint")
	if r.status != 200 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
	}
	cp, err := stele.OpenCheckpoint(r.body, e.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != e.store.Size() {
		t.Fatalf("checkpoint size %d, log size %d", cp.Size, e.store.Size())
	}
	r = e.get(t, "/v1/log/key")
	if r.status != 200 || string(r.body) != e.store.Keys().VerifierKey+"\n" {
		t.Fatalf("key: %d %q", r.status, r.body)
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 2)
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodDelete, "/v1/records/1", "GET, HEAD"},
		{http.MethodPut, "/v1/records/1", "GET, HEAD"},
		{http.MethodPatch, "/v1/records/1", "GET, HEAD"},
		{http.MethodPut, "/v1/records", "GET, HEAD, POST"},
		{http.MethodDelete, "/v1/records", "GET, HEAD, POST"},
		{http.MethodPost, "/v1/checkpoint", "GET, HEAD"},
	} {
		r := e.do(t, tc.method, tc.path, "application/json", []byte(rec(1, "")))
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"))
		}
		if _, ok := r.json(t)["error"]; !ok {
			t.Errorf("%s %s: no JSON error", tc.method, tc.path)
		}
	}
	if e.store.Size() != 2 {
		t.Fatal("a refused method changed the log")
	}
	for _, p := range []string{"/v2/records", "/v1/records/1/extra", "/v1/nothing", "/v1/records/"} {
		r := e.get(t, p)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d", p, r.status)
			continue
		}
		if _, ok := r.json(t)["error"]; !ok {
			t.Errorf("%s: no JSON error", p)
		}
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 2)
	r := e.get(t, "/healthz")
	if m := r.json(t); r.status != 200 || m["status"] != "ok" || fmt.Sprint(m["size"]) != "2" {
		t.Fatalf("ok: %d %s", r.status, r.body)
	}
	e.setHealth(api.StatusVerifying, "checking")
	r = e.get(t, "/healthz")
	if m := r.json(t); r.status != 503 || m["status"] != "verifying" || m["detail"] != "checking" {
		t.Fatalf("verifying: %d %s", r.status, r.body)
	}
	// While verifying, reads and writes are served.
	mustAppend(t, e, "application/json", rec(9, ""))
	if r := e.get(t, "/v1/records/2"); r.status != 200 {
		t.Fatalf("read while verifying: %d", r.status)
	}
}

func TestTamperedGating(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 3)
	e.setHealth(api.StatusTampered, "first bad seq 1")
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/records"},
		{"GET", "/v1/records"},
		{"GET", "/v1/records/1"},
		{"GET", "/v1/proof/consistency?from=1&to=2"},
		{"GET", "/v1/entities/crm/customers/1/history"},
		{"GET", "/v1/entities/crm/customers/1/state"},
		{"GET", "/healthz"},
	} {
		r := e.do(t, tc.method, tc.path, "application/json", []byte(rec(1, "")))
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: status %d", tc.method, tc.path, r.status)
			continue
		}
		if tc.path != "/healthz" {
			if msg, _ := r.json(t)["error"].(string); msg != "log failed verification: first bad seq 1" {
				t.Errorf("%s %s: error %q", tc.method, tc.path, msg)
			}
		}
	}
	if e.store.Size() != 3 {
		t.Fatal("append accepted on a tampered log")
	}
	for _, p := range []string{"/v1/checkpoint", "/v1/log/key"} {
		if r := e.get(t, p); r.status != 200 {
			t.Errorf("%s: status %d on a tampered log", p, r.status)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 3)
	mustAppend(t, e, "application/json", rec(0, `"id":"x"`))
	mustAppend(t, e, "application/json", rec(0, `"id":"x"`)) // duplicate: not counted
	r := e.get(t, "/metrics")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	for _, want := range []string{
		"stele_records_appended_total 4",
		`stele_http_requests_total{code="201",route="POST /v1/records"} 3`,
		`stele_http_request_duration_seconds_count{route="POST /v1/records"} 3`,
		"stele_log_size 4",
		"stele_checkpoint_size",
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// overloadedLog answers every append with the log's pushback error.
type overloadedLog struct {
	*logstore.Store
	err error
}

func (o overloadedLog) Append(context.Context, []*record.Record) ([]stele.Appended, error) {
	return nil, o.err
}

func TestAppendErrors(t *testing.T) {
	for _, tc := range []struct {
		err        error
		retryAfter string
	}{
		{fmt.Errorf("queue: %w", stele.ErrOverloaded), "1"},
		// A cluster without a NATS quorum or a writer.
		{fmt.Errorf("%w: publish: nats: timeout", stele.ErrUnavailable), "2"},
		{logstore.ErrClosed, ""},
		{fmt.Errorf("%w: disk full", logstore.ErrFailed), ""},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			e := newEnv(t, func(c *api.Config) { c.Log = overloadedLog{Store: c.Log.(*logstore.Store), err: tc.err} })
			r := e.post(t, "application/json", rec(1, ""))
			if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != tc.retryAfter {
				t.Fatalf("status %d Retry-After %q", r.status, r.header.Get("Retry-After"))
			}
			r.json(t)
		})
	}
}

func TestOversizedChunkedBody(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 1024 })
	// Without a Content-Length the limit is enforced while reading.
	r := e.postChunked(t, io.MultiReader(strings.NewReader("["+rec(1, "")), strings.NewReader(strings.Repeat(" ", 2048)+"]")))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", r.status)
	}
	if e.store.Size() != 0 {
		t.Fatal("oversized body appended")
	}
}
