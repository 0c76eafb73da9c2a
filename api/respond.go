package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"syscall"

	"github.com/go-json-experiment/json/jsontext"
)

// apiError is the body of every error answer: {"error": ..., "field": ...,
// "index": ...}. Field names the input (a record field or a query
// parameter); Index is the position of the offending record in a batch.
type apiError struct {
	// Status is the HTTP status to answer with when the producer of the
	// error knows it better than its caller; zero means 400.
	Status int
	Msg    string
	Field  string
	Index  *int
}

// MarshalJSON writes "field" whenever the error points into a batch, even
// when empty (the whole record is at fault), and otherwise only when set.
func (e *apiError) MarshalJSON() ([]byte, error) {
	b := append([]byte(`{"error":`), quote(e.Msg)...)
	if e.Index != nil {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(*e.Index), 10)
	}
	if e.Field != "" || e.Index != nil {
		b = append(b, `,"field":`...)
		b = append(b, quote(e.Field)...)
	}
	return append(b, '}'), nil
}

func quote(s string) []byte {
	b, _ := jsontext.AppendQuote(nil, s)
	return b
}

func (e *apiError) status() int {
	if e.Status == 0 {
		return http.StatusBadRequest
	}
	return e.Status
}

func indexPtr(i int) *int { return &i }

// writeJSON writes v as the JSON body. HTML escaping is off so record text
// with <, > or & is served as stored.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a programming error (an unmarshalable type) gets here.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error encoding the response"}` + "\n")
	}
	writeRaw(w, status, buf.Bytes())
}

// writeRaw writes an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// isNoSpace reports a full disk or quota (ENOSPC, EDQUOT) anywhere in err's
// chain: the one storage failure an operator fixes without a restart.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeState is what /healthz and /metrics ask of a log that can refuse
// writes (logstore.Store): nil while it accepts them.
type writeState interface {
	WriteErr() error
}

// writeErr is why the log refuses appends now, or nil.
func (s *Server) writeErr() error {
	if ws, ok := s.cfg.Log.(writeState); ok {
		return ws.WriteErr()
	}
	return nil
}

func writeError(w http.ResponseWriter, status int, e *apiError) {
	writeJSON(w, status, e)
}

// queryAvailable answers 503 when the server runs without a query engine.
func (s *Server) queryAvailable(w http.ResponseWriter) bool {
	if s.cfg.Query == nil {
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "queries are not available on this server"})
		return false
	}
	return true
}
