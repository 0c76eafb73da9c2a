package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stele/stele"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
)

// The key store's passing unavailability, however deep it is wrapped (a
// record of a batch, a query's read hook), is a 503 with Retry-After,
// never a 500 or a 400.
func TestKeysUnavailableIs503(t *testing.T) {
	stale := fmt.Errorf("%w: subject key: %w", privacy.ErrKeysUnavailable, keystore.ErrStale)
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for name, answer := range map[string]func(http.ResponseWriter, *http.Request, error){
		"append": s.appendFailed,
		"query":  s.queryFailed,
		"export": s.exportFailed,
	} {
		for _, err := range []error{stale, &stele.RecordError{Index: 3, Err: stale}, fmt.Errorf("read hook: %w", stale)} {
			w := httptest.NewRecorder()
			answer(w, httptest.NewRequest(http.MethodGet, "/", nil), err)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "key store") {
				t.Errorf("%s, %v: %d %q %s", name, err, w.Code, w.Header().Get("Retry-After"), w.Body)
			}
		}
	}
	if w := httptest.NewRecorder(); keysUnavailable(w, errors.New("other")) {
		t.Error("an unrelated error taken for the key store's")
	}
}
