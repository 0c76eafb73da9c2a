package graphql_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele"
	"github.com/stele/stele/api"
	"github.com/stele/stele/api/graphql"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

var (
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

type env struct {
	store  *logstore.Store
	engine *query.Engine
	srv    *httptest.Server
	recs   []*record.Record // what the test appended, in seq order
}

func newEnv(t testing.TB, opts graphql.Options) *env {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: store, engine: query.New(store, ix)}
	opts.Log, opts.Query = store, e.engine
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	e.srv = httptest.NewServer(graphql.New(opts))
	t.Cleanup(func() {
		e.srv.Close()
		store.Close()
		ix.Close()
	})
	return e
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (e *env) append(t testing.TB, recs ...*record.Record) {
	t.Helper()
	res, err := e.store.Append(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range res {
		if a.Duplicate || a.Seq != uint64(len(e.recs)) {
			t.Fatalf("appended %+v, want seq %d", a, len(e.recs))
		}
		recs[i].Seq = a.Seq
		e.recs = append(e.recs, recs[i])
	}
}

// history appends 90 records over two tables of crm and one of billing:
// inserts, updates, deletes, a truncate, three actors, one every hour.
func (e *env) history(t testing.TB) {
	t.Helper()
	e.historyRound(t, 0)
}

func (e *env) historyRound(t testing.TB, round int) {
	t.Helper()
	tables := []record.Source{
		{Name: "crm", Kind: "postgres", Database: "crm", Table: "customers"},
		{Name: "crm", Kind: "postgres", Table: "orders"},
		{Name: "billing", Kind: "mysql", Table: "customers"},
	}
	actors := []string{"alice", "bob", ""}
	exists := map[string]bool{}
	var batch []*record.Record
	for i := range 90 {
		src := tables[i%3]
		k := (i / 3) % 7
		r := &record.Record{ID: fmt.Sprintf("r-%d-%d", round, i), Source: src, Key: mustJSON(map[string]int{"id": k}), OccurredAt: t0.Add(time.Duration(i) * time.Hour)}
		if a := actors[i%len(actors)]; a != "" {
			r.Actor = mustJSON(map[string]string{"id": a, "app": "backoffice"})
		}
		id := fmt.Sprint(src.Name, src.Table, k)
		switch {
		case i == 60:
			r.Op, r.Key = record.OpTruncate, mustJSON(map[string]string{"table": src.Table})
			for k := range exists {
				if strings.HasPrefix(k, src.Name+src.Table) {
					delete(exists, k)
				}
			}
		case !exists[id]:
			r.Op, r.After = record.OpInsert, mustJSON(map[string]any{"id": k, "name": fmt.Sprintf("n%d", i)})
			exists[id] = true
		case i%5 == 0:
			r.Op, r.Before = record.OpDelete, mustJSON(map[string]any{"id": k})
			delete(exists, id)
		default:
			r.Op, r.After = record.OpUpdate, mustJSON(map[string]any{"name": fmt.Sprintf("u%d", i)})
		}
		batch = append(batch, r)
	}
	e.append(t, batch...)
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

func (e *env) do(t *testing.T, q string, vars map[string]any) gqlResponse {
	t.Helper()
	body := mustJSON(map[string]any{"query": q, "variables": vars})
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
		t.Fatalf("status %d, body %s: %v", resp.StatusCode, b, err)
	}
	return r
}

// data runs q, fails on any error, and decodes data into out.
func (e *env) data(t *testing.T, q string, vars map[string]any, out any) {
	t.Helper()
	r := e.do(t, q, vars)
	if len(r.Errors) > 0 {
		t.Fatalf("query %s: errors %+v", q, r.Errors)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		t.Fatalf("data %s: %v", r.Data, err)
	}
}

// fails runs q and returns its single error.
func (e *env) fails(t *testing.T, q string, vars map[string]any) gqlError {
	t.Helper()
	r := e.do(t, q, vars)
	if len(r.Errors) != 1 {
		t.Fatalf("query %s: want one error, got %+v (data %s)", q, r.Errors, r.Data)
	}
	return r.Errors[0]
}

type pageInfo struct {
	HasNextPage bool    `json:"hasNextPage"`
	EndCursor   *string `json:"endCursor"`
}

type recordsPage struct {
	Nodes []struct {
		Seq uint64 `json:"seq"`
	} `json:"nodes"`
	PageInfo pageInfo `json:"pageInfo"`
}

const recordsQuery = `query($f: RecordFilter, $o: Order, $first: Int, $after: String) {
  records(filter: $f, order: $o, first: $first, after: $after) { nodes { seq } pageInfo { hasNextPage endCursor } }
}`

func (e *env) allRecords(t *testing.T, filter map[string]any, order string, first int) []uint64 {
	t.Helper()
	var out []uint64
	vars := map[string]any{"f": filter, "o": order, "first": first}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		var d struct{ Records recordsPage }
		e.data(t, recordsQuery, vars, &d)
		if len(d.Records.Nodes) > first {
			t.Fatalf("page of %d nodes, first %d", len(d.Records.Nodes), first)
		}
		for _, n := range d.Records.Nodes {
			out = append(out, n.Seq)
		}
		if !d.Records.PageInfo.HasNextPage {
			if d.Records.PageInfo.EndCursor != nil {
				t.Fatal("endCursor set on the last page")
			}
			return out
		}
		vars["after"] = *d.Records.PageInfo.EndCursor
	}
}

func TestRecordsFiltersAndPagination(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	match := func(f map[string]any, r *record.Record) bool {
		k, _ := record.KeyString(r.Key)
		return (f["source"] == nil || f["source"] == r.Source.Name) &&
			(f["table"] == nil || f["table"] == r.Source.Table) &&
			(f["key"] == nil || f["key"] == k) &&
			(f["actor"] == nil || f["actor"] == r.ActorID()) &&
			(f["op"] == nil || f["op"] == string(r.Op)) &&
			(f["since"] == nil || !r.OccurredAt.Before(f["since"].(time.Time))) &&
			(f["until"] == nil || r.OccurredAt.Before(f["until"].(time.Time)))
	}
	filters := []map[string]any{
		nil,
		{"source": "crm"},
		{"source": "crm", "table": "customers"},
		{"table": "customers"}, // across sources, as in REST
		{"source": "billing", "table": "customers", "key": "3"},
		{"actor": "alice"},
		{"op": "update"},
		{"op": "truncate"},
		{"since": t0.Add(20 * time.Hour), "until": t0.Add(50 * time.Hour)},
		{"source": "crm", "actor": "bob", "op": "insert", "since": t0.Add(3 * time.Hour)},
	}
	for _, f := range filters {
		for _, order := range []string{"DESC", "ASC"} {
			var want []uint64
			for _, r := range e.recs {
				if f == nil || match(f, r) {
					want = append(want, r.Seq)
				}
			}
			if order == "DESC" {
				slices.Reverse(want)
			}
			vars := map[string]any{}
			for k, v := range f {
				if tv, ok := v.(time.Time); ok {
					v = tv.Format(time.RFC3339)
				}
				vars[k] = v
			}
			if f == nil {
				vars = nil
			}
			for _, first := range []int{4, 100} {
				if got := e.allRecords(t, vars, order, first); !slices.Equal(got, want) {
					t.Fatalf("filter %v order %s first %d:\n got  %v\n want %v", f, order, first, got, want)
				}
			}
		}
	}
}

func TestRecordFieldsMirrorTheRecordModel(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	ix := int64(3)
	ct := t0.Add(time.Second)
	r := &record.Record{ID: "full", Source: record.Source{Name: "crm", Kind: "postgres", Database: "crmdb", Schema: "public", Table: "customers"},
		Op: record.OpUpdate, Key: mustJSON(map[string]any{"id": 7, "region": "eu"}),
		Before: mustJSON(map[string]any{"email": "a@x.test", "n": 1}), After: mustJSON(map[string]any{"email": "b@x.test", "n": 1}),
		Changed: []string{"email"}, Actor: mustJSON(map[string]string{"id": "alice", "ip": "10.0.0.1"}),
		Tx: &record.Tx{ID: "tx1", Position: "0/16B3748", Index: &ix, CommitTime: &ct}, Cause: mustJSON(map[string]string{"type": "moved"}),
		Schema: &record.SchemaRef{Subject: "crm.customers", Version: 2}, OccurredAt: t0}
	e.append(t, r, &record.Record{ID: "bare", Source: record.Source{Name: "crm", Kind: "http", Table: "t"}, Op: record.OpEvent, Key: mustJSON(map[string]int{"id": 1}), OccurredAt: t0})
	var d struct{ Full, Bare, Missing json.RawMessage }
	e.data(t, `{
  full: record(seq: 0) { seq id op key keyString before after changed actor cause occurredAt recordedAt
    source { name kind database schema table } tx { id position index commitTime } schema { subject version } }
  bare: record(seq: 1) { before after actor tx { id } schema { version } source { database schema } }
  missing: record(seq: 2) { seq }
}`, nil, &d)
	stored, err := e.store.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"seq":0,"id":"full","op":"update","key":{"id":7,"region":"eu"},"keyString":"id=7,region=eu","before":{"email":"a@x.test","n":1},"after":{"email":"b@x.test","n":1},"changed":["email"],"actor":{"id":"alice","ip":"10.0.0.1"},"cause":{"type":"moved"},"occurredAt":"2026-01-01T00:00:00Z","recordedAt":%q,"source":{"name":"crm","kind":"postgres","database":"crmdb","schema":"public","table":"customers"},"tx":{"id":"tx1","position":"0/16B3748","index":3,"commitTime":"2026-01-01T00:00:01Z"},"schema":{"subject":"crm.customers","version":2}}`,
		stored.RecordedAt.UTC().Format(time.RFC3339Nano))
	if string(d.Full) != want {
		t.Fatalf("full record:\n got  %s\n want %s", d.Full, want)
	}
	if string(d.Bare) != `{"before":null,"after":null,"actor":null,"tx":null,"schema":null,"source":{"database":null,"schema":null}}` {
		t.Fatalf("bare record: %s", d.Bare)
	}
	if string(d.Missing) != "null" {
		t.Fatalf("missing record: %s", d.Missing)
	}
}

func TestEntityHistoryAndState(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	// crm/customers/2: every record of that entity, oldest first.
	var want []uint64
	for _, r := range e.recs {
		if k, _ := record.KeyString(r.Key); r.Source.Name == "crm" && r.Source.Table == "customers" && k == "2" {
			want = append(want, r.Seq)
		}
	}
	if len(want) < 3 {
		t.Fatalf("entity has %d records", len(want))
	}
	var got []uint64
	vars := map[string]any{}
	for range 20 {
		var d struct{ EntityHistory recordsPage }
		e.data(t, `query($after: String) { entityHistory(source: "crm", table: "customers", key: "2", first: 2, after: $after) { nodes { seq } pageInfo { hasNextPage endCursor } } }`, vars, &d)
		for _, n := range d.EntityHistory.Nodes {
			got = append(got, n.Seq)
		}
		if !d.EntityHistory.PageInfo.HasNextPage {
			break
		}
		vars["after"] = *d.EntityHistory.PageInfo.EndCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history: got %v want %v", got, want)
	}

	// entityState agrees with the engine's StateAt at each change, and is
	// null before the first one.
	for _, seq := range want {
		at := e.recs[seq].OccurredAt
		var d struct {
			EntityState *struct {
				Key        string          `json:"key"`
				At         time.Time       `json:"at"`
				State      json.RawMessage `json:"state"`
				Seq        uint64          `json:"seq"`
				OccurredAt time.Time       `json:"occurredAt"`
			}
		}
		e.data(t, `query($at: Time) { entityState(source: "crm", table: "customers", key: "2", at: $at) { key at state seq occurredAt } }`, map[string]any{"at": at}, &d)
		st, err := e.engine.StateAt(context.Background(), "crm", "customers", "2", at)
		if err != nil {
			if d.EntityState != nil {
				t.Fatalf("at %s: GraphQL %+v, engine %v", at, d.EntityState, err)
			}
			continue
		}
		if d.EntityState == nil || string(d.EntityState.State) != string(st.State) || d.EntityState.Seq != st.Seq || !d.EntityState.At.Equal(at) || d.EntityState.Key != "2" {
			t.Fatalf("at %s: GraphQL %+v, engine %+v", at, d.EntityState, st)
		}
	}
	var d struct{ EntityState json.RawMessage }
	e.data(t, `{ entityState(source: "crm", table: "customers", key: "2", at: "2025-01-01T00:00:00Z") { seq } }`, nil, &d)
	if string(d.EntityState) != "null" {
		t.Fatalf("before the first change: %s", d.EntityState)
	}
}

func TestTableState(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	for _, at := range []time.Time{t0.Add(30 * time.Hour), t0.Add(60 * time.Hour), t0.Add(61 * time.Hour), testNow} {
		var want []query.Unit
		err := e.engine.TableStateAt(context.Background(), "crm", "customers", at, func(u query.Unit) error {
			want = append(want, u)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		type unit struct {
			Key        string          `json:"key"`
			State      json.RawMessage `json:"state"`
			Seq        uint64          `json:"seq"`
			OccurredAt time.Time       `json:"occurredAt"`
		}
		var got []unit
		vars := map[string]any{"at": at.Format(time.RFC3339)}
		if at.Equal(testNow) {
			vars = map[string]any{} // the default: Now
		}
		for range 20 {
			var d struct {
				TableState struct {
					At       time.Time `json:"at"`
					Nodes    []unit    `json:"nodes"`
					PageInfo pageInfo  `json:"pageInfo"`
				}
			}
			e.data(t, `query($at: Time, $after: String) { tableState(source: "crm", table: "customers", at: $at, first: 2, after: $after) { at nodes { key state seq occurredAt } pageInfo { hasNextPage endCursor } } }`, vars, &d)
			if !d.TableState.At.Equal(at) {
				t.Fatalf("at %s answered for %s", at, d.TableState.At)
			}
			got = append(got, d.TableState.Nodes...)
			if !d.TableState.PageInfo.HasNextPage {
				break
			}
			vars["after"] = *d.TableState.PageInfo.EndCursor
		}
		if len(got) != len(want) {
			t.Fatalf("at %s: %d units, want %d", at, len(got), len(want))
		}
		for i := range got {
			if got[i].Key != want[i].Key || string(got[i].State) != string(want[i].State) || got[i].Seq != want[i].Seq || !got[i].OccurredAt.Equal(want[i].OccurredAt) {
				t.Fatalf("at %s unit %d: %+v, want %+v", at, i, got[i], want[i])
			}
		}
		if at.Equal(t0.Add(61*time.Hour)) && len(got) != 0 {
			t.Fatalf("right after the truncate the table holds %d units", len(got))
		}
		if at.Equal(t0.Add(30*time.Hour)) && len(got) < 3 {
			t.Fatalf("at %s only %d units: the data set does not exercise paging", at, len(got))
		}
	}
}

func TestCheckpointAndProofs(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	type cp struct {
		Origin   string `json:"origin"`
		Size     uint64 `json:"size"`
		RootHash string `json:"rootHash"`
		Note     string `json:"note"`
	}
	var d1 struct{ Checkpoint cp }
	e.data(t, `{ checkpoint { origin size rootHash note } }`, nil, &d1)
	c1 := d1.Checkpoint
	parsed, err := stele.OpenCheckpoint([]byte(c1.Note), e.store.Keys().Verifier)
	if err != nil {
		t.Fatalf("checkpoint note does not verify: %v", err)
	}
	root1, _ := base64.StdEncoding.DecodeString(c1.RootHash)
	if c1.Size != 90 || parsed.Size != c1.Size || !bytes.Equal(parsed.Root, root1) || c1.Origin != "test.example/log" {
		t.Fatalf("checkpoint %+v, note says %+v", c1, parsed)
	}

	e.historyRound(t, 1) // 90 more
	type incl struct {
		Seq        uint64   `json:"seq"`
		TreeSize   uint64   `json:"treeSize"`
		Leaf       string   `json:"leaf"`
		LeafHash   string   `json:"leafHash"`
		Hashes     []string `json:"hashes"`
		Checkpoint *cp      `json:"checkpoint"`
	}
	decode := func(hs []string) [][]byte {
		out := make([][]byte, len(hs))
		for i, h := range hs {
			out[i], _ = base64.StdEncoding.DecodeString(h)
		}
		return out
	}
	for _, seq := range []uint64{0, 17, 89} {
		var d struct{ Old, Latest incl }
		e.data(t, `query($seq: Uint64!, $size: Uint64) { old: inclusionProof(seq: $seq, treeSize: $size) { seq treeSize leaf leafHash hashes checkpoint { size } }
			latest: inclusionProof(seq: $seq) { seq treeSize leaf leafHash hashes checkpoint { size rootHash note } } }`, map[string]any{"seq": seq, "size": 90}, &d)
		leaf, _ := base64.StdEncoding.DecodeString(d.Old.Leaf)
		raw, err := e.store.ReadRaw(seq)
		if err != nil || !bytes.Equal(leaf, raw) {
			t.Fatalf("seq %d: leaf is not the stored bytes (%v)", seq, err)
		}
		lh := rfc6962.DefaultHasher.HashLeaf(leaf)
		if base64.StdEncoding.EncodeToString(lh) != d.Old.LeafHash {
			t.Fatalf("seq %d: leafHash", seq)
		}
		if d.Old.TreeSize != 90 || d.Old.Checkpoint != nil {
			t.Fatalf("seq %d: %+v", seq, d.Old)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, 90, lh, decode(d.Old.Hashes), root1); err != nil {
			t.Fatalf("seq %d in the old tree: %v", seq, err)
		}
		if d.Latest.Checkpoint == nil || d.Latest.TreeSize != d.Latest.Checkpoint.Size || d.Latest.TreeSize != 180 {
			t.Fatalf("seq %d latest: %+v", seq, d.Latest)
		}
		latest, err := stele.OpenCheckpoint([]byte(d.Latest.Checkpoint.Note), e.store.Keys().Verifier)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, latest.Size, lh, decode(d.Latest.Hashes), latest.Root); err != nil {
			t.Fatalf("seq %d in the latest tree: %v", seq, err)
		}
	}

	var d2 struct {
		Checkpoint cp
		Explicit   struct {
			From, To uint64
			Hashes   []string
		}
		Default struct {
			From, To uint64
			Hashes   []string
		}
	}
	e.data(t, `{ checkpoint { size rootHash } explicit: consistencyProof(from: 90, to: 180) { from to hashes } default: consistencyProof(from: 90) { from to hashes } }`, nil, &d2)
	root2, _ := base64.StdEncoding.DecodeString(d2.Checkpoint.RootHash)
	if d2.Checkpoint.Size != 180 || d2.Default.To != 180 || d2.Explicit.From != 90 {
		t.Fatalf("%+v", d2)
	}
	for _, hs := range [][]string{d2.Explicit.Hashes, d2.Default.Hashes} {
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 90, 180, decode(hs), root1, root2); err != nil {
			t.Fatalf("consistency 90 -> 180: %v", err)
		}
	}
	// A forged root is caught by the same check: the test can fail.
	forged := slices.Clone(root1)
	forged[0] ^= 1
	if proof.VerifyConsistency(rfc6962.DefaultHasher, 90, 180, decode(d2.Explicit.Hashes), forged, root2) == nil {
		t.Fatal("a forged root verified")
	}
}

func TestBadQueries(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	for _, c := range []struct {
		name, q  string
		vars     map[string]any
		contains []string
		argument string
	}{
		{"syntax", `{ records(first: 3) { nodes { seq }`, nil, []string{"Expected Name, found <EOF>"}, ""},
		{"unknown field", `{ records { nodes { seq nope } } }`, nil, []string{`Cannot query field "nope" on type "Record"`}, ""},
		{"unknown top-level field", `{ schemas { name } }`, nil, []string{`Cannot query field "schemas" on type "Query"`}, ""},
		{"unknown argument", `{ records(limit: 3) { nodes { seq } } }`, nil, []string{`Unknown argument "limit" on field "Query.records"`}, ""},
		{"unknown filter field", `{ records(filter: {sorce: "crm"}) { nodes { seq } } }`, nil, []string{`sorce`}, ""},
		{"wrong argument type", `{ records(first: "ten") { nodes { seq } } }`, nil, []string{`Int cannot represent non-integer value: "ten"`}, ""},
		{"bad enum", `{ records(filter: {op: upsert}) { nodes { seq } } }`, nil, []string{`Value "upsert" does not exist in "Op" enum`}, ""},
		{"missing required argument", `{ entityState(source: "crm", table: "customers") { seq } }`, nil, []string{`argument "key" of type "String!" is required`}, ""},
		{"bad time literal", `{ records(filter: {since: "yesterday"}) { nodes { seq } } }`, nil, []string{`filter.since: "yesterday" is not an RFC 3339 timestamp`}, "filter.since"},
		{"bad time variable", `query($at: Time) { tableState(source: "crm", table: "customers", at: $at) { at } }`, map[string]any{"at": "noon"}, []string{`at: "noon" is not an RFC 3339 timestamp`}, "at"},
		{"first too small", `{ records(first: 0) { nodes { seq } } }`, nil, []string{"first: 0 is not from 1 to 1000"}, "first"},
		{"first too big", `{ tableState(source: "crm", table: "customers", first: 1001) { at } }`, nil, []string{"first: 1001 is not from 1 to 1000"}, "first"},
		{"key without table", `{ records(filter: {source: "crm", key: "1"}) { nodes { seq } } }`, nil, []string{"filter.key: needs source and table"}, "filter.key"},
		{"until before since", `{ records(filter: {since: "2026-02-01T00:00:00Z", until: "2026-01-01T00:00:00Z"}) { nodes { seq } } }`, nil, []string{"filter.until: must be after since"}, "filter.until"},
		{"bad cursor", `{ records(after: "garbage") { nodes { seq } } }`, nil, []string{"after: not a cursor"}, "after"},
		{"bad table cursor", `{ tableState(source: "crm", table: "customers", after: "Zm9v") { at } }`, nil, []string{"after: not a cursor"}, "after"},
		{"table state without source", `{ tableState(source: "", table: "customers") { at } }`, nil, []string{"source: is required"}, "source"},
		{"seq beyond the log", `{ inclusionProof(seq: 90) { seq } }`, nil, []string{"seq: 90 is not below the log size 90"}, "seq"},
		{"tree size too small", `{ inclusionProof(seq: 10, treeSize: 10) { seq } }`, nil, []string{"treeSize: 10 must be greater than seq 10"}, "treeSize"},
		{"from after to", `{ consistencyProof(from: 50, to: 40) { from } }`, nil, []string{"from: 50 is greater than to (40)"}, "from"},
		{"to beyond the log", `{ consistencyProof(from: 5, to: 91) { from } }`, nil, []string{"to: 91 is greater than the log size 90"}, "to"},
		{"negative seq", `{ inclusionProof(seq: -1) { seq } }`, nil, []string{"seq: -1 is an invalid unsigned integer"}, "seq"},
		{"mutation", `mutation { records { seq } }`, nil, []string{`Schema does not support operation type "mutation"`}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ge := e.fails(t, c.q, c.vars)
			for _, s := range c.contains {
				if !strings.Contains(ge.Message, s) {
					t.Errorf("error %q does not contain %q", ge.Message, s)
				}
			}
			if c.argument != "" {
				if ge.Extensions["argument"] != c.argument || ge.Extensions["code"] != graphql.CodeBadArgument {
					t.Errorf("error %+v does not name argument %q", ge, c.argument)
				}
			}
		})
	}
	// A failing nullable field leaves its siblings answered; the error's
	// path names the field by its alias.
	r := e.do(t, `{ ok: checkpoint { size } bad: entityState(source: "crm", table: "customers", key: "1", at: "then") { seq } }`, nil)
	if len(r.Errors) != 1 || !strings.Contains(string(r.Data), `"ok":{"size":90}`) || fmt.Sprint(r.Errors[0].Path) != "[bad at]" || !strings.HasPrefix(r.Errors[0].Message, "at: ") {
		t.Fatalf("partial answer: %s %+v", r.Data, r.Errors)
	}
}

func TestDepthLimit(t *testing.T) {
	e := newEnv(t, graphql.Options{MaxDepth: 3})
	e.history(t)
	var d map[string]any
	e.data(t, `{ records(first: 1) { nodes { seq } } }`, nil, &d) // depth 3
	ge := e.fails(t, `{ records(first: 1) { nodes { source { name } } } }`, nil)
	if ge.Extensions["code"] != graphql.CodeDepthLimit || !strings.Contains(ge.Message, "depth 4, which exceeds the limit of 3") {
		t.Fatalf("depth 4: %+v", ge)
	}
	// Fragments do not hide depth.
	ge = e.fails(t, `query { records(first: 1) { ...N } } fragment N on RecordConnection { nodes { ... on Record { source { name } } } }`, nil)
	if ge.Extensions["code"] != graphql.CodeDepthLimit {
		t.Fatalf("depth through fragments: %+v", ge)
	}
	// Introspection counts like any field (TestIntrospectionIsCostedLikeAnyField).
	if ge := e.fails(t, `{ __schema { types { fields { name } } } }`, nil); ge.Extensions["code"] != graphql.CodeDepthLimit {
		t.Fatalf("introspection of depth 4: %+v", ge)
	}
	// The default limit accepts the schema's deepest selections.
	e2 := newEnv(t, graphql.Options{})
	e2.history(t)
	e2.data(t, `{ records(first: 1) { nodes { source { name } tx { commitTime } } } inclusionProof(seq: 1) { checkpoint { origin } } }`, nil, &d)
}

func TestComplexityLimit(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	const fields = `nodes { seq id op key keyString before after actor occurredAt recordedAt source { name kind table } } pageInfo { hasNextPage }`
	var d map[string]any
	e.data(t, `{ a: records(first: 1000) { `+fields+` } }`, nil, &d)
	ge := e.fails(t, `{ a: records(first: 1000) { `+fields+` } b: entityHistory(source: "crm", table: "customers", key: "1", first: 1000) { `+fields+` } }`, nil)
	if ge.Extensions["code"] != graphql.CodeComplexityLimit || !strings.Contains(ge.Message, "exceeds the limit of 25000") {
		t.Fatalf("two pages of 1000: %+v", ge)
	}
	e2 := newEnv(t, graphql.Options{MaxComplexity: 50})
	e2.data(t, `{ records(first: 10) { nodes { seq id } } }`, nil, &d)
	if ge := e2.fails(t, `{ records(first: 30) { nodes { seq id } } }`, nil); ge.Extensions["code"] != graphql.CodeComplexityLimit {
		t.Fatalf("over a limit of 50: %+v", ge)
	}
}

// The handler mounted in the REST server: GET and POST, 405 for other
// methods, the playground, and refusal on a tampered log.
func TestMountedInAPIServer(t *testing.T) {
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	engine := query.New(store, ix)
	health := api.StatusOK
	srv := httptest.NewServer(api.New(api.Config{Log: store, Query: engine,
		Health:  func() (string, string) { return health, "seq 3 changed" },
		GraphQL: graphql.New(graphql.Options{Log: store, Query: engine})}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/graphql?query=" + url.QueryEscape("{ checkpoint { size } }")); code != 200 || !strings.Contains(body, `"size":0`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	if code, body := get("/graphql/playground"); code != 200 || (!strings.Contains(body, "/ui/js/playground.js") || strings.Contains(body, "https://")) {
		t.Fatalf("playground: %d %.200s", code, body)
	}
	resp, err := http.Post(srv.URL+"/graphql", "application/json", strings.NewReader(`{"query":"{ checkpoint { nope } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), `Cannot query field \"nope\"`) {
		t.Fatalf("invalid query: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/graphql", strings.NewReader(`{"query":"{ checkpoint { size } }"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	health = api.StatusTampered
	if code, body := get("/graphql?query=" + url.QueryEscape("{ checkpoint { size } }")); code != http.StatusServiceUnavailable || !strings.Contains(body, "failed verification") {
		t.Fatalf("tampered: %d %s", code, body)
	}
}

// BenchmarkRecordsQuery: one page of 100 records through GraphQL, and the
// same page through GET /v1/records as the same-run baseline.
func BenchmarkRecordsQuery(b *testing.B) {
	dir := b.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "bench.example/log", Hook: ix})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var recs []*record.Record
	for i := range 5000 {
		recs = append(recs, &record.Record{ID: fmt.Sprintf("b-%d", i), Source: record.Source{Name: "crm", Kind: "postgres", Table: "customers"},
			Op: record.OpUpdate, Key: mustJSON(map[string]int{"id": i % 500}), After: mustJSON(map[string]any{"id": i % 500, "name": fmt.Sprintf("n%d", i)}),
			Actor: mustJSON(map[string]string{"id": "alice"}), OccurredAt: t0.Add(time.Duration(i) * time.Second)})
	}
	if _, err := store.Append(context.Background(), recs); err != nil {
		b.Fatal(err)
	}
	engine := query.New(store, ix)
	srv := httptest.NewServer(api.New(api.Config{Log: store, Query: engine, GraphQL: graphql.New(graphql.Options{Log: store, Query: engine})}))
	defer srv.Close()
	client := srv.Client()
	run := func(b *testing.B, req func() *http.Request) {
		for b.Loop() {
			resp, err := client.Do(req())
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n < 1000 {
				b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
	}
	body := []byte(`{"query":"{ records(filter: {actor: \"alice\"}, first: 100) { nodes { seq id op key after actor occurredAt recordedAt source { name table } } pageInfo { endCursor } } }"}`)
	b.Run("graphql", func(b *testing.B) {
		run(b, func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, srv.URL+"/graphql", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return r
		})
	})
	// With a privacy layer (one that reveals nothing) the answer is held
	// until the access is recorded and every record passes the read hook:
	// the ratio to graphql is the cost of that.
	held := httptest.NewServer(api.New(api.Config{Log: store, Query: engine, Privacy: noReveal{},
		GraphQL: graphql.New(graphql.Options{Log: store, Query: engine})}))
	defer held.Close()
	b.Run("graphql-privacy", func(b *testing.B) {
		run(b, func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, held.URL+"/graphql", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return r
		})
	})
	b.Run("baseline-rest", func(b *testing.B) {
		run(b, func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/records?actor=alice&limit=100", nil)
			return r
		})
	})
}

// Every record-returning field reads through the read hook the request's
// context carries (package api puts the role's reveal there); proofs serve
// the stored bytes.
func TestReadHookInContext(t *testing.T) {
	e := newEnv(t, graphql.Options{})
	e.history(t)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	hook := func(_ context.Context, r *record.Record) error {
		mu.Lock()
		seen[r.Seq] = true
		mu.Unlock()
		if len(r.After) > 0 {
			r.After = mustJSON(map[string]string{"name": "hooked"})
		}
		return nil
	}
	h := graphql.New(graphql.Options{Log: e.store, Query: e.engine, Now: func() time.Time { return testNow }})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(query.WithReadHook(r.Context(), hook)))
	}))
	defer srv.Close()
	e.srv = srv
	var d struct {
		Records struct {
			Nodes []struct{ After json.RawMessage }
		}
		Record        struct{ After json.RawMessage }
		EntityHistory struct {
			Nodes []struct{ After json.RawMessage }
		}
		EntityState struct{ State json.RawMessage }
		TableState  struct {
			Nodes []struct{ State json.RawMessage }
		}
		InclusionProof struct{ Leaf string }
	}
	e.data(t, `{
	  records(filter: {source: "crm", table: "customers", op: insert}) { nodes { after } }
	  record(seq: 0) { after }
	  entityHistory(source: "crm", table: "customers", key: "1") { nodes { after } }
	  entityState(source: "crm", table: "customers", key: "1", at: "2026-01-02T00:00:00Z") { state }
	  tableState(source: "crm", table: "customers", at: "2026-01-02T00:00:00Z") { nodes { state } }
	  inclusionProof(seq: 0, treeSize: 1) { leaf }
	}`, nil, &d)
	var states []json.RawMessage
	for _, n := range d.Records.Nodes {
		states = append(states, n.After)
	}
	for _, n := range d.EntityHistory.Nodes {
		if string(n.After) != "null" { // a delete
			states = append(states, n.After)
		}
	}
	for _, n := range d.TableState.Nodes {
		states = append(states, n.State)
	}
	states = append(states, d.Record.After, d.EntityState.State)
	if len(d.Records.Nodes) == 0 || len(d.TableState.Nodes) == 0 {
		t.Fatalf("the data set does not exercise every field: %+v", d)
	}
	for _, s := range states {
		if !strings.Contains(string(s), `"hooked"`) {
			t.Fatalf("a field did not read through the hook: %s (all: %+v)", s, d)
		}
	}
	leaf, _ := base64.StdEncoding.DecodeString(d.InclusionProof.Leaf)
	if bytes.Contains(leaf, []byte("hooked")) || !bytes.Contains(leaf, e.recs[0].After) {
		t.Fatalf("the proof's leaf is not the stored record: %q", leaf)
	}
	if !seen[0] {
		t.Fatal("record(seq: 0) did not pass the hook")
	}
}

// noReveal is a privacy layer with nothing sealed.
type noReveal struct{}

func (noReveal) Reveal(context.Context, auth.Role, *record.Record) (int, error) { return 0, nil }
func (noReveal) BlindToken(string, string) []byte                               { return nil }
func (noReveal) Erase(context.Context, privacy.EraseRequest) (*privacy.ReceiptResult, error) {
	return nil, errors.New("nothing to erase")
}
func (noReveal) RecordAccess(context.Context, auth.Principal, string, []uint64, int) error {
	return nil
}
