package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/api"
	"github.com/stele/stele/api/graphql"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/export"
	"github.com/stele/stele/index"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/schema"
	"github.com/stele/stele/sysrecord"
)

// realPrivacy is the API's view of the real privacy layer, as cmd/stele
// wires it: the Guard reveals, the Ledger records accesses in the log.
type realPrivacy struct {
	*privacy.Guard
	*privacy.Ledger
}

// guardEnv is a server over the real stack: log with the privacy layer
// sealing on append, index, query engine, GraphQL, exports and tokens.
type guardEnv struct {
	srv    *httptest.Server
	store  *logstore.Store
	keys   *keystore.Store
	reg    *schema.Registry
	dir    string // the log's directory
	tokens map[auth.Role]string
}

const customersSchema = `{"type":"object","x-retention":"P10Y","properties":{
	"id":{"type":"integer","x-subject":true},"email":{"type":"string","x-pii":true},"plan":{"type":"string"}},"required":["id"]}`

func newGuardEnv(t *testing.T) *guardEnv { return newGuardEnvOn(t, nil) }

// newGuardEnvOn is newGuardEnv with the keystore on keysFS (nil: the
// operating system's), for fault injection.
func newGuardEnvOn(t *testing.T, keysFS vfs.FS) *guardEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keystore"), master, keystore.Options{FS: keysFS})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Put(ctx, "crm.public.customers", []byte(customersSchema)); err != nil {
		t.Fatal(err)
	}
	guard, err := privacy.New(ctx, keys, reg, privacy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Origin: "guard.test/log", Hook: ix, Sealer: guard})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &guardEnv{store: store, keys: keys, reg: reg, dir: filepath.Join(dir, "log"), tokens: map[auth.Role]string{}}
	for _, role := range auth.Roles {
		if e.tokens[role], err = toks.Create("t-"+string(role), role); err != nil {
			t.Fatal(err)
		}
	}
	engine := query.New(store, ix)
	e.srv = httptest.NewServer(api.New(api.Config{
		Log:      store,
		Query:    engine,
		GraphQL:  graphql.New(graphql.Options{Log: store, Query: engine}),
		Exporter: export.New(store, engine),
		Registry: prometheus.NewRegistry(),
		Auth:     toks,
		Privacy:  realPrivacy{guard, privacy.NewLedger(guard, store, ix)},
		Schemas:  reg,
		// A live stream that waits for new records sends a heartbeat
		// often enough for the test to end it quickly.
		StreamHeartbeat: 50 * time.Millisecond,
	}))
	t.Cleanup(func() {
		e.srv.Close()
		if err := store.Close(); err != nil {
			t.Error(err)
		}
		if err := ix.Close(); err != nil {
			t.Error(err)
		}
		keys.Close()
	})
	return e
}

// open sends a request as role and returns the response once its status
// line and headers — the first bytes of the answer — have arrived; the
// caller reads and closes the body.
func (e *guardEnv) open(t *testing.T, role auth.Role, method, path, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// accessRecords are the access records in the log now: who, through which
// endpoint, which seqs.
type accessEntry struct {
	role     string
	endpoint string
	seqs     []uint64
}

func (e *guardEnv) accessRecords(t *testing.T) []accessEntry {
	t.Helper()
	var out []accessEntry
	for seq := range e.store.Size() {
		r, err := e.store.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		if !sysrecord.IsSystem(r.Source) || r.Source.Table != sysrecord.AccessTable {
			continue
		}
		var after struct {
			Endpoint string   `json:"endpoint"`
			Records  []uint64 `json:"records"`
		}
		var actor struct {
			Role string `json:"role"`
		}
		if err := json.Unmarshal(r.After, &after); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r.Actor, &actor); err != nil {
			t.Fatal(err)
		}
		out = append(out, accessEntry{actor.Role, after.Endpoint, after.Records})
	}
	return out
}

// seed appends, as a service, two customers whose email is personal data;
// it returns their seqs.
func (e *guardEnv) seed(t *testing.T) []uint64 {
	t.Helper()
	var body strings.Builder
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(&body, `{"source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"insert","key":{"id":%d},"tx":{"position":"0/%d"},`+
			`"occurred_at":"2026-01-01T00:00:00Z","after":{"id":%d,"email":"user%d@example.com","plan":"gold"}}`+"\n", i, i, i, i)
	}
	resp := e.open(t, auth.RoleService, http.MethodPost, "/v1/records", "application/x-ndjson", body.String())
	b := readAll(t, resp)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("seed: %d %s", resp.StatusCode, b)
	}
	var out struct {
		Records []struct {
			Seq uint64 `json:"seq"`
		} `json:"records"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range out.Records {
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

// TestEveryReadPathGoesThroughTheReadGuard: on every read path, an
// auditor's clear read is in a durable access record by the time the first
// byte of the answer arrives, and an analyst sees masks and causes no
// access record; a service sees the envelopes.
func TestEveryReadPathGoesThroughTheReadGuard(t *testing.T) {
	e := newGuardEnv(t)
	seqs := e.seed(t)
	gql := func(q string) string { b, _ := json.Marshal(map[string]string{"query": q}); return string(b) }
	paths := []struct {
		name, method, path, body string
		seqs                     []uint64 // the records the answer shows
	}{
		{"REST list", http.MethodGet, "/v1/records?source=crm&order=asc", "", seqs},
		{"record by seq", http.MethodGet, fmt.Sprintf("/v1/records/%d", seqs[1]), "", seqs[1:]},
		{"entity history", http.MethodGet, "/v1/entities/crm/customers/1/history", "", seqs[:1]},
		{"entity state", http.MethodGet, "/v1/entities/crm/customers/2/state", "", seqs[1:]},
		{"table state", http.MethodGet, "/v1/tables/crm/customers/state", "", seqs},
		{"GraphQL", http.MethodPost, "/graphql", gql(`{records(filter:{source:"crm"}, order: ASC){nodes{seq after}}}`), seqs},
		{"export", http.MethodGet, "/v1/export?source=crm&view=clear", "", seqs},
		{"SSE", http.MethodGet, "/v1/stream?from=0&source=crm", "", seqs},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ct := ""
			if p.body != "" {
				ct = "application/json"
			}
			before := len(e.accessRecords(t))
			resp := e.open(t, auth.RoleAuditor, p.method, p.path, ct, p.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("auditor: %d %s", resp.StatusCode, readAll(t, resp))
			}
			var body []byte
			if p.name == "SSE" {
				// The stream's first comment line goes out before any
				// record: take the first event carrying data.
				body = firstEvents(t, resp, len(p.seqs))
			}
			// The first byte of the answer (or of its first record) has
			// arrived: the access record must already be in the log.
			acc := e.accessRecords(t)[before:]
			if len(acc) == 0 || acc[0].role != string(auth.RoleAuditor) || !slices.Equal(acc[0].seqs, p.seqs) {
				t.Fatalf("access records when the answer arrived: %+v, want one by auditor naming %v", acc, p.seqs)
			}
			if p.name != "SSE" {
				body = readAll(t, resp)
			}
			if !bytes.Contains(body, []byte("@example.com")) || bytes.Contains(body, []byte(`"$pii":`)) {
				t.Fatalf("auditor's answer is not in clear:\n%s", body)
			}

			for _, role := range []auth.Role{auth.RoleAnalyst, auth.RoleService} {
				before = len(e.accessRecords(t))
				resp = e.open(t, role, p.method, p.path, ct, p.body)
				if p.name == "export" {
					// A clear export is refused to roles that do not see
					// personal data; the stored export is the sealed form.
					if b := readAll(t, resp); resp.StatusCode != http.StatusForbidden {
						t.Fatalf("%s: clear export answered %d %s", role, resp.StatusCode, b)
					}
					resp = e.open(t, role, p.method, strings.TrimSuffix(p.path, "&view=clear"), ct, p.body)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s", role, resp.StatusCode, readAll(t, resp))
				}
				if p.name == "SSE" {
					body = firstEvents(t, resp, len(p.seqs))
				} else {
					body = readAll(t, resp)
				}
				if bytes.Contains(body, []byte("@example.com")) {
					t.Fatalf("%s sees personal data in clear:\n%s", role, body)
				}
				switch {
				case role == auth.RoleAnalyst && p.name != "export" && !bytes.Contains(body, []byte(`***`)):
					t.Fatalf("analyst's answer shows no mask:\n%s", body)
				case role == auth.RoleService && !bytes.Contains(body, []byte(`"$pii":`)):
					t.Fatalf("service's answer shows no envelope:\n%s", body)
				}
				if acc := e.accessRecords(t)[before:]; len(acc) != 0 {
					t.Fatalf("%s's read was recorded as a clear access: %+v", role, acc)
				}
			}
		})
	}
}

// firstEvents reads a live stream until n events with data have arrived,
// closes it and returns them.
func firstEvents(t *testing.T, resp *http.Response, n int) []byte {
	t.Helper()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var out []byte
	for got := 0; got < n && sc.Scan(); {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("data: ")) {
			out = append(append(out, line...), '\n')
			got++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
