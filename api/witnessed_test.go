package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele"
	"github.com/stele/stele/api"
	"github.com/stele/stele/api/graphql"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
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

// TestProofsWitnessed: under a witness policy a record's proof and the
// GraphQL checkpoint fields use only the quorum's cosigned checkpoint: none
// served before it covers the record, the cosigned note once it does.
func TestProofsWitnessed(t *testing.T) {
	var witnessed atomic.Pointer[stele.Checkpoint]
	e := newEnv(t, func(c *api.Config) {
		c.Witnessed = witnessed.Load
		c.GraphQL = graphql.New(graphql.Options{Log: c.Log.(*logstore.Store), Query: c.Query.(*query.Engine), Witnessed: witnessed.Load})
	})
	appendN(t, e, 4)
	gql := func(q string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"query": q})
		r := e.do(t, http.MethodPost, graphql.Path, "application/json", body)
		if r.status != http.StatusOK {
			t.Fatalf("GraphQL %s: %d %s", q, r.status, r.body)
		}
		return string(r.body)
	}
	if r := e.get(t, "/v1/records/2"); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "cosigned") {
		t.Fatalf("record proof before any cosigned checkpoint: %d %s", r.status, r.body)
	}
	if body := gql(`{ checkpoint { size } }`); !strings.Contains(body, graphql.CodeNotWitnessed) {
		t.Fatalf("GraphQL checkpoint before any cosigned one: %s", body)
	}

	// The quorum has cosigned size 2 only: seq 1 is covered, seq 2 is not.
	cp, err := e.store.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	root, err := e.store.RootAt(2)
	if err != nil {
		t.Fatal(err)
	}
	cosigned := stele.Checkpoint{Origin: cp.Origin, Size: 2, Root: root, Note: []byte("cosigned note of size 2\n")}
	witnessed.Store(&cosigned)
	if r := e.get(t, "/v1/records/2"); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
		t.Fatalf("record beyond the cosigned size: %d %s", r.status, r.body)
	}
	r := e.get(t, "/v1/records/1")
	var got recordResp
	if err := json.Unmarshal(r.body, &got); r.status != http.StatusOK || err != nil {
		t.Fatalf("record inside the cosigned size: %d %s", r.status, r.body)
	}
	if got.Proof.TreeSize != 2 || got.Checkpoint == nil || *got.Checkpoint != string(cosigned.Note) {
		t.Fatalf("proof against tree %d with checkpoint %v, want the cosigned one of size 2", got.Proof.TreeSize, got.Checkpoint)
	}
	if body := gql(`{ checkpoint { size note } }`); !strings.Contains(body, `"size":2`) || !strings.Contains(body, "cosigned note of size 2") {
		t.Fatalf("GraphQL checkpoint: %s, want the cosigned one", body)
	}
	if body := gql(`{ inclusionProof(seq: 3) { treeSize } }`); !strings.Contains(body, graphql.CodeNotWitnessed) {
		t.Fatalf("GraphQL inclusion proof beyond the cosigned size: %s", body)
	}
	if body := gql(`{ inclusionProof(seq: 1) { treeSize checkpoint { note } } }`); !strings.Contains(body, `"treeSize":2`) || !strings.Contains(body, "cosigned note") {
		t.Fatalf("GraphQL inclusion proof inside the cosigned size: %s", body)
	}
}
