package graphql_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stele/stele/api/graphql"
)

// post sends body to /graphql and decodes the answer.
func (e *env) post(t *testing.T, body []byte) (int, gqlResponse) {
	t.Helper()
	resp, err := http.Post(e.srv.URL+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r gqlResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("status %d, body %.300s: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, r
}

// refused checks that r is one error with code and a message containing
// each of want, and no data.
func refused(t *testing.T, r gqlResponse, code string, want ...string) {
	t.Helper()
	if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != code {
		t.Fatalf("want one %s error, got %+v (data %.200s)", code, r.Errors, r.Data)
	}
	for _, w := range want {
		if !strings.Contains(r.Errors[0].Message, w) {
			t.Errorf("error %q does not say %q", r.Errors[0].Message, w)
		}
	}
	if len(r.Data) > 0 && string(r.Data) != "null" {
		t.Errorf("refused operation answered data %.200s", r.Data)
	}
}

// The attack of issue 12: one ~1 MB query of 15,000 aliased
// __schema { types { … } } selections took 19 s and 3.3 GiB. It is refused
// before validation: by the token limit, and with that limit lifted by
// the alias limit.
func TestAliasedIntrospectionAttackIsRefused(t *testing.T) {
	var q strings.Builder
	q.WriteString("{")
	for i := range 15_000 {
		fmt.Fprintf(&q, " a%d: __schema { types { name kind fields { name } } }", i)
	}
	q.WriteString(" }")
	body := mustJSON(map[string]any{"query": q.String()})
	if len(body) < 800_000 || len(body) > graphql.DefaultMaxBodyBytes {
		t.Fatalf("attack body is %d bytes, want about 1 MB", len(body))
	}

	e := newEnv(t, graphql.Options{})
	_, r := e.post(t, body)
	refused(t, r, graphql.CodeTokenLimit, "more than 10000 tokens, the limit")

	lifted := newEnv(t, graphql.Options{MaxTokens: 1 << 30})
	_, r = lifted.post(t, body)
	refused(t, r, graphql.CodeAliasLimit, "15000 aliases", "limit of 50")

	// The same attack without aliases repeats one field, which gqlgen
	// merges, but validation compares the repeats pairwise.
	_, r = lifted.post(t, mustJSON(map[string]any{"query": "{" + strings.Repeat(" __schema { types { name } }", 3000) + " }"}))
	refused(t, r, graphql.CodeFieldLimit, "selects 9000 fields", "limit of 500")

	// Aliases and fields count with fragments expanded, so fragments that
	// spread each other twice do not hide 2^30 fields.
	var bomb strings.Builder
	bomb.WriteString("{ ...F30 } fragment F0 on Query { x: __typename }")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&bomb, " fragment F%d on Query { ...F%d ...F%d }", i, i-1, i-1)
	}
	_, r = e.post(t, mustJSON(map[string]any{"query": bomb.String()}))
	refused(t, r, graphql.CodeAliasLimit, fmt.Sprintf("%d aliases", 1<<30))

	// Fragments no operation spreads count too: validation reads them.
	_, r = lifted.post(t, mustJSON(map[string]any{"query": "{ __typename } fragment U on Query {" + strings.Repeat(" __typename", 3000) + " }"}))
	refused(t, r, graphql.CodeFieldLimit, "selects 3001 fields")
}

func TestIntrospectionIsCostedLikeAnyField(t *testing.T) {
	// __type(name: "Source") { name fields { name } } answers 1 + 1 + 1 +
	// Source's 5 fields: 8.
	const q = `{ __type(name: "Source") { name fields { name } } }`
	var d map[string]any
	newEnv(t, graphql.Options{MaxComplexity: 8}).data(t, q, nil, &d)
	r := newEnv(t, graphql.Options{MaxComplexity: 7}).do(t, q, nil)
	refused(t, r, graphql.CodeComplexityLimit, "limit of 7")

	// __schema costs what it answers: every type, every field of each.
	e := newEnv(t, graphql.Options{MaxComplexity: 200})
	e.data(t, `{ __schema { types { name } } }`, nil, &d)
	refused(t, e.do(t, `{ __schema { types { name fields { name args { name type { name } } } } } }`, nil),
		graphql.CodeComplexityLimit, "limit of 200")

	// Introspection counts for depth too.
	refused(t, newEnv(t, graphql.Options{MaxDepth: 3}).do(t, `{ __schema { types { fields { name } } } }`, nil),
		graphql.CodeDepthLimit, "depth 4, which exceeds the limit of 3")
}

// GraphiQL's own introspection query passes the default limits, so the
// playground keeps working.
func TestPlaygroundIntrospectionPassesDefaultLimits(t *testing.T) {
	q, err := os.ReadFile("testdata/introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, graphql.Options{})
	var d struct {
		Schema struct {
			Types []struct{ Name string }
		} `json:"__schema"`
	}
	e.data(t, string(q), nil, &d)
	if len(d.Schema.Types) < 20 {
		t.Fatalf("introspection answered %d types", len(d.Schema.Types))
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	e := newEnv(t, graphql.Options{MaxBodyBytes: 100})
	small := mustJSON(map[string]any{"query": "{ checkpoint { size } }"})
	if code, r := e.post(t, small); code != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("small body: %d %+v", code, r.Errors)
	}
	big := mustJSON(map[string]any{"query": "{ checkpoint { size } }", "variables": map[string]string{"pad": strings.Repeat("x", 200)}})
	code, r := e.post(t, big)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body of %d bytes: status %d, want 413", len(big), code)
	}
	refused(t, r, graphql.CodeRequestTooLarge, "larger than the 100-byte limit")

	// Without a Content-Length the limit applies as the body is read.
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/graphql", io.MultiReader(bytes.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength > 0 {
		t.Fatalf("chunked body: status %d (content length %d), want 413", resp.StatusCode, req.ContentLength)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	e := newEnv(t, graphql.Options{MaxResponseBytes: 4000})
	e.history(t)
	var d map[string]any
	e.data(t, `{ records(first: 5) { nodes { seq id after } } }`, nil, &d)
	var q strings.Builder
	q.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&q, " r%d: record(seq: %d) { seq id op key before after actor occurredAt source { name table } }", i, i)
	}
	q.WriteString(" }")
	refused(t, e.do(t, q.String(), nil), graphql.CodeResponseTooLarge, "larger than the limit of 4000 bytes")
	// Introspection answers count as well.
	refused(t, e.do(t, `{ __schema { types { name description fields { name description } } } }`, nil),
		graphql.CodeResponseTooLarge)
}

// Pages read from the store stop at half the answer limit, shared by the
// operation's list fields, and say hasNextPage: a page of large records is
// never in memory whole, and paging still reaches every record.
func TestPagesStopAtTheLoadBudget(t *testing.T) {
	e := newEnv(t, graphql.Options{MaxResponseBytes: 4000})
	e.history(t)
	var d struct {
		Records recordsPage
		Again   recordsPage
	}
	e.data(t, `{ records(first: 90) { nodes { seq } pageInfo { hasNextPage endCursor } } again: records(first: 90, order: ASC) { nodes { seq } pageInfo { hasNextPage endCursor } } }`, nil, &d)
	n := len(d.Records.Nodes) + len(d.Again.Nodes)
	if n == 0 || n >= 45 || !d.Records.PageInfo.HasNextPage || !d.Again.PageInfo.HasNextPage {
		t.Fatalf("two pages of 90 under a 2000-byte load budget: %d nodes in all, %+v %+v", n, d.Records.PageInfo, d.Again.PageInfo)
	}
	if got := e.allRecords(t, nil, "ASC", 90); len(got) != 90 {
		t.Fatalf("paging under the budget found %d of 90 records", len(got))
	}
}
