package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, p string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
	return w
}

func TestServesTheAppAndThePlayground(t *testing.T) {
	h := New()
	for p, want := range map[string]string{"/": `src="/ui/js/app.js"`, PlaygroundPath: `src="/ui/js/playground.js"`, "/ui/js/verify.js": "verifyInclusion"} {
		w := get(t, h, p)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) || w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: %d, CSP %q, body lacks %q", p, w.Code, w.Header().Get("Content-Security-Policy"), want)
		}
	}
	if w := get(t, h, "/ui/js/missing.js"); w.Code != http.StatusNotFound {
		t.Errorf("a missing asset: %d", w.Code)
	}
	if w := get(t, h, "/ui/../ui.go"); w.Code != http.StatusNotFound {
		t.Errorf("a path outside the assets: %d", w.Code)
	}
}

// Every module a page or a module imports, and every asset a page links,
// is embedded: a typo would otherwise show only in a browser.
func TestEveryReferencedAssetIsEmbedded(t *testing.T) {
	imports := regexp.MustCompile(`(?m)(?:^import .* from|^export .* from|import\() *['"]([^'"]+)['"]`)
	links := regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		var refs []string
		switch path.Ext(p) {
		case ".js":
			for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
				refs = append(refs, path.Join(path.Dir(p), m[1]))
			}
		case ".html":
			for _, m := range links.FindAllStringSubmatch(string(b), -1) {
				refs = append(refs, "static/"+strings.TrimPrefix(m[1], AssetPrefix))
			}
		}
		for _, r := range refs {
			if _, err := fs.Stat(static, r); err != nil {
				t.Errorf("%s refers to %s, which is not embedded", p, r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
