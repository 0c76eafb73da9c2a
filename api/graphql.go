package api

import (
	"bytes"
	"net/http"
)

// graphQL serves /graphql through the handler in Config.GraphQL with the
// caller's role: queries reveal personal data as on REST, and the whole
// answer is held until the operation's clear reads are recorded as one
// access record, so no byte of it leaves before. If recording fails the
// answer is a GraphQL error with status 503 instead. A GraphQL answer is
// bounded by the operation limits, so holding it costs little.
func (s *Server) graphQL(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Privacy == nil {
		// Nothing is sealed, so nothing is revealed or recorded.
		s.cfg.GraphQL.ServeHTTP(w, r)
		return
	}
	rd := s.reads(r)
	held := &heldResponse{header: http.Header{}}
	s.cfg.GraphQL.ServeHTTP(held, r.WithContext(revealing(r.Context(), rd)))
	if err := rd.Commit(r.Context()); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(append(append([]byte(`{"errors":[{"message":`), quote(accessNotRecordedMsg)...),
			`,"extensions":{"code":"`+CodeAccessNotRecorded+`"}}]}`+"\n"...))
		return
	}
	h := w.Header()
	for k, v := range held.header {
		h[k] = v
	}
	if held.status == 0 {
		held.status = http.StatusOK
	}
	w.WriteHeader(held.status)
	_, _ = w.Write(held.body.Bytes())
}

// CodeAccessNotRecorded is the extensions.code of the GraphQL error that
// replaces an answer whose clear reads could not be recorded.
const CodeAccessNotRecorded = "ACCESS_NOT_RECORDED"

// heldResponse keeps a handler's whole answer in memory.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(p)
}
