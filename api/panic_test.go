package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerPanicIsA500 checks a panicking handler answers a JSON 500
// instead of dropping the connection.
func TestHandlerPanicIsA500(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	h := s.recovering("GET /x", func(http.ResponseWriter, *http.Request) {
		var xs []int
		_ = xs[len(xs)] // out of range: a runtime panic, as a damaged value's slice bounds were
	})
	rec := httptest.NewRecorder()
	h(&statusRecorder{ResponseWriter: rec}, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"error":"internal error in GET /x`) {
		t.Fatalf("got %d %s, want a JSON 500", rec.Code, rec.Body.String())
	}
}
