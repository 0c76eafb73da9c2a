package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
)

// piiParam takes a personal-data search (?pii.<field>=<value>) out of the
// query string and returns its blind-index token and the other parameters.
// Only roles that see personal data in clear may search by it: a match
// tells whether a person appears in the log.
func (s *Server) piiParam(r *http.Request) (token []byte, rest string, _ *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, "", &apiError{Msg: "malformed query string: " + err.Error()}
	}
	var field, value string
	for name, vals := range q {
		f, ok := strings.CutPrefix(name, "pii.")
		if !ok {
			continue
		}
		if field != "" {
			return nil, "", &apiError{Msg: name + ": only one pii.<field> search per request", Field: name}
		}
		if f == "" || len(vals) != 1 || vals[0] == "" {
			return nil, "", &apiError{Msg: name + ": needs a field name and exactly one non-empty value", Field: name}
		}
		field, value = f, vals[0]
		delete(q, name)
	}
	if field == "" {
		return nil, r.URL.RawQuery, nil
	}
	if s.cfg.Privacy == nil {
		return nil, "", &apiError{Msg: "pii." + field + ": personal-data search needs schemas with x-searchable fields; this server has no privacy layer", Field: "pii." + field}
	}
	if p := principal(r.Context()); !p.Role.SeesClear() {
		return nil, "", &apiError{Status: http.StatusForbidden, Msg: "pii." + field + ": role " + string(p.Role) + " may not search by personal data"}
	}
	return s.cfg.Privacy.BlindToken(field, value), q.Encode(), nil
}

type eraseBody struct {
	Reason string `json:"reason"`
}

// eraseSubject answers POST /v1/subjects/{id}/erase[?group=G]: destroy the
// subject's keys and append a signed receipt.
func (s *Server) eraseSubject(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "group")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	var body eraseBody
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "could not read the request body"})
		return
	}
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			writeError(w, http.StatusBadRequest, &apiError{Msg: "body: expected {\"reason\": \"...\"}: " + err.Error(), Field: "reason"})
			return
		}
	}
	id := r.PathValue("id")
	if id == "" {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "id: the subject id is empty", Field: "id"})
		return
	}
	res, err := s.cfg.Privacy.Erase(r.Context(), privacy.EraseRequest{Subject: id, Group: p["group"], By: principal(r.Context()), Reason: body.Reason})
	switch {
	case errors.Is(err, privacy.ErrUnknownGroup):
		writeError(w, http.StatusBadRequest, &apiError{Msg: "group: " + err.Error(), Field: "group"})
		return
	case errors.Is(err, logstore.ErrNoSpace) || isNoSpace(err):
		s.log.WarnContext(r.Context(), "erase refused: the disk is full", "err", err)
		writeError(w, http.StatusInsufficientStorage, &apiError{Msg: "the disk is full: the erasure is not finished and no receipt was written; the operator must free space in the data directory, then send the same request again (a retried erasure is safe: keys already destroyed stay destroyed)"})
		return
	case err != nil:
		// The subject id may be personal data: it is not logged.
		s.internalError(w, r, "erase", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
