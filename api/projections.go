package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/stele/stele/projection"
)

// Projections is what the API needs from the projection store
// (projection.Store): read-only access to the read models.
type Projections interface {
	List() []projection.Info
	Page(name, after string, hasAfter bool, limit int) (*projection.Page, error)
	Get(name, key string) (projection.Entry, projection.Info, error)
}

// defaultProjectionLimit is the page size when no limit is given.
const defaultProjectionLimit = 100

type projectionsResponse struct {
	Projections []projection.Info `json:"projections"`
}

// listProjections answers GET /v1/projections.
func (s *Server) listProjections(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	out := projectionsResponse{Projections: []projection.Info{}}
	if s.cfg.Projections != nil {
		out.Projections = s.cfg.Projections.List()
	}
	writeJSON(w, http.StatusOK, out)
}

type projectionPage struct {
	Name       string             `json:"name"`
	Applied    uint64             `json:"applied"`
	Entries    []projection.Entry `json:"entries"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

// projectionEntries answers GET /v1/projections/{name}?limit=&cursor=:
// entries in key order (bytewise), a page at a time.
func (s *Server) projectionEntries(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "limit", "cursor")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	limit, aerr := parseLimit(p["limit"])
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if limit == 0 {
		limit = defaultProjectionLimit
	}
	var after string
	cursor, hasAfter := p["cursor"]
	if hasAfter {
		// The cursor is the last key of the previous page, base64url so any
		// key survives a query string.
		k, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			writeError(w, http.StatusBadRequest, &apiError{Msg: "cursor: not a cursor this server issued (want the next_cursor of a previous page)", Field: "cursor"})
			return
		}
		after = string(k)
	}
	name := r.PathValue("name")
	if s.cfg.Projections == nil {
		unknownProjection(w, name)
		return
	}
	page, err := s.cfg.Projections.Page(name, after, hasAfter, limit)
	if err != nil {
		s.projectionFailed(w, r, name, err)
		return
	}
	out := projectionPage{Name: name, Applied: page.Info.Applied, Entries: page.Entries}
	if out.Entries == nil {
		out.Entries = []projection.Entry{}
	}
	if page.More {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(page.Entries[len(page.Entries)-1].Key))
	}
	writeJSON(w, http.StatusOK, out)
}

type projectionEntry struct {
	Name    string          `json:"name"`
	Applied uint64          `json:"applied"`
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
}

// projectionEntry answers GET /v1/projections/{name}/{key}; a '/' inside
// the key must be sent as %2F.
func (s *Server) projectionEntry(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	name := r.PathValue("name")
	if s.cfg.Projections == nil {
		unknownProjection(w, name)
		return
	}
	e, info, err := s.cfg.Projections.Get(name, r.PathValue("key"))
	if err != nil {
		s.projectionFailed(w, r, name, err)
		return
	}
	writeJSON(w, http.StatusOK, projectionEntry{Name: name, Applied: info.Applied, Key: e.Key, Value: e.Value})
}

func unknownProjection(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, &apiError{Msg: "no projection named " + quoteString(name) + "; GET /v1/projections lists them"})
}

func (s *Server) projectionFailed(w http.ResponseWriter, r *http.Request, name string, err error) {
	switch {
	case errors.Is(err, projection.ErrUnknown):
		unknownProjection(w, name)
	case errors.Is(err, projection.ErrNotFound):
		// The key is not repeated: it may be personal data.
		writeError(w, http.StatusNotFound, &apiError{Msg: "projection " + quoteString(name) + " holds no value for that key"})
	default:
		s.internalError(w, r, "projection read", err)
	}
}

func quoteString(s string) string { return string(quote(s)) }
