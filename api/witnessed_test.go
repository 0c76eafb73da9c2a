package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele"
	"github.com/stele/stele/api"
	"github.com/stele/stele/logstore"
)

// TestCheckpointWitnessed: with witnesses, /v1/checkpoint serves only what
// their quorum cosigned: 503 until then, never the log's newer one.
func TestCheckpointWitnessed(t *testing.T) {
	store, err := logstore.Open(context.Background(), t.TempDir(), logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var witnessed atomic.Pointer[stele.Checkpoint]
	srv := httptest.NewServer(api.New(api.Config{Log: store, Registry: prometheus.NewRegistry(), Witnessed: witnessed.Load}))
	defer srv.Close()
	get := func() (int, string, string) {
		resp, err := http.Get(srv.URL + "/v1/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	if code, retry, body := get(); code != http.StatusServiceUnavailable || retry != "1" {
		t.Fatalf("before any witnessed checkpoint: %d Retry-After %q %s", code, retry, body)
	}
	cp, err := store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cosigned := *cp
	cosigned.Note = append(append([]byte{}, cp.Note...), "— w.test AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"...)
	witnessed.Store(&cosigned)
	if code, _, body := get(); code != http.StatusOK || body != string(cosigned.Note) {
		t.Fatalf("witnessed: %d %q", code, body)
	}
}
