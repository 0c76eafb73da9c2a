package integration_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

const customersSchema = `{
  "type": "object",
  "properties": {
    "id":    {"type": "integer", "x-subject": true},
    "email": {"type": "string", "x-pii": true, "x-searchable": true, "x-mask": "last4"},
    "name":  {"type": "string", "x-pii": true},
    "plan":  {"type": "string"}
  },
  "required": ["id"]
}`

func authReq(t *testing.T, base, token, method, path string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func customerRecord(id int, email, name, plan string, n int) string {
	return fmt.Sprintf(`{"source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update",`+
		`"key":{"id":%d},"after":{"id":%d,"email":%q,"name":%q,"plan":%q},"tx":{"position":"%d/%d"},"actor":{"id":"app"}}`,
		id, id, email, name, plan, id, n)
}

// TestErasureEndToEnd is the erasure test against the real binary:
// two subjects, erase one, then every role, endpoint and file is checked.
func TestErasureEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tokens := map[string]string{}
	for _, role := range []string{"admin", "auditor", "analyst", "service"} {
		out := mustStele(t, "token", "create", "--data", dir, "--role", role, "--name", role+"-1")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		tokens[role] = lines[len(lines)-1]
	}
	s := startServer(t, dir, "--stream-listen", "none")
	base := s.URL()

	if r := authReq(t, base, "", "GET", "/v1/records", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %s", r)
	}
	if r := authReq(t, base, tokens["service"], "PUT", "/v1/schemas/crm.public.customers", []byte(customersSchema)); r.status != http.StatusForbidden {
		t.Fatalf("service registering a schema: %s", r)
	}
	if r := authReq(t, base, tokens["admin"], "PUT", "/v1/schemas/crm.public.customers", []byte(customersSchema)); r.status != http.StatusCreated {
		t.Fatalf("schema: %s", r)
	}
	// A record that breaks the schema is refused with its field named.
	bad := `[` + customerRecord(9, "x@y.z", "X", "p", 1) + `,` + strings.Replace(customerRecord(9, "x@y.z", "X", "p", 2), `"email":"x@y.z"`, `"email":5`, 1) + `]`
	if r := authReq(t, base, tokens["service"], "POST", "/v1/records", []byte(bad)); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `"field":"after.email"`) || !strings.Contains(string(r.body), `"index":1`) {
		t.Fatalf("schema violation: %s", r)
	}

	var batch []string
	for i := range 5 {
		batch = append(batch, customerRecord(7, "alice@example.com", "Alice Liddell", fmt.Sprintf("plan-%d", i), i))
		batch = append(batch, customerRecord(8, "bob@example.com", "Bob Builder", fmt.Sprintf("plan-%d", i), i))
	}
	ingest := authReq(t, base, tokens["service"], "POST", "/v1/records", []byte("["+strings.Join(batch, ",")+"]"))
	if ingest.status != http.StatusCreated {
		t.Fatalf("ingest: %s", ingest)
	}
	var ingested struct {
		Records []appended `json:"records"`
	}
	if err := json.Unmarshal(ingest.body, &ingested); err != nil || len(ingested.Records) != 10 {
		t.Fatalf("ingest answer %s: %v", ingest, err)
	}
	var customerSeqs []uint64
	for _, a := range ingested.Records {
		customerSeqs = append(customerSeqs, a.Seq)
	}
	vkey := s.verifierKey()
	before := s.checkpoint(vkey)

	list := func(role string) string {
		r := authReq(t, base, tokens[role], "GET", "/v1/records?source=crm&table=customers&limit=100", nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s lists: %s", role, r)
		}
		return string(r.body)
	}
	if b := list("auditor"); !strings.Contains(b, "alice@example.com") || !strings.Contains(b, "Bob Builder") {
		t.Fatalf("auditor does not see PII in clear: %s", b)
	}
	if b := list("analyst"); strings.Contains(b, "alice@") || !strings.Contains(b, `"***.com"`) {
		t.Fatalf("analyst is not shown masks: %s", b)
	}
	if b := list("service"); strings.Contains(b, "alice") || !strings.Contains(b, `"$pii":`) {
		t.Fatalf("service is not shown envelopes: %s", b)
	}
	// The auditor's clear read was itself logged.
	access := authReq(t, base, tokens["admin"], "GET", "/v1/records?source=stele&table=access", nil)
	if !strings.Contains(string(access.body), `"auditor-1"`) {
		t.Fatalf("no access record names the auditor: %s", access)
	}
	// GraphQL and table state show each role exactly its view, and the
	// auditor's GraphQL read is one access record naming the seqs read.
	for role, want := range map[string]piiView{
		"admin":   {alice: 12, bob: 12},
		"auditor": {alice: 12, bob: 12},
		"analyst": {masked: 24},
		"service": {sealed: 24},
	} {
		if got := viewOf(t, gql(t, base, tokens[role], customersQuery)); got != want {
			t.Errorf("%s through GraphQL sees %+v, want %+v", role, got, want)
		}
		want = piiView{alice: want.alice / 6, bob: want.bob / 6, masked: want.masked / 6, sealed: want.sealed / 6}
		if got := viewOf(t, authReq(t, base, tokens[role], "GET", "/v1/tables/crm/customers/state", nil)); got != want {
			t.Errorf("%s through table state sees %+v, want %+v", role, got, want)
		}
	}
	// Fields in clear: 2 per record listed, and 2 per record folded into
	// the table's state (each unit folds its 5 updates).
	if a := lastAccess(t, base, tokens["admin"], "auditor-1", "POST /graphql"); !slices.Equal(a.Records, customerSeqs) || a.Fields != 40 {
		t.Errorf("the auditor's GraphQL read is recorded as %+v, want records %v and 40 fields", a, customerSeqs)
	}
	if a := lastAccess(t, base, tokens["admin"], "auditor-1", "GET /v1/tables/{source}/{table}/state"); !slices.Equal(a.Records, customerSeqs) || a.Fields != 20 {
		t.Errorf("the auditor's table state read is recorded as %+v, want records %v and 20 fields", a, customerSeqs)
	}
	// Exports: the stored form by default; in clear only when asked, and
	// only by the roles that see personal data.
	if r := authReq(t, base, tokens["analyst"], "GET", "/v1/export?view=clear", nil); r.status != http.StatusForbidden ||
		!strings.Contains(string(r.body), "view=clear: role analyst may not export personal data in clear") {
		t.Fatalf("analyst asking for a clear export: %s", r)
	}
	if got := viewOf(t, authReq(t, base, tokens["auditor"], "GET", "/v1/export?source=crm&table=customers", nil)); got != (piiView{sealed: 20}) {
		t.Errorf("default export shows %+v, want the stored envelopes only", got)
	}
	if got := viewOf(t, authReq(t, base, tokens["auditor"], "GET", "/v1/export?source=crm&table=customers&view=clear", nil)); got != (piiView{alice: 10, bob: 10}) {
		t.Errorf("clear export shows %+v, want the 5 emails and names of each subject", got)
	}
	if a := lastAccess(t, base, tokens["admin"], "auditor-1", "GET /v1/export"); !slices.Equal(a.Records, customerSeqs) {
		t.Errorf("the auditor's clear export is recorded as %+v, want records %v", a, customerSeqs)
	}

	search := func(role, email string) response {
		return authReq(t, base, tokens[role], "GET", "/v1/records?pii.email="+email, nil)
	}
	if r := search("auditor", "alice@example.com"); r.status != http.StatusOK || strings.Count(string(r.body), `"id":7`) != 10 || strings.Contains(string(r.body), "bob@") {
		// 5 records, each with key and after naming id 7
		t.Fatalf("blind-index search for alice: %s", r)
	}
	if r := search("analyst", "alice@example.com"); r.status != http.StatusForbidden {
		t.Fatalf("analyst searched by PII: %s", r)
	}

	// Erase subject 7 through the CLI.
	out := mustStele(t, "erase", "--url", base, "--token", tokens["admin"], "--reason", "ticket-42", "7")
	var receipt struct {
		Seq     uint64 `json:"seq"`
		Receipt struct {
			Records       uint64 `json:"records"`
			KeysDestroyed int    `json:"keys_destroyed"`
		} `json:"receipt"`
		Signed string `json:"signed"`
	}
	if err := json.Unmarshal([]byte(out), &receipt); err != nil {
		t.Fatalf("erase output %q: %v", out, err)
	}
	if receipt.Receipt.Records != 5 || receipt.Receipt.KeysDestroyed != 1 || !strings.Contains(receipt.Signed, "— ") {
		t.Fatalf("receipt %+v", receipt)
	}
	if r := authReq(t, base, tokens["service"], "POST", "/v1/subjects/8/erase", nil); r.status != http.StatusForbidden {
		t.Fatalf("service erasing: %s", r)
	}

	for _, role := range []string{"admin", "auditor", "analyst", "service"} {
		b := list(role)
		if strings.Contains(b, "alice") || strings.Contains(b, "Liddell") {
			t.Fatalf("%s still reads A's PII: %s", role, b)
		}
		if strings.Count(b, `"$erased":true`) != 10 {
			t.Fatalf("%s: want A's 5 emails and 5 names erased: %s", role, b)
		}
	}
	if b := list("auditor"); !strings.Contains(b, "bob@example.com") {
		t.Fatal("B's PII is no longer readable")
	}
	if r := search("auditor", "alice@example.com"); r.status != http.StatusOK || strings.Contains(string(r.body), `"id":7`) {
		t.Fatalf("blind index still finds the erased subject: %s", r)
	}
	if r := search("auditor", "bob@example.com"); !strings.Contains(string(r.body), `"id":8`) {
		t.Fatalf("blind index lost B: %s", r)
	}
	state := authReq(t, base, tokens["auditor"], "GET", "/v1/entities/crm/customers/7/state", nil)
	if state.status != http.StatusOK || strings.Contains(string(state.body), "alice") || !strings.Contains(string(state.body), `"$erased":true`) {
		t.Fatalf("entity state after erasure: %s", state)
	}
	exp := authReq(t, base, tokens["auditor"], "GET", "/v1/export?format=jsonl", nil)
	if exp.status != http.StatusOK || strings.Contains(string(exp.body), "alice") {
		t.Fatalf("export after erasure: %s", exp)
	}
	// Through GraphQL, table state and exports, A is erased for every
	// role; B reads as before.
	for role, want := range map[string]piiView{
		"admin":   {bob: 12, erased: 12},
		"auditor": {bob: 12, erased: 12},
		"analyst": {masked: 12, erased: 12},
		"service": {sealed: 12, erased: 12},
	} {
		if got := viewOf(t, gql(t, base, tokens[role], customersQuery)); got != want {
			t.Errorf("%s through GraphQL after erasure sees %+v, want %+v", role, got, want)
		}
		want = piiView{bob: want.bob / 6, masked: want.masked / 6, sealed: want.sealed / 6, erased: 2}
		if got := viewOf(t, authReq(t, base, tokens[role], "GET", "/v1/tables/crm/customers/state", nil)); got != want {
			t.Errorf("%s through table state after erasure sees %+v, want %+v", role, got, want)
		}
		for _, format := range []string{"jsonl", "csv", "parquet"} {
			r := authReq(t, base, tokens[role], "GET", "/v1/export?format="+format, nil)
			if r.status != http.StatusOK || bytes.Contains(r.body, []byte("alice")) || bytes.Contains(r.body, []byte("Liddell")) {
				t.Errorf("%s %s export after erasure: %s", role, format, r)
			}
		}
	}
	for _, role := range []string{"admin", "auditor"} {
		if got := viewOf(t, authReq(t, base, tokens[role], "GET", "/v1/export?source=crm&table=customers&view=clear", nil)); got != (piiView{bob: 10, erased: 10}) {
			t.Errorf("%s clear export after erasure shows %+v, want A's 10 values erased and B's 10 in clear", role, got)
		}
	}

	// The log still verifies, and the earlier checkpoint is consistent with
	// the one after erasure.
	after := s.checkpoint(vkey)
	var cons struct {
		Hashes []string `json:"hashes"`
	}
	s.getJSON(fmt.Sprintf("/v1/proof/consistency?from=%d&to=%d", before.size, after.size), &cons)
	var hashes [][]byte
	for _, h := range cons.Hashes {
		b, _ := base64.StdEncoding.DecodeString(h)
		hashes = append(hashes, b)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, before.size, after.size, hashes, before.root, after.root); err != nil {
		t.Fatalf("checkpoint before erasure is not consistent with the one after: %v", err)
	}
	// Nothing was captured, so nothing is parked; the admin CLI says so.
	t.Setenv("STELE_TOKEN", tokens["admin"])
	if out := mustStele(t, "deadletters", "list", "--url", base); !strings.Contains(out, `"dead_letters": []`) {
		t.Fatalf("deadletters list: %s", out)
	}
	if out := mustStele(t, "deadletters", "replay", "--url", base); !strings.Contains(out, `"appended": 0`) {
		t.Fatalf("deadletters replay: %s", out)
	}
	// An outside auditor with a token spot-checks the running server.
	t.Setenv("STELE_TOKEN", tokens["auditor"])
	mustStele(t, "verify", "--url", base, "--key", vkey, "--state", filepath.Join(t.TempDir(), "audit.json"))
	s.stop()
	mustStele(t, "verify", "--data", dir)

	// Forensic scan: no file under the data directory holds A's personal
	// data in clear (the log, index, keystore, NATS store, temp files).
	var scanned int
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for _, pii := range []string{"alice@example.com", "Alice Liddell", "Liddell"} {
			if bytes.Contains(data, []byte(pii)) {
				t.Errorf("%s holds %q in clear", path, pii)
			}
		}
		return nil
	})
	if err != nil || scanned < 10 {
		t.Fatalf("scan: %v (%d files)", err, scanned)
	}

	// A rebuilt index (stele reindex) keeps what the blind index and the
	// subject counts held: B is found as before, A not at all, and a
	// second erasure of B counts all of B's records.
	mustStele(t, "reindex", "--data", dir)
	s = startServer(t, dir, "--stream-listen", "none")
	base = s.URL()
	if r := search("auditor", "bob@example.com"); strings.Count(string(r.body), `"id":8`) != 10 {
		t.Fatalf("after reindex, the blind index finds for B: %s", r)
	}
	if r := search("auditor", "alice@example.com"); r.status != http.StatusOK || strings.Contains(string(r.body), `"id":7`) {
		t.Fatalf("after reindex, the blind index finds the erased subject: %s", r)
	}
	r := authReq(t, base, tokens["admin"], "POST", "/v1/subjects/8/erase", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"records":5`) {
		t.Fatalf("erasing B after reindex: %s", r)
	}
	s.stop()
}

// customersQuery reads the customers table through GraphQL twice over: the
// table's state (2 units) and its 10 records, each with email and name.
const customersQuery = `{
  tableState(source: "crm", table: "customers") { nodes { key state } }
  records(filter: {source: "crm", table: "customers"}, first: 100) { nodes { seq after } }
}`

func gql(t *testing.T, base, token, q string) response {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": q})
	r := authReq(t, base, token, "POST", "/graphql", body)
	if r.status != http.StatusOK || bytes.Contains(r.body, []byte(`"errors"`)) {
		t.Fatalf("GraphQL: %s", r)
	}
	return r
}

// piiView counts what an answer shows of subjects 7 (Alice) and 8 (Bob):
// values in clear, masks ("***.com" for emails, "***" for names), sealed
// envelopes and erased markers.
type piiView struct{ alice, bob, masked, sealed, erased int }

func viewOf(t *testing.T, r response) piiView {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s", r)
	}
	s := string(r.body)
	return piiView{
		alice:  strings.Count(s, "alice@example.com") + strings.Count(s, "Alice Liddell"),
		bob:    strings.Count(s, "bob@example.com") + strings.Count(s, "Bob Builder"),
		masked: strings.Count(s, `"***.com"`) + strings.Count(s, `"***"`),
		sealed: sealedFields(s),
		erased: strings.Count(s, `{"$erased":true}`),
	}
}

type accessRecord struct {
	Endpoint string   `json:"endpoint"`
	Records  []uint64 `json:"records"`
	Fields   int      `json:"fields_in_clear"`
}

// lastAccess is the newest access record of who on endpoint.
func lastAccess(t *testing.T, base, adminToken, who, endpoint string) accessRecord {
	t.Helper()
	r := authReq(t, base, adminToken, "GET", "/v1/records?source=stele&table=access&actor="+who+"&limit=100", nil)
	var page struct {
		Records []struct {
			After accessRecord `json:"after"`
		} `json:"records"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("access records: %s: %v", r, err)
	}
	for _, rec := range page.Records {
		if rec.After.Endpoint == endpoint {
			return rec.After
		}
	}
	t.Fatalf("no access record of %s on %s: %s", who, endpoint, r)
	return accessRecord{}
}

// An open server (no tokens) refuses to listen beyond loopback.
func TestOpenServerRefusesNonLoopback(t *testing.T) {
	dir := t.TempDir()
	out, code := stele(t, "serve", "--data", dir, "--addr", "0.0.0.0:0", "--stream-enabled", "false")
	if code == 0 || !strings.Contains(out, "not loopback") || !strings.Contains(out, "stele token create --data "+dir) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// sealedFields counts the fields sealed in the compact envelopes of s
// ({"$pii":{"email,name":"…"}} holds two).
func sealedFields(s string) int {
	n := 0
	for _, m := range piiMember.FindAllStringSubmatch(s, -1) {
		for _, list := range envelopeName.FindAllStringSubmatch(m[1], -1) {
			n += strings.Count(list[1], ",") + 1
		}
	}
	return n
}

var (
	piiMember    = regexp.MustCompile(`"\$pii":\{([^}]*)\}`)
	envelopeName = regexp.MustCompile(`"([^"]*)":"`)
)
