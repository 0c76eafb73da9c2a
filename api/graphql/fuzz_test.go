package graphql_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stele/stele/api/graphql"
)

// syncBuffer collects the handler's log across the fuzzer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// FuzzGraphQL sends arbitrary GraphQL requests — query documents,
// variables, operation names, as a POST body built from them, as a raw
// POST body, or as GET parameters — to the handler over a small real
// store. Whatever comes in, the handler answers: never a panic (in a
// resolver, where gqlgen would hide it as an internal error, or anywhere
// else), never a 5xx (the handler has no documented one; the API's 503s
// for a tampered log or an unrecorded read are package api's), never an
// internal error, and every answer is a GraphQL JSON response within the
// response size limit.
func FuzzGraphQL(f *testing.F) {
	logs := &syncBuffer{}
	const maxResponse = 64 << 10
	e := newEnv(f, graphql.Options{}) // for its store and engine
	e.history(f)
	h := graphql.New(graphql.Options{Log: e.store, Query: e.engine, Logger: slog.New(slog.NewTextHandler(logs, nil)), MaxResponseBytes: maxResponse})
	for _, s := range []struct {
		mode            byte
		query, vars, op string
	}{
		{0, `{ records(first: 3) { nodes { seq id op key before after changed actor tx { id } source { name table } occurredAt } pageInfo { endCursor } } }`, ``, ``},
		{0, `query Q($f: RecordFilter, $n: Int) { records(filter: $f, first: $n, order: ASC) { nodes { seq } } }`, `{"f": {"source": "crm", "since": "2026-01-01T00:00:00Z", "op": "update"}, "n": 5}`, `Q`},
		{0, `query($k: String!) { entityHistory(source: "crm", table: "customers", key: $k) { nodes { seq keyString } } entityState(source: "crm", table: "customers", key: $k) { state seq } }`, `{"k": "1"}`, ``},
		{0, `{ tableState(source: "crm", table: "customers", at: "2026-01-02T00:00:00Z", first: 2) { at nodes { key state } pageInfo { hasNextPage endCursor } } }`, ``, ``},
		{0, `{ checkpoint { size rootHash note } inclusionProof(seq: 3) { leafHash hashes checkpoint { origin } } consistencyProof(from: 2, to: 50) { hashes } }`, ``, ``},
		{0, `query($s: Uint64!) { record(seq: $s) { seq } }`, `{"s": 18446744073709551615}`, ``},
		{0, `{ records(after: "AAAA", first: 0) { nodes { seq } } }`, `{"x": [1, {"y": null}]}`, `nope`},
		{0, `{ __schema { types { name fields { name type { kind ofType { name } } } } } }`, ``, ``},
		{0, `{ a: __typename b: __typename ...F } fragment F on Query { c: checkpoint { size } }`, ``, ``},
		{0, `query A { checkpoint { size } } query B { record(seq: 1) { id } }`, ``, `B`},
		{1, `{"query": "{ checkpoint { size } }", "variables": "not an object"}`, ``, ``},
		{1, `{"query": 7}`, ``, ``},
		{1, `[{"query": "{ checkpoint { size } }"}]`, ``, ``},
		{2, `{ records(first: 1) { nodes { seq } } }`, `{"a": 1}`, ``},
		{2, `mutation { x }`, ``, ``},
	} {
		f.Add(s.mode, s.query, s.vars, s.op)
	}
	f.Fuzz(func(t *testing.T, mode byte, query, vars, op string) {
		var req *http.Request
		switch mode % 3 {
		case 0: // a POST built from the parts; vars as JSON when they are
			body := map[string]any{"query": query, "operationName": op}
			if json.Valid([]byte(vars)) {
				body["variables"] = json.RawMessage(vars)
			} else if vars != "" {
				body["variables"] = vars
			}
			b, err := json.Marshal(body)
			if err != nil {
				t.Skip("not encodable as JSON")
			}
			req = httptest.NewRequest(http.MethodPost, graphql.Path, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
		case 1: // query is the raw body
			req = httptest.NewRequest(http.MethodPost, graphql.Path, strings.NewReader(query))
			req.Header.Set("Content-Type", "application/json")
		case 2:
			q := url.Values{"query": {query}}
			if vars != "" {
				q.Set("variables", vars)
			}
			if op != "" {
				q.Set("operationName", op)
			}
			req = httptest.NewRequest(http.MethodGet, graphql.Path+"?"+q.Encode(), nil)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if log := logs.take(); log != "" {
			t.Fatalf("the handler logged an internal failure for %q (vars %q, op %q):\n%s", query, vars, op, log)
		}
		body := w.Body.Bytes()
		if w.Code >= 500 {
			t.Fatalf("status %d for %q (vars %q, op %q): %s", w.Code, query, vars, op, body)
		}
		if len(body) > maxResponse+4096 {
			t.Fatalf("answer of %d bytes exceeds the %d-byte limit", len(body), maxResponse)
		}
		if w.Code == http.StatusMethodNotAllowed || w.Code == http.StatusUnsupportedMediaType {
			return
		}
		var r struct {
			Data   json.RawMessage `json:"data"`
			Errors []struct {
				Message    string         `json:"message"`
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(body, &r); err != nil || (len(r.Data) == 0 && len(r.Errors) == 0) {
			t.Fatalf("status %d, not a GraphQL response (%v): %.500s", w.Code, err, body)
		}
		for _, ge := range r.Errors {
			if ge.Extensions["code"] == graphql.CodeInternal {
				t.Fatalf("internal error for %q (vars %q): %s", query, vars, ge.Message)
			}
		}
	})
}
