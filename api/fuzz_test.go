package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// readRoutes are the read endpoints whose path and query a client controls;
// the fuzzer picks one by its first byte and fills in the rest.
var readRoutes = []string{
	"/v1/records",
	"/v1/records/",
	"/v1/proof/consistency",
	"/v1/entities/crm/customers/",
	"/v1/tables/crm/customers/state",
	"/v1/export/proof",
	"/v1/projections/",
	"/v1/checkpoint",
}

// FuzzReadRequest sends arbitrary paths and query strings (seqs, tree sizes,
// proof ranges, filters, cursors, times) to the read API of a small real
// store. Whatever comes in, the server answers — never a 5xx, never a
// dropped connection — and every error answer is the API's JSON error body.
func FuzzReadRequest(f *testing.F) {
	e := newEnv(f, withExporter) // every route answers as on a real server
	var batch []string
	for i := range 20 {
		batch = append(batch, rec(i%7, ""))
	}
	if r := e.post(f, "application/json", "["+strings.Join(batch, ",")+"]"); r.status != http.StatusCreated {
		f.Fatalf("seed records: %d %s", r.status, r.body)
	}
	for _, seed := range []struct {
		route      byte
		tail, rawQ string
	}{
		{0, "", "source=crm&table=customers&limit=3"},
		{0, "", "after=2026-01-01T00:00:00Z&before=2025-01-01T00:00:00Z"},
		{0, "", "cursor=AAAA&limit=0"},
		{1, "5", "tree_size=3"},
		{1, "18446744073709551615", "tree_size=18446744073709551616"},
		{1, "-1", ""},
		{2, "", "from=3&to=20"},
		{2, "", "from=20&to=3"},
		{2, "", "from=0&to=0"},
		{3, "%7B%22id%22%3A1%7D/history", "limit=2"},
		{3, "%7B%22id%22%3A1%7D/state", "at=2026-13-45T99:99:99Z"},
		{4, "", "at=2026-01-01T00:00:00Z&limit=1"},
		{5, "", "tree_size=7&seqs=1,2,3"},
		{6, "x/%7B%7D", ""},
		{7, "", "a=b&a=c"},
	} {
		f.Add(seed.route, seed.tail, seed.rawQ)
	}
	f.Fuzz(func(t *testing.T, route byte, tail, rawQuery string) {
		path := readRoutes[int(route)%len(readRoutes)] + url.PathEscape(tail)
		if _, err := url.ParseRequestURI(path + "?" + rawQuery); err != nil || strings.IndexFunc(rawQuery, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) >= 0 {
			// net/http itself answers a request line it cannot parse, and
			// a client sends no fragment (nor can it build a URL whose
			// fragment is a bad escape).
			t.Skip("not a request URI a client could send")
		}
		r := e.do(t, http.MethodGet, path+"?"+rawQuery, "", nil)
		if r.status >= 500 {
			t.Fatalf("GET %s?%s: %d %s", path, rawQuery, r.status, r.body)
		}
		if r.status >= 400 && r.status != http.StatusNotFound {
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(r.body, &body); err != nil || body.Error == "" {
				t.Fatalf("GET %s?%s: %d with a body that is not the API's error JSON: %q", path, rawQuery, r.status, r.body)
			}
		}
	})
}
