package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/auth"
)

// Issue 18, item 5: what a newcomer's first requests get back.

// NDJSON sent as application/json names the NDJSON content type.
func TestNDJSONAsJSONNamesTheNDJSONType(t *testing.T) {
	e := newEnv(t)
	r := e.post(t, "application/json", rec(1, "")+"\n"+rec(2, "")+"\n")
	msg, _ := r.json(t)["error"].(string)
	if r.status != http.StatusBadRequest || !strings.Contains(msg, "unexpected data after the JSON object") || !strings.Contains(msg, "application/x-ndjson") || !strings.Contains(msg, "JSON array") {
		t.Errorf("NDJSON as application/json: %d %s", r.status, r.body)
	}
	// A single object with trailing garbage gets no such hint.
	r = e.post(t, "application/json", rec(1, "")+" x")
	if msg, _ := r.json(t)["error"].(string); r.status != http.StatusBadRequest || strings.Contains(msg, "ndjson") {
		t.Errorf("trailing garbage: %d %s", r.status, r.body)
	}
	if e.store.Size() != 0 {
		t.Fatal("a refused body was appended")
	}
}

// curl -d's form encoding gets a 415 that says which header to add.
func TestFormEncodedBodyGetsAHint(t *testing.T) {
	e := newEnv(t)
	for _, ct := range []string{"application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		r := e.post(t, ct, rec(1, ""))
		msg, _ := r.json(t)["error"].(string)
		if r.status != http.StatusUnsupportedMediaType || !strings.Contains(msg, "curl") || !strings.Contains(msg, "-H 'Content-Type: application/json'") {
			t.Errorf("%s: %d %s", ct, r.status, r.body)
		}
	}
	r := e.post(t, "text/plain", rec(1, ""))
	if msg, _ := r.json(t)["error"].(string); r.status != http.StatusUnsupportedMediaType || !strings.Contains(msg, "application/x-ndjson (one record a line)") {
		t.Errorf("text/plain: %d %s", r.status, r.body)
	}
}

// GET / points to the docs instead of a 404.
func TestRootPointsToTheDocs(t *testing.T) {
	e := newEnv(t)
	r := e.get(t, "/")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(string(r.body), "docs/api.md") || !strings.Contains(string(r.body), "POST /v1/records") {
		t.Errorf("GET /: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r := e.get(t, "/nothing"); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "GET /") {
		t.Errorf("GET /nothing: %d %s", r.status, r.body)
	}
}

// The op error reads the same in a record, a search and the stream.
func TestOpErrorWordedOnce(t *testing.T) {
	e := newEnv(t)
	const want = `"upsert" is not one of insert, update, delete, truncate, snapshot, ddl, event`
	r := e.post(t, "application/json", `{"source":{"name":"crm","table":"t"},"op":"upsert","key":{"id":1}}`)
	ingest, _ := r.json(t)["error"].(string)
	r = e.get(t, "/v1/records?op=upsert")
	search, _ := r.json(t)["error"].(string)
	r = e.get(t, "/v1/stream?op=upsert")
	stream, _ := r.json(t)["error"].(string)
	for name, msg := range map[string]string{"ingest": ingest, "search": search, "stream": stream} {
		if !strings.Contains(msg, want) {
			t.Errorf("%s: %q, want it to contain %q", name, msg, want)
		}
	}
}

// Only the record paths say records are never updated or deleted.
func TestMethodNotAllowedWording(t *testing.T) {
	e := newEnv(t)
	for path, never := range map[string]bool{"/v1/records": true, "/v1/records/0": true, "/v1/checkpoint": false, "/v1/log/key": false, "/healthz": false} {
		r := e.do(t, http.MethodDelete, path, "", nil)
		msg, _ := r.json(t)["error"].(string)
		if r.status != http.StatusMethodNotAllowed || strings.Contains(msg, "never updated or deleted") != never || !strings.Contains(msg, path) {
			t.Errorf("DELETE %s: %d %q", path, r.status, msg)
		}
	}
}

// Issue 18, item 3: a 401 says whether a token was sent.
func TestUnauthorizedSaysWhetherATokenWasSent(t *testing.T) {
	dir := t.TempDir()
	toks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Create("ops", auth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *api.Config) { c.Auth = toks })
	for _, tc := range []struct{ header, want, not string }{
		{"", "no bearer token was sent", "refused"},
		{"Bearer stele_wrong", "the bearer token sent was refused", "token create"},
		{"Basic eDp5", "no bearer token was sent", "refused"},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/records", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := response{status: resp.StatusCode, header: resp.Header, body: body}
		msg, _ := r.json(t)["error"].(string)
		if r.status != http.StatusUnauthorized || !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
			t.Errorf("Authorization %q: %d %q", tc.header, r.status, msg)
		}
	}
}
