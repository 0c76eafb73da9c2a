// Package ui is Stele's web interface: a catalog of the log in the browser
// (search, entity timelines, state at an instant, proofs checked in the
// page, the privacy pages, the lineage graph) and the GraphQL playground.
//
// The pages are plain HTML, CSS and ES modules embedded in the binary: no
// bundler, no npm step, nothing fetched from another origin at run time, so
// `go run ./cmd/stele demo` works on a fresh clone and the UI works on a
// network with no way out. The pages read only through the public HTTP API
// with the viewer's token, so every read passes the same privacy wrapper as
// curl's, and the page verifies proofs itself instead of trusting the
// server's word (docs/ui.md).
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// AssetPrefix is the path under which the assets are served; the app
// itself is served at "/".
const AssetPrefix = "/ui/"

// PlaygroundPath is the GraphQL playground's page.
const PlaygroundPath = "/graphql/playground"

//go:embed static
var static embed.FS

// csp allows nothing but this origin: an injected script or a record
// value rendered by mistake as HTML could otherwise send a token away.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

type asset struct {
	body  []byte
	etag  string
	ctype string
}

// Handler serves the app at "/" (any path that is not an asset gets the
// app's page, whose router reads the fragment), the assets under
// AssetPrefix and the playground at PlaygroundPath.
type Handler struct {
	assets map[string]asset // by URL path
}

// New loads the embedded assets. It panics if they are missing, which
// only a broken build can cause.
func New() *Handler {
	h := &Handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if path.Ext(p) == ".js" {
			// The platform's MIME table may lack it, and a module script
			// served as anything else is refused by the browser.
			ct = "text/javascript; charset=utf-8"
		}
		h.assets[AssetPrefix+strings.TrimPrefix(p, "static/")] = asset{body: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`, ctype: ct}
		return nil
	})
	if err != nil {
		panic("ui: embedded assets: " + err.Error())
	}
	if _, ok := h.assets[AssetPrefix+"index.html"]; !ok {
		panic("ui: embedded assets lack index.html")
	}
	return h
}

// ServeHTTP implements http.Handler for GET and HEAD; the API routes only
// those here.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/":
		p = AssetPrefix + "index.html"
	case p == PlaygroundPath:
		p = AssetPrefix + "playground.html"
	}
	a, ok := h.assets[p]
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("no such asset: " + p + "\n"))
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Type", a.ctype)
	// Revalidated on every load (cheap with the ETag), so a new binary's
	// assets are never mixed with an old one's from the cache.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
