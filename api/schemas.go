package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/stele/stele/schema"
)

// SchemaRegistry is what the API needs from the schema registry
// (schema.Registry).
type SchemaRegistry interface {
	// Put registers the next version of subject; created is false when the
	// schema equals the latest version, whose number is returned.
	Put(ctx context.Context, subject string, schemaJSON []byte) (version int, created bool, err error)
	Latest(subject string) (*schema.Schema, error)
	Version(subject string, n int) (*schema.Schema, error)
	Subjects() []string
}

// maxSchemaBytes bounds a schema document: schemas are small, and each one
// is compiled and kept in memory.
const maxSchemaBytes = 1 << 20

func (s *Server) schemaRoutes() {
	s.handle("GET /v1/schemas", s.gated(s.authorize(anyRole, s.listSchemas)))
	s.handle("/v1/schemas", methodNotAllowed("GET, HEAD"))
	s.handle("PUT /v1/schemas/{subject}", s.gated(s.authorize(adminRole, s.putSchema)))
	s.handle("GET /v1/schemas/{subject}", s.gated(s.authorize(anyRole, s.getSchema)))
	s.handle("/v1/schemas/{subject}", methodNotAllowed("GET, HEAD, PUT"))
	s.handle("GET /v1/schemas/{subject}/versions", s.gated(s.authorize(anyRole, s.listSchemaVersions)))
	s.handle("/v1/schemas/{subject}/versions", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/schemas/{subject}/versions/{n}", s.gated(s.authorize(anyRole, s.getSchemaVersion)))
	s.handle("/v1/schemas/{subject}/versions/{n}", methodNotAllowed("GET, HEAD"))
}

// schemaJSON is the body of GET /v1/schemas/{subject}[/versions/{n}].
type schemaJSON struct {
	Subject string          `json:"subject"`
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

// putSchema registers a new version: 201 when created, 200 when the schema
// equals the latest version (PUT is idempotent), 400 invalid, 409
// incompatible with the latest version.
func (s *Server) putSchema(w http.ResponseWriter, r *http.Request) {
	if aerr := schemaContentType(r.Header.Get("Content-Type")); aerr != nil {
		writeError(w, http.StatusUnsupportedMediaType, aerr)
		return
	}
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSchemaBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, &apiError{Msg: fmt.Sprintf("schema is larger than the %d-byte limit", maxSchemaBytes)})
			return
		}
		writeError(w, http.StatusBadRequest, &apiError{Msg: "reading the request body failed: " + err.Error()})
		return
	}
	subject := r.PathValue("subject")
	version, created, err := s.cfg.Schemas.Put(r.Context(), subject, body)
	var se *schema.SchemaError
	var ie *schema.IncompatibleError
	switch {
	case err == nil:
		status := http.StatusOK
		if created {
			status = http.StatusCreated
			s.log.InfoContext(r.Context(), "schema registered", "subject", subject, "version", version)
			// A schema decides what is sealed: registering one is an
			// admin action, recorded in the log like every other.
			if !s.recordAdmin(w, r, "schema registered", map[string]any{"subject": subject, "version": version}) {
				return
			}
		}
		writeJSON(w, status, map[string]int{"version": version})
	case errors.Is(err, schema.ErrInvalidSubject):
		writeError(w, http.StatusBadRequest, &apiError{Msg: err.Error(), Field: "subject"})
	case errors.As(err, &se):
		writeError(w, http.StatusBadRequest, &apiError{Msg: err.Error(), Field: se.Pointer})
	case errors.As(err, &ie):
		writeError(w, http.StatusConflict, &apiError{Msg: err.Error(), Field: ie.Pointer})
	default:
		s.internalError(w, r, "schema registration", err)
	}
}

func schemaContentType(ct string) *apiError {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return &apiError{Msg: "malformed Content-Type header: " + err.Error()}
	}
	if mt != "application/json" && mt != "application/schema+json" {
		return &apiError{Msg: "unsupported Content-Type " + strconv.Quote(mt) + ": send application/json or application/schema+json"}
	}
	return nil
}

func (s *Server) getSchema(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	sc, err := s.cfg.Schemas.Latest(r.PathValue("subject"))
	s.writeSchema(w, r, sc, err)
}

func (s *Server) getSchemaVersion(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("version %q: want a positive integer", r.PathValue("n")), Field: "version"})
		return
	}
	sc, err := s.cfg.Schemas.Version(r.PathValue("subject"), n)
	s.writeSchema(w, r, sc, err)
}

func (s *Server) writeSchema(w http.ResponseWriter, r *http.Request, sc *schema.Schema, err error) {
	if errors.Is(err, schema.ErrNotFound) {
		writeError(w, http.StatusNotFound, &apiError{Msg: err.Error()})
		return
	}
	if err != nil {
		s.internalError(w, r, "schema read", err)
		return
	}
	writeJSON(w, http.StatusOK, schemaJSON{Subject: sc.Subject, Version: sc.Version, Schema: sc.Raw})
}

func (s *Server) listSchemaVersions(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	sc, err := s.cfg.Schemas.Latest(r.PathValue("subject"))
	if err != nil {
		s.writeSchema(w, r, nil, err)
		return
	}
	versions := make([]int, sc.Version)
	for i := range versions {
		versions[i] = i + 1
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": sc.Subject, "versions": versions})
}

func (s *Server) listSchemas(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	type entry struct {
		Subject       string `json:"subject"`
		LatestVersion int    `json:"latest_version"`
	}
	out := []entry{}
	for _, subj := range s.cfg.Schemas.Subjects() {
		if sc, err := s.cfg.Schemas.Latest(subj); err == nil {
			out = append(out, entry{subj, sc.Version})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subjects": out})
}
