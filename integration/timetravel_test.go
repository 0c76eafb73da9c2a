package integration_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real binary answers a table at an instant over REST, GraphQL and
// `stele snapshot` (--url while serving, --data once stopped, refused
// while serving), all alike.
func TestTableTimeTravelAndGraphQL(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	s.post("application/x-ndjson", []byte(strings.Join([]string{
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":1},"after":{"id":1,"v":"a"},"occurred_at":"2026-01-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":2},"after":{"id":2,"v":"b"},"occurred_at":"2026-01-02T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"after":{"v":"a2"},"occurred_at":"2026-01-03T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"truncate","key":{"table":"t"},"occurred_at":"2026-01-04T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":3},"after":{"id":3,"v":"c"},"occurred_at":"2026-01-05T00:00:00Z"}`,
	}, "\n")))
	const at = "2026-01-03T12:00:00Z"
	want := `{"key":"1","state":{"id":1,"v":"a2"},"seq":2,"occurred_at":"2026-01-03T00:00:00Z"}
{"key":"2","state":{"id":2,"v":"b"},"seq":1,"occurred_at":"2026-01-02T00:00:00Z"}
`
	if got := string(s.get("/v1/tables/crm/t/state?at="+at, http.StatusOK)); got != want {
		t.Fatalf("REST table state:\n got  %s\n want %s", got, want)
	}
	if got := string(s.get("/v1/tables/crm/t/state?at=2026-01-04T00:00:00Z", http.StatusOK)); got != "" {
		t.Fatalf("after the truncate: %s", got)
	}

	r := s.do(http.MethodPost, "/graphql", "application/json", []byte(`{"query":"{ tableState(source: \"crm\", table: \"t\", at: \"`+at+`\") { nodes { key state seq } } records(filter: {source: \"crm\", op: insert}, order: ASC) { nodes { seq keyString } } }"}`))
	if r.status != http.StatusOK {
		t.Fatalf("GraphQL: %d %s", r.status, r.body)
	}
	var g struct {
		Data struct {
			TableState struct{ Nodes []map[string]any }
			Records    struct{ Nodes []map[string]any }
		}
		Errors []any
	}
	if err := json.Unmarshal(r.body, &g); err != nil || len(g.Errors) > 0 {
		t.Fatalf("GraphQL: %v %s", err, r.body)
	}
	if n := g.Data.TableState.Nodes; len(n) != 2 || n[0]["key"] != "1" || n[1]["seq"] != float64(1) {
		t.Fatalf("GraphQL tableState: %s", r.body)
	}
	if n := g.Data.Records.Nodes; len(n) != 3 || n[2]["keyString"] != "3" {
		t.Fatalf("GraphQL records: %s", r.body)
	}
	if body := string(s.get("/graphql/playground", http.StatusOK)); !strings.Contains(body, "/ui/js/playground.js") || strings.Contains(body, "https://") {
		t.Fatalf("playground: %.200s", body)
	}

	out := filepath.Join(t.TempDir(), "url.jsonl")
	mustStele(t, "snapshot", "--url", s.URL(), "--source", "crm", "--table", "t", "--at", at, "--out", out)
	if b, _ := os.ReadFile(out); string(b) != want {
		t.Fatalf("snapshot --url:\n got  %s\n want %s", b, want)
	}
	msg, code := stele(t, "snapshot", "--data", dir, "--source", "crm", "--table", "t", "--at", at, "--out", out+".locked")
	if code != 1 || !strings.Contains(msg, "in use by another stele process") {
		t.Fatalf("snapshot --data on a served directory: exit %d: %s", code, msg)
	}
	s.stop()
	mustStele(t, "snapshot", "--data", dir, "--source", "crm", "--table", "t", "--at", at, "--out", out+".data")
	if b, _ := os.ReadFile(out + ".data"); string(b) != want {
		t.Fatalf("snapshot --data:\n got  %s\n want %s", b, want)
	}
	mustStele(t, "verify", "--data", dir)
}
