package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/api/graphql"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// sealed is how fakePrivacy stores a personal-data value: opaque, so the
// plaintext does not appear in the stored form.
func sealed(subject, plain string) string {
	return "sealed:" + base64.RawURLEncoding.EncodeToString([]byte(subject+"|"+plain))
}

type accessCall struct {
	By       string
	Endpoint string
	Seqs     []uint64
	Fields   int
}

// fakePrivacy reveals top-level after-image values made by sealed as the
// privacy layer does by role (clear, "***", as stored; {"$erased":true}
// for every role once the subject is erased) and notes access records.
type fakePrivacy struct {
	mu     sync.Mutex
	erased map[string]bool
	calls  []accessCall
	fail   bool
}

func (f *fakePrivacy) Reveal(_ context.Context, role auth.Role, r *record.Record) (int, error) {
	if len(r.After) == 0 {
		return 0, nil
	}
	var img map[string]json.RawMessage
	if err := json.Unmarshal(r.After, &img); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	clear := 0
	for name, v := range img {
		var s string
		if json.Unmarshal(v, &s) != nil || !strings.HasPrefix(s, "sealed:") {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, "sealed:"))
		if err != nil {
			return clear, err
		}
		subject, plain, _ := strings.Cut(string(raw), "|")
		switch {
		case f.erased[subject]:
			img[name] = json.RawMessage(`{"$erased":true}`)
		case role.SeesClear():
			img[name], _ = json.Marshal(plain)
			clear++
		case role == auth.RoleAnalyst:
			img[name] = json.RawMessage(`"***"`)
		}
	}
	out, err := json.Marshal(img)
	if err != nil {
		return clear, err
	}
	r.After = out
	return clear, nil
}

func (f *fakePrivacy) BlindToken(string, string) []byte { return nil }

func (f *fakePrivacy) Erase(_ context.Context, req privacy.EraseRequest) (*privacy.ReceiptResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.erased == nil {
		f.erased = map[string]bool{}
	}
	f.erased[req.Subject] = true
	return &privacy.ReceiptResult{}, nil
}

func (f *fakePrivacy) RecordAccess(_ context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("log unavailable")
	}
	f.calls = append(f.calls, accessCall{By: by.Name, Endpoint: endpoint, Seqs: slices.Clone(seqs), Fields: fields})
	return nil
}

// takeCalls returns the access records noted since the last call.
func (f *fakePrivacy) takeCalls() []accessCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakePrivacy) setFail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// roleTokens admits the token "<role>" as the principal "<role>-1".
type roleTokens struct{}

func (roleTokens) Authenticate(token string) (auth.Principal, bool) {
	role := auth.Role(token)
	return auth.Principal{Name: token + "-1", Role: role}, role.Valid()
}

func (roleTokens) Empty() bool { return false }

// newRevealEnv serves GraphQL and exports, with fakePrivacy and a token
// per role.
func newRevealEnv(t *testing.T) (*env, *fakePrivacy) {
	t.Helper()
	fp := &fakePrivacy{}
	e := newEnv(t, withExporter, func(c *api.Config) {
		c.Privacy = fp
		c.Auth = roleTokens{}
		c.GraphQL = graphql.New(graphql.Options{Log: c.Log.(*logstore.Store), Query: c.Query.(*query.Engine)})
	})
	return e, fp
}

func (e *env) as(t *testing.T, role, method, path, body string) response {
	t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + role}
	switch {
	case path == "/v1/records":
		hdr["Content-Type"] = "application/x-ndjson"
	case body != "":
		hdr["Content-Type"] = "application/json"
	}
	return e.doWith(t, method, path, hdr, []byte(body))
}

func customer(op string, id int, after string, day int) string {
	return fmt.Sprintf(`{"source":{"name":"crm","table":"customers"},"op":%q,"key":{"id":%d},"after":%s,"occurred_at":"2026-01-%02dT00:00:00Z"}`, op, id, after, day)
}

// appendCustomers appends seq 0: A (subject 7) with a sealed email, 1: an
// update of A without personal data, 2: B (subject 8) with a sealed email,
// 3: C without personal data.
func appendCustomers(t *testing.T, e *env) {
	t.Helper()
	body := strings.Join([]string{
		customer("insert", 7, `{"id":7,"email":"`+sealed("7", "alice@example.com")+`","plan":"a"}`, 1),
		customer("update", 7, `{"plan":"b"}`, 2),
		customer("insert", 8, `{"id":8,"email":"`+sealed("8", "bob@example.com")+`","plan":"c"}`, 3),
		customer("insert", 9, `{"id":9,"plan":"d"}`, 4),
	}, "\n")
	if r := e.as(t, "service", http.MethodPost, "/v1/records", body); r.status != http.StatusCreated {
		t.Fatalf("append: %d %s", r.status, r.body)
	}
}

// revealQuery reads A and B through every record-returning field: A's
// email shows 4 times (tableState, records, record, entityState), B's 3
// times (tableState, records, entityHistory); inclusionProof serves the
// stored leaf.
const revealQuery = `{
  tableState(source: "crm", table: "customers") { nodes { key state } }
  records(filter: {source: "crm"}, order: ASC) { nodes { seq after } }
  record(seq: 0) { after }
  entityState(source: "crm", table: "customers", key: "7") { state }
  entityHistory(source: "crm", table: "customers", key: "8") { nodes { after } }
  inclusionProof(seq: 0, treeSize: 4) { leaf }
}`

func (e *env) graphQL(t *testing.T, role, q string) response {
	t.Helper()
	return e.as(t, role, http.MethodPost, "/graphql", string(mustJSONBytes(map[string]string{"query": q})))
}

func mustJSONBytes(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// view counts what a body shows of A and B.
type view struct{ alice, bob, masked, sealed, erased int }

func viewOf(body []byte) view {
	s := string(body)
	return view{
		alice:  strings.Count(s, "alice@example.com"),
		bob:    strings.Count(s, "bob@example.com"),
		masked: strings.Count(s, `"***"`),
		sealed: strings.Count(s, `sealed:`),
		erased: strings.Count(s, `"$erased":true`),
	}
}

// Each role sees exactly its view through GraphQL and table state; the
// clear reads of one request are one access record naming the seqs.
func TestRevealByRoleGraphQLAndTableState(t *testing.T) {
	e, fp := newRevealEnv(t)
	appendCustomers(t, e)
	const tablePath = "/v1/tables/crm/customers/state"
	for _, c := range []struct {
		role        string
		gql, tables view
		recorded    bool
	}{
		{"admin", view{alice: 4, bob: 3}, view{alice: 1, bob: 1}, true},
		{"auditor", view{alice: 4, bob: 3}, view{alice: 1, bob: 1}, true},
		{"analyst", view{masked: 7}, view{masked: 2}, false},
		{"service", view{sealed: 7}, view{sealed: 2}, false},
	} {
		r := e.graphQL(t, c.role, revealQuery)
		if r.status != http.StatusOK || bytes.Contains(r.body, []byte(`"errors"`)) {
			t.Fatalf("%s GraphQL: %d %s", c.role, r.status, r.body)
		}
		if got := viewOf(r.body); got != c.gql {
			t.Errorf("%s GraphQL shows %+v, want %+v: %s", c.role, got, c.gql, r.body)
		}
		// The proof's leaf is the stored bytes, whatever the role.
		var d struct {
			Data struct{ InclusionProof struct{ Leaf string } } `json:"data"`
		}
		if err := json.Unmarshal(r.body, &d); err != nil {
			t.Fatal(err)
		}
		if leaf, _ := base64.StdEncoding.DecodeString(d.Data.InclusionProof.Leaf); !bytes.Contains(leaf, []byte(sealed("7", "alice@example.com"))) {
			t.Errorf("%s: inclusionProof leaf is not the stored record: %q", c.role, leaf)
		}
		calls := fp.takeCalls()
		want := []accessCall(nil)
		if c.recorded {
			want = []accessCall{{By: c.role + "-1", Endpoint: "POST /graphql", Seqs: []uint64{0, 2}, Fields: 7}}
		}
		if !slices.EqualFunc(calls, want, equalCall) {
			t.Errorf("%s GraphQL access records %+v, want %+v", c.role, calls, want)
		}

		r = e.as(t, c.role, http.MethodGet, tablePath, "")
		if r.status != http.StatusOK {
			t.Fatalf("%s table state: %d %s", c.role, r.status, r.body)
		}
		if got := viewOf(r.body); got != c.tables {
			t.Errorf("%s table state shows %+v, want %+v: %s", c.role, got, c.tables, r.body)
		}
		calls = fp.takeCalls()
		want = nil
		if c.recorded {
			want = []accessCall{{By: c.role + "-1", Endpoint: "GET /v1/tables/{source}/{table}/state", Seqs: []uint64{0, 2}, Fields: 2}}
		}
		if !slices.EqualFunc(calls, want, equalCall) {
			t.Errorf("%s table state access records %+v, want %+v", c.role, calls, want)
		}
	}
	// A GET query is revealed and recorded the same way.
	r := e.as(t, "auditor", http.MethodGet, "/graphql?query="+url.QueryEscape(`{ record(seq: 2) { after } }`), "")
	if v := viewOf(r.body); r.status != http.StatusOK || v.bob != 1 {
		t.Fatalf("GET /graphql: %d %s", r.status, r.body)
	}
	if calls := fp.takeCalls(); len(calls) != 1 || calls[0].Endpoint != "GET /graphql" || !slices.Equal(calls[0].Seqs, []uint64{2}) {
		t.Fatalf("GET /graphql access records %+v", calls)
	}

	// A clear read that cannot be recorded is not served; reads that show
	// nothing in clear need no record and still are.
	fp.setFail(true)
	r = e.graphQL(t, "auditor", revealQuery)
	if v := viewOf(r.body); r.status != http.StatusServiceUnavailable || v.alice+v.bob != 0 || !bytes.Contains(r.body, []byte(api.CodeAccessNotRecorded)) {
		t.Errorf("GraphQL with the access log failing: %d %s", r.status, r.body)
	}
	r = e.as(t, "auditor", http.MethodGet, tablePath, "")
	if v := viewOf(r.body); r.status != http.StatusServiceUnavailable || v.alice+v.bob != 0 || !strings.Contains(r.json(t)["error"].(string), "could not be recorded") {
		t.Errorf("table state with the access log failing: %d %s", r.status, r.body)
	}
	if r = e.graphQL(t, "analyst", revealQuery); r.status != http.StatusOK || viewOf(r.body).masked != 7 {
		t.Errorf("analyst GraphQL with the access log failing: %d %s", r.status, r.body)
	}
	fp.setFail(false)

	// After erasing A, every role sees A erased everywhere; B stays.
	if r := e.as(t, "admin", http.MethodPost, "/v1/subjects/7/erase", ""); r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		role        string
		gql, tables view
	}{
		{"admin", view{bob: 3, erased: 4}, view{bob: 1, erased: 1}},
		{"auditor", view{bob: 3, erased: 4}, view{bob: 1, erased: 1}},
		{"analyst", view{masked: 3, erased: 4}, view{masked: 1, erased: 1}},
		{"service", view{sealed: 3, erased: 4}, view{sealed: 1, erased: 1}},
	} {
		if got := viewOf(e.graphQL(t, c.role, revealQuery).body); got != c.gql {
			t.Errorf("%s GraphQL after erasure shows %+v, want %+v", c.role, got, c.gql)
		}
		if got := viewOf(e.as(t, c.role, http.MethodGet, tablePath, "").body); got != c.tables {
			t.Errorf("%s table state after erasure shows %+v, want %+v", c.role, got, c.tables)
		}
	}
}

func equalCall(a, b accessCall) bool {
	return a.By == b.By && a.Endpoint == b.Endpoint && slices.Equal(a.Seqs, b.Seqs) && a.Fields == b.Fields
}

// Exports keep the stored form for every role unless view=clear, which
// admin and auditor may ask for: it reveals, is recorded, and has no proof.
func TestExportViews(t *testing.T) {
	e, fp := newRevealEnv(t)
	appendCustomers(t, e)
	vkey := e.store.Keys().VerifierKey
	for _, role := range []string{"admin", "auditor", "analyst", "service"} {
		for _, q := range []string{"format=jsonl", "format=csv&view=stored", "format=jsonl&source=crm&table=customers&key=7"} {
			data := e.as(t, role, http.MethodGet, "/v1/export?"+q, "")
			proof := e.as(t, role, http.MethodGet, "/v1/export/proof?"+q+"&tree_size="+data.header.Get(api.TreeSizeHeader), "")
			if data.status != http.StatusOK || proof.status != http.StatusOK {
				t.Fatalf("%s export %s: %d %s / %d %s", role, q, data.status, data.body, proof.status, proof.body)
			}
			if v := viewOf(data.body); v.alice+v.bob+v.masked != 0 || v.sealed == 0 || data.header.Get(api.ViewHeader) != "" {
				t.Errorf("%s export %s is not the stored form: %+v %s", role, q, v, data.body)
			}
			if _, err := export.Verify(context.Background(), bytes.NewReader(data.body), int64(len(data.body)), bytes.NewReader(proof.body), export.VerifyOptions{VerifierKey: vkey}); err != nil {
				t.Errorf("%s export %s does not verify: %v", role, q, err)
			}
		}
	}
	if calls := fp.takeCalls(); len(calls) != 0 {
		t.Fatalf("stored exports recorded accesses: %+v", calls)
	}

	for _, role := range []string{"admin", "auditor"} {
		for _, format := range []string{"jsonl", "csv", "parquet"} {
			r := e.as(t, role, http.MethodGet, "/v1/export?view=clear&format="+format, "")
			if r.status != http.StatusOK || r.header.Get(api.ViewHeader) != "clear" || !strings.Contains(r.header.Get("Content-Disposition"), ".clear."+format) {
				t.Fatalf("%s clear %s export: %d %v %s", role, format, r.status, r.header, r.body)
			}
			if format != "parquet" { // compressed
				if v := viewOf(r.body); v != (view{alice: 1, bob: 1}) {
					t.Errorf("%s clear %s export shows %+v: %s", role, format, v, r.body)
				}
			}
			want := []accessCall{{By: role + "-1", Endpoint: "GET /v1/export", Seqs: []uint64{0, 2}, Fields: 2}}
			if calls := fp.takeCalls(); !slices.EqualFunc(calls, want, equalCall) {
				t.Errorf("%s clear %s export access records %+v, want %+v", role, format, calls, want)
			}
		}
	}
	for _, c := range []struct {
		role, query string
		status      int
		msg         string
	}{
		{"analyst", "/v1/export?view=clear", http.StatusForbidden, "view=clear: role analyst may not export personal data in clear (allowed: admin, auditor)"},
		{"service", "/v1/export?view=clear&format=csv", http.StatusForbidden, "role service may not export personal data in clear"},
		{"auditor", "/v1/export/proof?view=clear&tree_size=4", http.StatusBadRequest, "a clear export has no proof"},
		{"auditor", "/v1/export?view=role", http.StatusBadRequest, `view: "role" is not stored or clear`},
	} {
		r := e.as(t, c.role, http.MethodGet, c.query, "")
		m := r.json(t)
		if r.status != c.status || m["field"] != "view" || !strings.Contains(m["error"].(string), c.msg) || viewOf(r.body).alice != 0 {
			t.Errorf("%s %s: %d %s, want %d with %q", c.role, c.query, r.status, r.body, c.status, c.msg)
		}
	}

	fp.setFail(true)
	r := e.as(t, "auditor", http.MethodGet, "/v1/export?view=clear", "")
	if v := viewOf(r.body); r.status != http.StatusServiceUnavailable || v.alice+v.bob != 0 {
		t.Errorf("clear export with the access log failing: %d %s", r.status, r.body)
	}
	fp.setFail(false)

	if r := e.as(t, "admin", http.MethodPost, "/v1/subjects/7/erase", ""); r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	for _, role := range []string{"admin", "auditor"} {
		r := e.as(t, role, http.MethodGet, "/v1/export?view=clear", "")
		if v := viewOf(r.body); r.status != http.StatusOK || v != (view{bob: 1, erased: 1}) {
			t.Errorf("%s clear export after erasure: %d %+v %s", role, r.status, v, r.body)
		}
	}
}

// A clear stream larger than one chunk is recorded chunk by chunk: every
// record in clear is named by exactly one access record.
func TestLargeClearStreamsRecordEveryChunk(t *testing.T) {
	e, fp := newRevealEnv(t)
	const n = 3000
	var lines []string
	pad := strings.Repeat("x", 400)
	for i := range n {
		lines = append(lines, customer("insert", i, fmt.Sprintf(`{"id":%d,"email":"%s","plan":"%s"}`, i, sealed(fmt.Sprint(i), fmt.Sprintf("c%d@example.com", i)), pad), 1))
	}
	if r := e.as(t, "service", http.MethodPost, "/v1/records", strings.Join(lines, "\n")); r.status != http.StatusCreated {
		t.Fatalf("append: %d %.300s", r.status, r.body)
	}
	for _, path := range []string{"/v1/tables/crm/customers/state", "/v1/export?view=clear"} {
		r := e.as(t, "auditor", http.MethodGet, path, "")
		if r.status != http.StatusOK || len(r.body) < 1<<20 || strings.Count(string(r.body), "@example.com") != n {
			t.Fatalf("%s: %d, %d bytes", path, r.status, len(r.body))
		}
		calls := fp.takeCalls()
		var all []uint64
		for _, c := range calls {
			all = append(all, c.Seqs...)
		}
		slices.Sort(all)
		if len(calls) < 2 || len(all) != n || len(slices.Compact(all)) != n {
			t.Errorf("%s: %d access records naming %d seqs, want at least 2 naming each of %d once", path, len(calls), len(all), n)
		}
	}
}
