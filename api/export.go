package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/stele/stele"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
)

// Exporter is what the API needs to serve exports (package export).
type Exporter interface {
	Write(ctx context.Context, opts export.Options, data, proof io.Writer) (*export.Summary, error)
}

// TreeSizeHeader names the response header that tells which tree size an
// export covers, so its proof can be fetched for exactly the same records.
const TreeSizeHeader = "Stele-Tree-Size"

// exportData answers GET /v1/export: the records a filter selects, as a
// JSON Lines, CSV or Parquet file streamed in ascending seq.
func (s *Server) exportData(w http.ResponseWriter, r *http.Request) { s.serveExport(w, r, false) }

// exportProof answers GET /v1/export/proof: the proof sidecar of the export
// with the same parameters (docs/api.md, "Exports").
func (s *Server) exportProof(w http.ResponseWriter, r *http.Request) { s.serveExport(w, r, true) }

func (s *Server) serveExport(w http.ResponseWriter, r *http.Request, proof bool) {
	p, aerr := params(r.URL.RawQuery, withFilterParams("format", "tree_size", "view")...)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	inClear, aerr := exportView(principal(r.Context()).Role, p["view"], proof)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	f, aerr := parseFilter(p)
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	format := export.JSONL
	if v, ok := p["format"]; ok {
		var err error
		if format, err = export.ParseFormat(v); err != nil {
			writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("format: %q is not one of jsonl, csv, parquet", v), Field: "format"})
			return
		}
	}
	var size uint64
	_, sizeGiven := p["tree_size"]
	if sizeGiven {
		if size, aerr = parseUint("tree_size", p["tree_size"]); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
	}
	if s.cfg.Exporter == nil {
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "exports are not available on this server"})
		return
	}
	cp, err := s.freshCheckpoint(r.Context())
	if err != nil {
		s.internalError(w, r, "checkpoint", err)
		return
	}
	if s.cfg.Witnessed != nil {
		// An export is proven against what the witnesses cosigned, so
		// `stele verify --export --witness-policy` can check it offline.
		if cp = s.cfg.Witnessed(); cp == nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "no checkpoint is cosigned by the witness policy's quorum yet; retry shortly"})
			return
		}
	}
	if !sizeGiven {
		size = cp.Size
	} else if size > cp.Size {
		writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("tree_size: %d is greater than the log size %d", size, cp.Size), Field: "tree_size"})
		return
	}
	lw := &lazyWriter{w: w, start: func(h http.Header) {
		h.Set(TreeSizeHeader, strconv.FormatUint(size, 10))
		h.Set("X-Content-Type-Options", "nosniff")
		name := "stele-export-" + strconv.FormatUint(size, 10) + "." + string(format)
		if inClear {
			h.Set(ViewHeader, "clear")
			name = "stele-export-" + strconv.FormatUint(size, 10) + ".clear." + string(format)
		}
		if proof {
			h.Set("Content-Type", "application/json")
			name += export.ProofSuffix
		} else {
			h.Set("Content-Type", format.ContentType())
		}
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	}}
	opts := export.Options{Format: format, Filter: f, Size: size, Checkpoint: cp, VerifierKey: s.cfg.Log.Keys().VerifierKey}
	var data, proofW io.Writer = lw, nil
	if proof {
		data, proofW = nil, lw
	}
	var gate *privacy.GatedWriter
	if inClear {
		rd := s.reads(r)
		opts.Reveal = rd.Reveal
		gate = rd.Writer(r.Context(), lw)
		data = gate
	}
	_, err = s.cfg.Exporter.Write(r.Context(), opts, data, proofW)
	if err == nil && gate != nil {
		err = gate.Flush()
	}
	if err != nil {
		if gate != nil {
			gate.Discard()
		}
		if !lw.started {
			s.exportFailed(w, r, err)
			return
		}
		// The status line has gone out: cut the connection so the client
		// sees a broken transfer, never a short file that looks whole.
		s.log.ErrorContext(r.Context(), "export failed while streaming", "err", err)
		panic(http.ErrAbortHandler)
	}
	if !lw.started {
		// Nothing was written (an empty JSON Lines export): still answer.
		lw.begin()
	}
}

// ViewHeader is set to "clear" on an export that shows personal data in
// clear (view=clear), which its proof does not cover.
const ViewHeader = "Stele-View"

// exportView reads the view parameter: "stored" (the default) exports the
// records as the leaves hold them, verifiable with the proof; "clear"
// shows personal data in clear to the roles that may see it. A clear file
// cannot be verified (its rows are no longer the stored bytes), so it has
// no proof.
func exportView(role auth.Role, view string, proof bool) (inClear bool, aerr *apiError) {
	switch view {
	case "", "stored":
		return false, nil
	case "clear":
	default:
		return false, &apiError{Msg: fmt.Sprintf("view: %q is not stored or clear", view), Field: "view"}
	}
	if proof {
		return false, &apiError{Msg: "view: a clear export has no proof: the proof covers the records as stored, which clear rows no longer match; " +
			"fetch the export and its proof without view to verify them", Field: "view"}
	}
	if !role.SeesClear() {
		var allowed []auth.Role
		for _, r := range auth.Roles {
			if r.SeesClear() {
				allowed = append(allowed, r)
			}
		}
		return false, &apiError{Status: http.StatusForbidden, Field: "view",
			Msg: "view=clear: role " + string(role) + " may not export personal data in clear (allowed: " + joinRoles(allowed) +
				"); without view the export keeps the stored, sealed form"}
	}
	return true, nil
}

func (s *Server) exportFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, privacy.ErrAccessNotRecorded):
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: accessNotRecordedMsg})
	case errors.Is(err, export.ErrSize):
		writeError(w, http.StatusBadRequest, &apiError{Msg: "tree_size: " + err.Error(), Field: "tree_size"})
	case errors.Is(err, export.ErrUnrepresentable):
		writeError(w, http.StatusUnprocessableEntity, &apiError{Msg: err.Error(), Field: "format"})
	case errors.Is(err, logstore.ErrTampered):
		s.log.ErrorContext(r.Context(), "stored record failed its integrity check during an export", "err", err)
		writeError(w, http.StatusInternalServerError, &apiError{Msg: "a stored record failed its integrity check; run `stele verify`"})
	default:
		s.queryFailed(w, r, err)
	}
}

// freshCheckpoint returns a signed checkpoint covering every durable record.
func (s *Server) freshCheckpoint(ctx context.Context) (*stele.Checkpoint, error) {
	cp := s.cfg.Log.LatestCheckpoint()
	if cp != nil && cp.Size >= s.cfg.Log.Size() {
		return cp, nil
	}
	return s.cfg.Log.Checkpoint(ctx)
}

// lazyWriter sends the status line and headers with the first byte, so an
// error found before any output (a bad filter the engine refuses, say) can
// still be answered with a proper status.
type lazyWriter struct {
	w       http.ResponseWriter
	start   func(http.Header)
	started bool
}

func (l *lazyWriter) begin() {
	l.started = true
	l.start(l.w.Header())
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.begin()
	}
	return l.w.Write(p)
}
