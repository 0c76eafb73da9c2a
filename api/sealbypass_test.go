package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stele/stele/auth"
)

// post sends body to /v1/records as role and returns the status, the
// answer and the seq of the first record when stored.
func (e *guardEnv) post(t *testing.T, role auth.Role, body string) (int, []byte, uint64) {
	t.Helper()
	resp := e.open(t, role, http.MethodPost, "/v1/records", "application/json", body)
	b := readAll(t, resp)
	var out struct {
		Records []struct {
			Seq uint64 `json:"seq"`
		} `json:"records"`
	}
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(b, &out); err != nil || len(out.Records) == 0 {
			t.Fatalf("answer %s: %v", b, err)
		}
		return resp.StatusCode, b, out.Records[0].Seq
	}
	return resp.StatusCode, b, 0
}

// stored is the record at seq as the leaf holds it (view=stored).
func (e *guardEnv) stored(t *testing.T, seq uint64) []byte {
	t.Helper()
	return e.read(t, auth.RoleAdmin, fmt.Sprintf("/v1/records/%d?view=stored", seq))
}

func (e *guardEnv) read(t *testing.T, role auth.Role, path string) []byte {
	t.Helper()
	resp := e.open(t, role, http.MethodGet, path, "", "")
	b := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as %s: %d %s", path, role, resp.StatusCode, b)
	}
	return b
}

const customersSource = `"source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"}`

// TestNoOpBypassesSealing: personal data in any image of any op — ddl and
// truncate included, before, after and key — is sealed under the table's
// schema, or the record is refused naming the field; once the subject is
// erased, it is unreadable to every role.
func TestNoOpBypassesSealing(t *testing.T) {
	e := newGuardEnv(t)
	cases := []struct{ name, body string }{
		{"ddl after", `{` + customersSource + `,"op":"ddl","key":{"object":"public.customers"},"tx":{"position":"0/A1"},"after":{"id":1,"email":"smuggled@example.com"}}`},
		{"truncate before", `{` + customersSource + `,"op":"truncate","key":{"table":"customers"},"tx":{"position":"0/A2"},"before":{"id":1,"email":"smuggled@example.com"}}`},
		{"ddl key", `{` + customersSource + `,"op":"ddl","key":{"id":1,"email":"smuggled@example.com"},"tx":{"position":"0/A3"}}`},
	}
	var seqs []uint64
	for _, c := range cases {
		status, b, seq := e.post(t, auth.RoleService, c.body)
		if status != http.StatusCreated {
			t.Fatalf("%s: %d %s", c.name, status, b)
		}
		st := e.stored(t, seq)
		if bytes.Contains(st, []byte("smuggled@example.com")) || !bytes.Contains(st, []byte(`"$pii":`)) || !bytes.Contains(st, []byte(`"subject":"crm.public.customers"`)) {
			t.Fatalf("%s: stored in clear or without the schema:\n%s", c.name, st)
		}
		for _, role := range []auth.Role{auth.RoleAnalyst, auth.RoleService} {
			if b := e.read(t, role, fmt.Sprintf("/v1/records/%d", seq)); bytes.Contains(b, []byte("smuggled@example.com")) {
				t.Fatalf("%s: %s reads it in clear:\n%s", c.name, role, b)
			}
		}
		if b := e.read(t, auth.RoleAuditor, fmt.Sprintf("/v1/records/%d", seq)); !bytes.Contains(b, []byte("smuggled@example.com")) {
			t.Fatalf("%s: the auditor cannot read the sealed value:\n%s", c.name, b)
		}
		seqs = append(seqs, seq)
	}

	// Personal data with no subject to seal it under is refused, naming
	// the field that is missing.
	status, b, _ := e.post(t, auth.RoleService, `{`+customersSource+`,"op":"ddl","key":{"object":"public.customers"},"tx":{"position":"0/B1"},"after":{"email":"nobody@example.com"}}`)
	if status != http.StatusBadRequest || !bytes.Contains(b, []byte(`"field":"after.id"`)) {
		t.Fatalf("ddl with personal data and no subject: %d %s", status, b)
	}

	// A ddl record as capture writes it (the DDL command, no row) still
	// passes, unchanged, under the table's schema.
	capture := `{"command":"ALTER TABLE","objects":[{"identity":"public.customers","schema":"public","table":"customers"}]}`
	status, b, seq := e.post(t, auth.RoleService, `{`+customersSource+`,"op":"ddl","key":{"object":"public.customers"},"tx":{"position":"0/C1"},"after":`+capture+`}`)
	if status != http.StatusCreated {
		t.Fatalf("capture-shaped ddl: %d %s", status, b)
	}
	if st := e.stored(t, seq); !bytes.Contains(st, []byte(`"after":`+capture)) {
		t.Fatalf("capture-shaped ddl changed:\n%s", st)
	}

	resp := e.open(t, auth.RoleAdmin, http.MethodPost, "/v1/subjects/1/erase", "application/json", `{"reason":"ticket 1"}`)
	if b := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("erase: %d %s", resp.StatusCode, b)
	}
	for _, seq := range seqs {
		b := e.read(t, auth.RoleAuditor, fmt.Sprintf("/v1/records/%d", seq))
		if bytes.Contains(b, []byte("smuggled@example.com")) || !bytes.Contains(b, []byte(`{"$erased":true}`)) {
			t.Fatalf("record %d still readable after erasure:\n%s", seq, b)
		}
	}
}

// TestClientSchemaRefIsCheckedNotTrusted: a schema reference a client sends
// is checked against the registry and never stored as sent, and a record
// cannot step around its table's schema by naming another database schema.
func TestClientSchemaRefIsCheckedNotTrusted(t *testing.T) {
	e := newGuardEnv(t)
	row := `"op":"insert","key":{"id":5},"after":{"id":5,"email":"five@example.com"}`
	for _, c := range []struct{ name, body, field string }{
		{"unknown version", `{` + customersSource + `,` + row + `,"schema":{"subject":"crm.public.customers","version":9}}`, "schema.version"},
		{"other subject", `{` + customersSource + `,` + row + `,"schema":{"subject":"crm.public.leads","version":1}}`, "schema.subject"},
		{"no database schema", `{"source":{"name":"crm","kind":"postgres","table":"customers"},` + row + `}`, "source.schema"},
		{"other database schema", `{"source":{"name":"crm","kind":"postgres","schema":"shadow","table":"customers"},` + row + `}`, "source.schema"},
	} {
		status, b, _ := e.post(t, auth.RoleService, c.body)
		if status != http.StatusBadRequest || !bytes.Contains(b, []byte(`"field":"`+c.field+`"`)) || bytes.Contains(b, []byte("five@example.com")) {
			t.Fatalf("%s: %d %s, want 400 naming %s", c.name, status, b, c.field)
		}
	}
	// A reference that names a version the registry holds is accepted;
	// what is stored is the schema the record was sealed under.
	status, b, seq := e.post(t, auth.RoleService, `{`+customersSource+`,`+row+`,"schema":{"subject":"crm.public.customers","version":1}}`)
	if status != http.StatusCreated {
		t.Fatalf("valid reference: %d %s", status, b)
	}
	if st := e.stored(t, seq); !bytes.Contains(st, []byte(`"schema":{"subject":"crm.public.customers","version":1}`)) || bytes.Contains(st, []byte("five@example.com")) {
		t.Fatalf("stored:\n%s", st)
	}
	// A table with no schema anywhere is not PII-aware and passes as sent.
	if status, b, _ := e.post(t, auth.RoleService, `{"source":{"name":"shop","table":"orders"},"op":"insert","key":{"id":1},"after":{"total":3}}`); status != http.StatusCreated {
		t.Fatalf("table without a schema: %d %s", status, b)
	}

	// Without a registry, no reference can be checked: it is refused.
	plain := newEnv(t)
	r := plain.post(t, "application/json", `{"source":{"name":"shop","table":"orders"},"op":"insert","key":{"id":1},"schema":{"subject":"shop.orders","version":1}}`)
	if r.status != http.StatusBadRequest || !bytes.Contains(r.body, []byte(`"field":"schema"`)) {
		t.Fatalf("reference without a registry: %d %s", r.status, r.body)
	}
}

// TestForgedEnvelopesRefused: a client cannot store what readers would
// take for sealed personal data — a top-level "$pii" member or a
// {"$sealed":…} object in any image — whatever its table's schema, or
// lack of one: readers would try to open it, and could be shown a forged
// "erased" value or a decryption failure for a record that never held
// personal data.
func TestForgedEnvelopesRefused(t *testing.T) {
	e := newGuardEnv(t)
	notes := `"source":{"name":"crm","kind":"postgres","schema":"public","table":"notes"}`
	cases := []struct{ name, body, field string }{
		{"$pii in a table without a schema", `{` + notes + `,"op":"insert","key":{"id":1},"tx":{"position":"0/D1"},"after":{"id":1,"$pii":{"name":"AAAA"}}}`, "after.$pii"},
		{"$sealed in a table without a schema", `{` + notes + `,"op":"update","key":{"id":1},"tx":{"position":"0/D2"},"before":{"id":1,"text":{"$sealed":{"alg":"A256GCM","ct":"AA","kid":"k1"}}},"after":{"id":1,"text":"x"}}`, "before"},
		{"$sealed in the key", `{` + notes + `,"op":"delete","key":{"id":{"$sealed":{"alg":"A256GCM","ct":"AA","kid":"k1"}}},"tx":{"position":"0/D3"},"before":{"id":1}}`, "key"},
		{"$sealed in a schema's free field", `{` + customersSource + `,"op":"insert","key":{"id":2},"tx":{"position":"0/D4"},"after":{"id":2,"notes":{"$sealed":{"alg":"A256GCM","ct":"AA","kid":"k1"}}}}`, "after"},
	}
	for _, c := range cases {
		status, b, _ := e.post(t, auth.RoleService, c.body)
		if status != http.StatusBadRequest || !bytes.Contains(b, []byte(`"field":"`+c.field)) || !bytes.Contains(b, []byte("reserved for sealed personal data")) {
			t.Errorf("%s: %d %s", c.name, status, b)
		}
	}
	// The same names as plain data stay accepted where they are not
	// envelopes: nested "$pii" members and "$sealed" strings.
	status, b, _ := e.post(t, auth.RoleService, `{`+notes+`,"op":"insert","key":{"id":3},"tx":{"position":"0/D5"},"after":{"id":3,"text":"{\"$sealed\":1}","meta":{"$pii":1}}}`)
	if status != http.StatusCreated {
		t.Fatalf("plain data that only names the markers: %d %s", status, b)
	}
}
