package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/ui"
)

func withUI(c *api.Config) { c.UI = ui.New() }

func (e *env) getWith(t *testing.T, path string, hdr map[string]string) response {
	t.Helper()
	return e.doWith(t, http.MethodGet, path, hdr, nil)
}

// A browser asking for / gets the web UI; curl and scripts keep the text
// list; the /v1 routes are unchanged around it.
func TestRootServesTheUIToBrowsers(t *testing.T) {
	e := newEnv(t, withUI)
	r := e.getWith(t, "/", map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), `src="/ui/js/app.js"`) {
		t.Fatalf("GET / as a browser: %d %s %.200s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("the app is served without a same-origin-only CSP: %q", csp)
	}
	if r := e.get(t, "/"); !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(string(r.body), "docs/api.md") {
		t.Errorf("GET / as curl: %d %s", r.status, r.header.Get("Content-Type"))
	}
	js := e.get(t, "/ui/js/verify.js")
	if js.status != http.StatusOK || !strings.HasPrefix(js.header.Get("Content-Type"), "text/javascript") || js.header.Get("ETag") == "" {
		t.Errorf("GET /ui/js/verify.js: %d %s etag %q", js.status, js.header.Get("Content-Type"), js.header.Get("ETag"))
	}
	if r := e.getWith(t, "/ui/js/verify.js", map[string]string{"If-None-Match": js.header.Get("ETag")}); r.status != http.StatusNotModified {
		t.Errorf("revalidating an unchanged asset: %d, want 304", r.status)
	}
	if r := e.get(t, "/ui/nope.js"); r.status != http.StatusNotFound {
		t.Errorf("GET /ui/nope.js: %d", r.status)
	}
	if r := e.do(t, http.MethodPost, "/ui/app.css", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/app.css: %d", r.status)
	}
	if r := e.getWith(t, "/v1/nothing", map[string]string{"Accept": "text/html"}); r.status != http.StatusNotFound || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("an unknown /v1 path asked for by a browser: %d %s", r.status, r.header.Get("Content-Type"))
	}
	// Nothing embedded loads from another origin.
	for _, p := range []string{"/ui/index.html", "/ui/playground.html", "/ui/js/app.js", "/ui/app.css"} {
		if b := string(e.get(t, p).body); strings.Contains(b, "https://") || strings.Contains(b, "http://") {
			t.Errorf("%s names another origin", p)
		}
	}
}

func TestWhoami(t *testing.T) {
	e := newEnv(t)
	var w struct {
		Name, Role string
		Open       bool
	}
	r := e.get(t, "/v1/whoami")
	if err := json.Unmarshal(r.body, &w); err != nil || r.status != 200 || !w.Open || w.Role != "admin" {
		t.Errorf("open server: %d %s", r.status, r.body)
	}

	tokens, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Create("carol", auth.RoleAnalyst)
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, func(c *api.Config) { c.Auth = tokens })
	if r := e.get(t, "/v1/whoami"); r.status != http.StatusUnauthorized {
		t.Errorf("no token: %d", r.status)
	}
	r = e.getWith(t, "/v1/whoami", map[string]string{"Authorization": "Bearer " + tok})
	w = struct {
		Name, Role string
		Open       bool
	}{}
	if err := json.Unmarshal(r.body, &w); err != nil || r.status != 200 || w.Open || w.Role != "analyst" || w.Name != "carol" {
		t.Errorf("analyst token: %d %s", r.status, r.body)
	}
	if r := e.getWith(t, "/v1/whoami?x=1", map[string]string{"Authorization": "Bearer " + tok}); r.status != http.StatusBadRequest {
		t.Errorf("unknown parameter: %d", r.status)
	}
}

func TestLineage(t *testing.T) {
	e := newEnv(t)
	var recs []string
	for i := range 5 {
		recs = append(recs, `{"source":{"name":"crm","table":"customers"},"op":"insert","key":{"id":`+string(rune('1'+i))+`},"after":{"id":1},"occurred_at":"2026-01-0`+string(rune('1'+i))+`T00:00:00Z"}`)
	}
	recs = append(recs, `{"source":{"name":"app","table":"orders"},"op":"insert","key":{"id":1},"occurred_at":"2025-01-01T00:00:00Z"}`)
	if r := e.post(t, "application/json", "["+strings.Join(recs, ",")+"]"); r.status != http.StatusCreated {
		t.Fatalf("append: %d %s", r.status, r.body)
	}
	r := e.get(t, "/v1/lineage")
	var got struct {
		Size   uint64 `json:"size"`
		Tables []struct {
			Source, Table string
			Records       uint64
			LastSeq       uint64 `json:"last_seq"`
			LastChange    string `json:"last_change"`
		}
		Projections []any `json:"projections"`
		Stream      string
	}
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
		t.Fatalf("GET /v1/lineage: %d %s", r.status, r.body)
	}
	if got.Size != 6 || len(got.Tables) != 2 || got.Projections == nil || got.Stream != "" {
		t.Fatalf("lineage: %s", r.body)
	}
	// (source, table) order: app before crm.
	a, c := got.Tables[0], got.Tables[1]
	if a.Source != "app" || a.Records != 1 || a.LastSeq != 5 || a.LastChange != "2025-01-01T00:00:00Z" {
		t.Errorf("app/orders: %+v", a)
	}
	if c.Source != "crm" || c.Table != "customers" || c.Records != 5 || c.LastSeq != 4 || c.LastChange != "2026-01-05T00:00:00Z" {
		t.Errorf("crm/customers: %+v", c)
	}
	if r := e.get(t, "/v1/lineage?depth=2"); r.status != http.StatusBadRequest {
		t.Errorf("unknown parameter: %d", r.status)
	}
	e.setHealth(api.StatusTampered, "seq 3")
	if r := e.get(t, "/v1/lineage"); r.status != http.StatusServiceUnavailable {
		t.Errorf("tampered log: %d", r.status)
	}
}
