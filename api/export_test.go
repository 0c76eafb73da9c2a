package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
)

func withExporter(c *api.Config) {
	c.Exporter = export.New(c.Log.(*logstore.Store), c.Query.(*query.Engine))
}

// fetchExport downloads an export and its proof as a client would: the
// data first, then the proof for the tree size the data response names.
func fetchExport(t *testing.T, e *env, query string) (data, proof []byte, size string) {
	t.Helper()
	r := e.get(t, "/v1/export?"+query)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/export?%s: %d %s", query, r.status, r.body)
	}
	size = r.header.Get(api.TreeSizeHeader)
	if size == "" {
		t.Fatalf("no %s header", api.TreeSizeHeader)
	}
	p := e.get(t, "/v1/export/proof?"+query+"&tree_size="+size)
	if p.status != http.StatusOK {
		t.Fatalf("GET /v1/export/proof: %d %s", p.status, p.body)
	}
	return r.body, p.body, size
}

func TestExportEndpoint(t *testing.T) {
	e := newEnv(t, withExporter)
	appendN(t, e, 12) // actors u-0, u-1, u-2 in turn
	vkey := e.store.Keys().VerifierKey
	for _, format := range []string{"jsonl", "csv", "parquet"} {
		for _, q := range []string{"format=" + format, "format=" + format + "&actor=u-1", "format=" + format + "&source=crm&table=customers&key=4"} {
			data, proof, size := fetchExport(t, e, q)
			if size != "12" {
				t.Errorf("%s: tree size %s, want 12", q, size)
			}
			rep, err := export.Verify(context.Background(), bytes.NewReader(data), int64(len(data)), bytes.NewReader(proof), export.VerifyOptions{VerifierKey: vkey})
			if err != nil {
				t.Fatalf("%s: verify: %v", q, err)
			}
			want := map[bool]uint64{true: 12, false: 4}[!strings.Contains(q, "&")]
			if strings.Contains(q, "key=") {
				want = 1
			}
			if rep.Records != want {
				t.Errorf("%s: %d records, want %d", q, rep.Records, want)
			}
		}
	}
	// Records appended between the two requests are in neither file: the
	// proof is for the tree size the data response named.
	r := e.get(t, "/v1/export?format=csv&actor=u-2")
	appendN(t, e, 3)
	p := e.get(t, "/v1/export/proof?format=csv&actor=u-2&tree_size="+r.header.Get(api.TreeSizeHeader))
	if _, err := export.Verify(context.Background(), bytes.NewReader(r.body), int64(len(r.body)), bytes.NewReader(p.body), export.VerifyOptions{VerifierKey: vkey}); err != nil {
		t.Fatalf("export across appends: %v", err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("CSV content type %q", ct)
	}
}

func TestExportBadParams(t *testing.T) {
	e := newEnv(t, withExporter)
	appendN(t, e, 3)
	for q, field := range map[string]string{
		"format=xlsx":      "format",
		"op=rename":        "op",
		"key=1&source=crm": "key",
		"since=yesterday":  "since",
		"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z": "until",
		"since=2026-01-02T00:00:00Z&until=2026-01-02T00:00:00Z": "until",
		"tree_size=4":  "tree_size",
		"tree_size=-1": "tree_size",
		"sorce=crm":    "sorce",
		"limit=10":     "limit",
	} {
		for _, path := range []string{"/v1/export?", "/v1/export/proof?"} {
			r := e.get(t, path+q)
			if r.status != http.StatusBadRequest {
				t.Errorf("%s%s: status %d, want 400 (%s)", path, q, r.status, r.body)
				continue
			}
			if got := r.json(t)["field"]; got != field {
				t.Errorf("%s%s: field %v, want %q (%s)", path, q, got, field, r.body)
			}
		}
	}
	if r := e.do(t, http.MethodPost, "/v1/export", "application/json", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/export: %d", r.status)
	}
}

func TestExportUnavailableWithoutExporter(t *testing.T) {
	e := newEnv(t)
	if r := e.get(t, "/v1/export"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("no exporter: %d %s", r.status, r.body)
	}
}
