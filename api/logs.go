package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stele/stele/logstore"
)

// getCheckpoint answers GET /v1/checkpoint with the signed note of a
// checkpoint covering every durable record, signing one first if the latest
// lags, so an auditor never sees a stale view.
func (s *Server) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if s.cfg.Witnessed != nil {
		cp := s.cfg.Witnessed()
		if cp == nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "no checkpoint is cosigned by the witness policy's quorum yet; retry shortly"})
			return
		}
		writeText(w, cp.Note)
		return
	}
	cp := s.cfg.Log.LatestCheckpoint()
	if cp == nil || s.cfg.Log.Size() > cp.Size {
		var err error
		if cp, err = s.cfg.Log.Checkpoint(r.Context()); err != nil {
			// On a tampered or failed log, an older signed checkpoint is
			// still evidence worth serving.
			if cp = s.cfg.Log.LatestCheckpoint(); cp == nil {
				s.internalError(w, r, "checkpoint", err)
				return
			}
			s.log.WarnContext(r.Context(), "serving an older checkpoint: signing a new one failed", "err", err)
		}
	}
	if cp == nil {
		// A log that has signed nothing yet; it signs one at Open, so this
		// is a moment, not a state.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the log has no signed checkpoint yet; retry shortly"})
		return
	}
	writeText(w, cp.Note)
}

// getKey answers GET /v1/log/key with the public note verifier key.
func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	writeText(w, []byte(s.cfg.Log.Keys().VerifierKey+"\n"))
}

func writeText(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

type consistencyResponse struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes []string `json:"hashes"`
}

// consistencyProof answers GET /v1/proof/consistency?from=N&to=M.
func (s *Server) consistencyProof(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "from", "to")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	var from, to uint64
	for _, v := range []struct {
		name string
		dst  *uint64
	}{{"from", &from}, {"to", &to}} {
		text, ok := p[v.name]
		if !ok {
			writeError(w, http.StatusBadRequest, &apiError{Msg: v.name + ": is required", Field: v.name})
			return
		}
		if *v.dst, aerr = parseUint(v.name, text); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
	}
	size := s.cfg.Log.Size()
	switch {
	case from > to:
		writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("from: %d is greater than to %d", from, to), Field: "from"})
		return
	case to > size:
		writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("to: %d is greater than the log size %d", to, size), Field: "to"})
		return
	}
	hashes, err := s.cfg.Log.ConsistencyProof(from, to)
	if err != nil {
		s.internalError(w, r, "consistency proof", err)
		return
	}
	writeJSON(w, http.StatusOK, consistencyResponse{From: from, To: to, Hashes: encodeHashes(hashes)})
}

type healthResponse struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	Size   uint64 `json:"size"`
}

// healthz answers 200 only when the log verified; a load balancer should
// not send traffic to a server still verifying or found tampered.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	status, detail := StatusOK, ""
	if s.cfg.Health != nil {
		status, detail = s.cfg.Health()
	}
	if status == StatusOK {
		if err := s.writeErr(); err != nil {
			// Reads still work, but a load balancer should send writes
			// elsewhere; the detail says what the operator must do.
			status, detail = StatusNotAcceptingWrites, "not accepting writes: the data directory is full; free space and appends resume by themselves"
			if !errors.Is(err, logstore.ErrNoSpace) {
				detail = "not accepting writes after a storage failure; the operator must restart the server"
			}
		}
	}
	code := http.StatusOK
	if status != StatusOK {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, healthResponse{Status: status, Detail: detail, Size: s.cfg.Log.Size()})
}
