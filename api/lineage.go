package api

import (
	"context"
	"net/http"
	"time"

	"github.com/stele/stele/index"
)

// TableLister is what GET /v1/lineage needs from the query engine; an
// engine without it answers 404 there.
type TableLister interface {
	Tables(ctx context.Context) ([]index.TableStats, error)
}

type lineageTable struct {
	Source     string    `json:"source"`
	Table      string    `json:"table"`
	Records    uint64    `json:"records"`
	LastSeq    uint64    `json:"last_seq"`
	LastChange time.Time `json:"last_change"`
}

type lineageProjection struct {
	Name    string `json:"name"`
	Filter  string `json:"filter,omitempty"`
	Applied uint64 `json:"applied"`
	Keys    int64  `json:"keys"`
}

type lineageResponse struct {
	Size        uint64              `json:"size"`
	Tables      []lineageTable      `json:"tables"`
	Projections []lineageProjection `json:"projections"`
	// Stream is the NATS subject prefix records are published under, when
	// the lineage stream runs.
	Stream string `json:"stream,omitempty"`
}

// lineage answers GET /v1/lineage: the tables the log holds, with their
// record counts and newest change, and the read models and stream that
// consume them. It names tables and counts, never a record's content, so
// it has nothing for the privacy wrapper to reveal.
func (s *Server) lineage(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if !s.queryAvailable(w) {
		return
	}
	tl, ok := s.cfg.Query.(TableLister)
	if !ok {
		writeError(w, http.StatusNotFound, &apiError{Msg: "this server's query engine cannot list tables"})
		return
	}
	tables, err := tl.Tables(r.Context())
	if err != nil {
		s.queryFailed(w, r, err)
		return
	}
	resp := lineageResponse{Size: s.cfg.Log.Size(), Tables: make([]lineageTable, 0, len(tables)), Projections: []lineageProjection{}, Stream: s.cfg.StreamSubjects}
	for _, t := range tables {
		resp.Tables = append(resp.Tables, lineageTable{Source: t.Source, Table: t.Table, Records: t.Records, LastSeq: t.LastSeq, LastChange: t.LastChange.UTC()})
	}
	if s.cfg.Projections != nil {
		for _, p := range s.cfg.Projections.List() {
			resp.Projections = append(resp.Projections, lineageProjection{Name: p.Name, Filter: p.Filter, Applied: p.Applied, Keys: p.Keys})
		}
	}
	writeJSON(w, http.StatusOK, resp)
}
