package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/stele/stele/query"
)

// entityHistory answers GET /v1/entities/{source}/{table}/{key}/history,
// oldest change first. The key is the canonical key string
// (record.KeyString); a '/' inside it must be sent as %2F.
func (s *Server) entityHistory(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "limit", "cursor")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	page, aerr := pageRequest(p, query.Asc)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if !s.queryAvailable(w) {
		return
	}
	rd := s.reads(r)
	res, err := s.cfg.Query.History(revealing(r.Context(), rd), r.PathValue("source"), r.PathValue("table"), r.PathValue("key"), page)
	if err != nil {
		s.queryFailed(w, r, err)
		return
	}
	if !s.commitRead(w, r, rd) {
		return
	}
	writeRaw(w, http.StatusOK, appendPage(nil, res))
}

type stateResponse struct {
	Source     string    `json:"source"`
	Table      string    `json:"table"`
	Key        string    `json:"key"`
	At         time.Time `json:"at"`
	State      rawOrNull `json:"state"`
	Seq        uint64    `json:"seq"`
	OccurredAt time.Time `json:"occurred_at"`
}

// entityState answers GET /v1/entities/{source}/{table}/{key}/state?at=T:
// the unit as it was at T (default now).
func (s *Server) entityState(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "at")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	at := s.cfg.Now()
	if v, ok := p["at"]; ok {
		if at, aerr = parseTime("at", v); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
	}
	if !s.queryAvailable(w) {
		return
	}
	rd := s.reads(r)
	st, err := s.cfg.Query.StateAt(revealing(r.Context(), rd), r.PathValue("source"), r.PathValue("table"), r.PathValue("key"), at)
	if errors.Is(err, query.ErrNotFound) {
		// The key is not repeated: it may be personal data.
		writeError(w, http.StatusNotFound, &apiError{Msg: "the entity did not exist at " + at.UTC().Format(time.RFC3339Nano)})
		return
	}
	if err != nil {
		s.queryFailed(w, r, err)
		return
	}
	if !s.commitRead(w, r, rd) {
		return
	}
	writeJSON(w, http.StatusOK, stateResponse{
		Source: st.Source, Table: st.Table, Key: st.Key, At: st.At.UTC(),
		State: rawOrNull(st.State), Seq: st.Seq, OccurredAt: st.OccurredAt.UTC(),
	})
}

// rawOrNull is a JSON value written verbatim, or null when empty.
type rawOrNull []byte

// MarshalJSON implements json.Marshaler.
func (v rawOrNull) MarshalJSON() ([]byte, error) {
	if len(v) == 0 {
		return []byte("null"), nil
	}
	return v, nil
}
