package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// listRecords answers GET /v1/records: a filtered search, newest first
// unless order=asc.
func (s *Server) listRecords(w http.ResponseWriter, r *http.Request) {
	blind, rest, aerr := s.piiParam(r)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	p, aerr := params(rest, withFilterParams("limit", "cursor", "order")...)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	f, aerr := parseFilter(p)
	f.Blind = blind
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	page, aerr := pageRequest(p, query.Desc)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if !s.queryAvailable(w) {
		return
	}
	rd := s.reads(r)
	res, err := s.cfg.Query.Records(revealing(r.Context(), rd), f, page)
	if err != nil {
		s.queryFailed(w, r, err)
		return
	}
	if !s.commitRead(w, r, rd) {
		return
	}
	writeRaw(w, http.StatusOK, appendPage(nil, res))
}

// withFilterParams returns the query parameters of a record filter, which
// the search and the export share so both accept exactly the same input,
// followed by extra.
func withFilterParams(extra ...string) []string {
	return append([]string{"source", "table", "key", "actor", "op", "since", "until", "cause"}, extra...)
}

// parseFilter reads a record filter from the query parameters.
func parseFilter(p map[string]string) (query.Filter, *apiError) {
	f := query.Filter{Source: p["source"], Table: p["table"], Key: p["key"], Actor: p["actor"], Cause: p["cause"]}
	if v, ok := p["op"]; ok {
		f.Op = record.Op(v)
		if !f.Op.Valid() {
			return f, &apiError{Msg: fmt.Sprintf("op: %q is not one of %s", v, record.OpList()), Field: "op"}
		}
	}
	if f.Key != "" && (f.Source == "" || f.Table == "") {
		return f, &apiError{Msg: "key: requires source and table (a key is unique only within its table)", Field: "key"}
	}
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v, ok := p[tp.name]; ok {
			t, aerr := parseTime(tp.name, v)
			if aerr != nil {
				return f, aerr
			}
			*tp.dst = t
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		// since is inclusive and until exclusive: equal ones select nothing.
		return f, &apiError{Msg: "until: must be after since (since is inclusive, until exclusive)", Field: "until"}
	}
	return f, nil
}

// pageRequest reads limit, cursor and (when the endpoint allows it) order.
func pageRequest(p map[string]string, order query.Order) (query.PageRequest, *apiError) {
	var page query.PageRequest
	limit, aerr := parseLimit(p["limit"])
	if aerr != nil {
		return page, aerr
	}
	switch v := p["order"]; v {
	case "":
	case "asc":
		order = query.Asc
	case "desc":
		order = query.Desc
	default:
		return page, &apiError{Msg: fmt.Sprintf("order: %q is not asc or desc", v), Field: "order"}
	}
	return query.PageRequest{Order: order, Limit: limit, Cursor: p["cursor"], Budget: pageBudget(maxPageBytes)}, nil
}

// maxPageBytes bounds the records one REST page holds (record.BodySize):
// 1,000 records of up to 1 MiB each would otherwise sit in memory whole.
// A page that reaches it ends early with a next_cursor.
const maxPageBytes = 16 << 20

// pageBudget is a query.PageRequest.Budget of max bytes for one page.
func pageBudget(max int) func(int) bool {
	spent := 0
	return func(n int) bool {
		spent += n
		return spent < max
	}
}

// appendPage renders {"records":[...],"next_cursor":...} by appending each
// record's canonical JSON, which is also how it is hashed: no reflection,
// and the bytes a client sees are the ones it can check against a leaf.
func appendPage(dst []byte, page *query.Page) []byte {
	dst = append(dst, `{"records":[`...)
	for i, rec := range page.Records {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = record.AppendJSON(dst, rec)
	}
	dst = append(dst, ']')
	if page.NextCursor != "" {
		dst = append(dst, `,"next_cursor":`...)
		dst, _ = jsontext.AppendQuote(dst, page.NextCursor)
	}
	return append(dst, "}\n"...)
}

func (s *Server) queryFailed(w http.ResponseWriter, r *http.Request, err error) {
	var fe *record.FieldError
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, &apiError{Msg: fe.Error(), Field: fe.Field})
	case keysUnavailable(w, err):
	case errors.Is(err, query.ErrIndexRebuilding):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the query index was found damaged and is being rebuilt from the log; retry in a few seconds"})
	case errors.Is(err, query.ErrBadCursor):
		writeError(w, http.StatusBadRequest, &apiError{Msg: "cursor: not a cursor this server issued for this query", Field: "cursor"})
	case errors.Is(err, context.Canceled):
		// The client left; nobody reads the answer.
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "request cancelled"})
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "query took too long; narrow the filter or lower the limit"})
	default:
		s.internalError(w, r, "query", err)
	}
}

// recordResponse is the body of GET /v1/records/{seq}.
type recordResponse struct {
	Record     json.RawMessage `json:"record"`
	Leaf       string          `json:"leaf"`
	LeafHash   string          `json:"leaf_hash"`
	Proof      inclusion       `json:"proof"`
	Checkpoint string          `json:"checkpoint,omitempty"`
	// Caused, on an event record, is where the changes it caused are
	// listed (GET /v1/records?cause=<id>): from the event to its changes
	// in one step, as cause.record_id leads from a change to its event.
	Caused string `json:"caused,omitempty"`
}

type inclusion struct {
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	Hashes    []string `json:"hashes"`
}

// getRecord answers GET /v1/records/{seq}: the record, its stored bytes and
// an inclusion proof, so a client can verify it without trusting us. Without
// tree_size the proof is against a checkpoint sent along, signed if needed.
func (s *Server) getRecord(w http.ResponseWriter, r *http.Request) {
	seq, aerr := parseUint("seq", r.PathValue("seq"))
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	p, aerr := params(r.URL.RawQuery, "tree_size", "view")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	size := s.cfg.Log.Size()
	if seq >= size {
		writeError(w, http.StatusNotFound, &apiError{Msg: fmt.Sprintf("no record with seq %d: the log holds %d records", seq, size)})
		return
	}
	var cp *stele.Checkpoint
	treeSize := uint64(0)
	if v, ok := p["tree_size"]; ok {
		if treeSize, aerr = parseUint("tree_size", v); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
		if treeSize <= seq || treeSize > size {
			writeError(w, http.StatusBadRequest, &apiError{
				Msg:   fmt.Sprintf("tree_size: %d must be greater than seq %d and at most the log size %d", treeSize, seq, size),
				Field: "tree_size"})
			return
		}
	} else if s.cfg.Witnessed != nil {
		// Under a witness policy the proof is against what the quorum
		// cosigned, as GET /v1/checkpoint serves, never a checkpoint the
		// witnesses have not seen.
		if cp = s.cfg.Witnessed(); cp == nil || cp.Size <= seq {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, &apiError{Msg: fmt.Sprintf("no checkpoint cosigned by the witness policy's quorum covers seq %d yet; retry shortly, or pass tree_size", seq)})
			return
		}
		treeSize = cp.Size
	} else {
		if cp = s.cfg.Log.LatestCheckpoint(); cp == nil || cp.Size <= seq {
			var err error
			if cp, err = s.cfg.Log.Checkpoint(r.Context()); err != nil {
				s.internalError(w, r, "checkpoint", err)
				return
			}
		}
		treeSize = cp.Size
	}
	raw, err := s.cfg.Log.ReadRaw(seq)
	if err != nil {
		s.readFailed(w, r, seq, err)
		return
	}
	rec, err := record.Decode(raw)
	if err != nil {
		s.readFailed(w, r, seq, err)
		return
	}
	hashes, err := s.cfg.Log.InclusionProof(seq, treeSize)
	if err != nil {
		s.readFailed(w, r, seq, err)
		return
	}
	// view=stored serves the record exactly as the leaf holds it (sealed
	// fields sealed), which is what an outside verifier compares.
	view := p["view"]
	if view != "" && view != "stored" && view != "role" {
		writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("view: %q is not stored or role", view), Field: "view"})
		return
	}
	if view != "stored" {
		rd := s.reads(r)
		if err := rd.Reveal(r.Context(), rec); err != nil {
			if !keysUnavailable(w, err) {
				s.internalError(w, r, "reveal", err)
			}
			return
		}
		if !s.commitRead(w, r, rd) {
			return
		}
	}
	resp := recordResponse{
		Record:   record.AppendJSON(nil, rec),
		Leaf:     base64.StdEncoding.EncodeToString(raw),
		LeafHash: base64.StdEncoding.EncodeToString(rfc6962.DefaultHasher.HashLeaf(raw)),
		Proof:    inclusion{LeafIndex: seq, TreeSize: treeSize, Hashes: encodeHashes(hashes)},
	}
	if cp != nil {
		resp.Checkpoint = string(cp.Note)
	}
	if rec.Op == record.OpEvent && rec.ID != "" {
		resp.Caused = "/v1/records?cause=" + url.QueryEscape(rec.ID)
		w.Header().Set("Link", "<"+resp.Caused+">; rel=\"caused\"")
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) readFailed(w http.ResponseWriter, r *http.Request, seq uint64, err error) {
	switch {
	case errors.Is(err, logstore.ErrNotFound):
		writeError(w, http.StatusNotFound, &apiError{Msg: "no record with seq " + strconv.FormatUint(seq, 10)})
	case errors.Is(err, logstore.ErrTampered), errors.Is(err, record.ErrFormat):
		// Never serve what may be tampered bytes as evidence.
		s.log.ErrorContext(r.Context(), "stored record failed its integrity check", "seq", seq, "err", err)
		writeError(w, http.StatusInternalServerError, &apiError{Msg: fmt.Sprintf("stored record %d failed its integrity check; run `stele verify`", seq)})
	default:
		s.internalError(w, r, "read", err)
	}
}

func encodeHashes(hashes [][]byte) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}
