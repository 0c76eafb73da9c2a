package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/schema"
)

const customersV1 = `{"type": "object", "required": ["id"], "properties": {
  "id": {"type": "integer", "x-subject": true, "x-retention": "P7Y"},
  "email": {"type": "string", "x-pii": true, "x-searchable": true}}}`

const customersV2 = `{"type": "object", "required": ["id"], "properties": {
  "id": {"type": "integer", "x-subject": true, "x-retention": "P7Y"},
  "email": {"type": "string", "x-pii": true, "x-searchable": true},
  "tier": {"type": "string"}}}`

func withSchemas(t *testing.T) (option, *schema.Registry) {
	reg, err := schema.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return func(c *api.Config) { c.Schemas = reg }, reg
}

func (e *env) put(t *testing.T, path, body string) response {
	return e.do(t, http.MethodPut, path, "application/json", []byte(body))
}

func TestSchemaEndpoints(t *testing.T) {
	opt, reg := withSchemas(t)
	e := newEnv(t, opt)
	const path = "/v1/schemas/crm.public.customers"

	r := e.put(t, path, customersV1)
	if r.status != http.StatusCreated || strings.TrimSpace(string(r.body)) != `{"version":1}` {
		t.Fatalf("PUT v1: %d %s", r.status, r.body)
	}
	r = e.put(t, path, customersV1)
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"version":1}` {
		t.Fatalf("PUT identical: %d %s, want 200 version 1", r.status, r.body)
	}
	r = e.do(t, http.MethodPut, path, "application/schema+json", []byte(customersV2))
	if r.status != http.StatusCreated || strings.TrimSpace(string(r.body)) != `{"version":2}` {
		t.Fatalf("PUT v2: %d %s", r.status, r.body)
	}

	r = e.get(t, path)
	var got struct {
		Subject string          `json:"subject"`
		Version int             `json:"version"`
		Schema  json.RawMessage `json:"schema"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &got) != nil {
		t.Fatalf("GET latest: %d %s", r.status, r.body)
	}
	latest, _ := reg.Latest("crm.public.customers")
	if got.Subject != "crm.public.customers" || got.Version != 2 || string(got.Schema) != string(latest.Raw) {
		t.Errorf("GET latest = %+v", got)
	}
	r = e.get(t, path+"/versions/1")
	if r.status != http.StatusOK || json.Unmarshal(r.body, &got) != nil || got.Version != 1 || strings.Contains(string(got.Schema), "tier") {
		t.Errorf("GET version 1: %d %s", r.status, r.body)
	}
	r = e.get(t, path+"/versions")
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"subject":"crm.public.customers","versions":[1,2]}` {
		t.Errorf("GET versions: %d %s", r.status, r.body)
	}
	e.put(t, "/v1/schemas/app.orders", `{"type": "object"}`)
	r = e.get(t, "/v1/schemas")
	want := `{"subjects":[{"subject":"app.orders","latest_version":1},{"subject":"crm.public.customers","latest_version":2}]}`
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != want {
		t.Errorf("GET /v1/schemas: %d %s, want %s", r.status, r.body, want)
	}
}

func TestSchemaEndpointErrors(t *testing.T) {
	opt, _ := withSchemas(t)
	e := newEnv(t, opt)
	const path = "/v1/schemas/crm.public.customers"
	if r := e.put(t, path, customersV1); r.status != http.StatusCreated {
		t.Fatalf("PUT v1: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		name, method, path, contentType, body string
		status                                int
		field                                 string // "-" for absent
		msg                                   string
	}{
		{"bad annotation", "PUT", path, "application/json", strings.Replace(customersV2, `"P7Y"`, `"7 years"`, 1), 400, "/properties/id/x-retention", "ISO 8601"},
		{"two subjects", "PUT", path, "", strings.Replace(customersV2, `"tier": {"type": "string"}`, `"tier": {"type": "string", "x-subject": true}`, 1), 400, "/properties/tier/x-subject", "already has x-subject"},
		{"not JSON", "PUT", path, "", `{"type":`, 400, "-", "not valid JSON"},
		{"not JSON Schema", "PUT", path, "", `{"type": 5}`, 400, "/type", "JSON Schema"},
		{"bad subject", "PUT", "/v1/schemas/customers", "", customersV1, 400, "subject", "invalid subject"},
		{"incompatible: new required", "PUT", path, "", strings.Replace(customersV2, `"required": ["id"]`, `"required": ["id", "tier"]`, 1), 409, "/required", `"tier" became required`},
		{"incompatible: PII lost", "PUT", path, "", strings.Replace(customersV1, `"x-pii": true, "x-searchable": true`, `"description": "no longer PII"`, 1), 409, "/properties/email", "may not lose it"},
		{"wrong content type", "PUT", path, "text/plain", customersV1, 415, "-", "Content-Type"},
		{"unknown subject", "GET", "/v1/schemas/app.nothing", "", "", 404, "-", "no schema for subject"},
		{"unknown version", "GET", path + "/versions/9", "", "", 404, "-", "no version 9"},
		{"bad version", "GET", path + "/versions/x", "", "", 400, "version", "positive integer"},
		{"no delete", "DELETE", path, "", "", 405, "-", "not allowed"},
		{"no post", "POST", "/v1/schemas", "", "{}", 405, "-", "not allowed"},
		{"unknown parameter", "GET", path + "?pretty=1", "", "", 400, "pretty", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.method, c.path, c.contentType, []byte(c.body))
			if r.status != c.status {
				t.Fatalf("status %d, body %s; want %d", r.status, r.body, c.status)
			}
			m := r.json(t)
			field, has := m["field"]
			if c.field == "-" && has || c.field != "-" && field != c.field {
				t.Errorf("field %v (present %v), want %q; body %s", field, has, c.field, r.body)
			}
			if msg, _ := m["error"].(string); !strings.Contains(msg, c.msg) {
				t.Errorf("error %q, want it to contain %q", msg, c.msg)
			}
		})
	}
	// Nothing was registered by the failures.
	if r := e.get(t, path+"/versions"); !strings.Contains(string(r.body), `"versions":[1]`) {
		t.Errorf("versions after failures: %s", r.body)
	}
}

func TestSchemaRoutesOnlyWithRegistry(t *testing.T) {
	e := newEnv(t)
	if r := e.get(t, "/v1/schemas"); r.status != http.StatusNotFound {
		t.Errorf("GET /v1/schemas without a registry: %d, want 404", r.status)
	}
}

func TestSchemaEndpointsRefuseTamperedLog(t *testing.T) {
	opt, _ := withSchemas(t)
	e := newEnv(t, opt)
	e.setHealth(api.StatusTampered, "leaf 3 changed")
	if r := e.put(t, "/v1/schemas/app.orders", `{"type": "object"}`); r.status != http.StatusServiceUnavailable {
		t.Errorf("PUT on a tampered log: %d, want 503", r.status)
	}
}
