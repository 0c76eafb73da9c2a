package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestTableState(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e, "application/x-ndjson", strings.Join([]string{
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":1},"after":{"id":1,"v":"a"},"occurred_at":"2026-01-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":2},"after":{"id":2,"v":"b"},"occurred_at":"2026-01-02T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"after":{"v":"a2"},"occurred_at":"2026-01-03T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"delete","key":{"id":2},"before":{"id":2,"v":"b"},"occurred_at":"2026-01-04T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"truncate","key":{"table":"t"},"occurred_at":"2026-01-05T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":3},"after":{"id":3,"v":"<c&d>"},"occurred_at":"2026-01-06T00:00:00Z"}`,
	}, "\n"))
	for _, c := range []struct{ at, want string }{
		{"2025-12-31T00:00:00Z", ""},
		{"2026-01-02T00:00:00Z", `{"key":"1","state":{"id":1,"v":"a"},"seq":0,"occurred_at":"2026-01-01T00:00:00Z"}
{"key":"2","state":{"id":2,"v":"b"},"seq":1,"occurred_at":"2026-01-02T00:00:00Z"}
`},
		{"2026-01-03T12:00:00Z", `{"key":"1","state":{"id":1,"v":"a2"},"seq":2,"occurred_at":"2026-01-03T00:00:00Z"}
{"key":"2","state":{"id":2,"v":"b"},"seq":1,"occurred_at":"2026-01-02T00:00:00Z"}
`},
		{"2026-01-04T00:00:00Z", `{"key":"1","state":{"id":1,"v":"a2"},"seq":2,"occurred_at":"2026-01-03T00:00:00Z"}
`},
		{"2026-01-05T00:00:00Z", ""},
		{"", `{"key":"3","state":{"id":3,"v":"<c&d>"},"seq":5,"occurred_at":"2026-01-06T00:00:00Z"}
`}, // default: now
	} {
		path := "/v1/tables/crm/t/state"
		if c.at != "" {
			path += "?at=" + c.at
		}
		r := e.get(t, path)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%s: status %d, %s: %s", path, r.status, r.header.Get("Content-Type"), r.body)
		}
		if string(r.body) != c.want {
			t.Fatalf("%s:\n got  %s\n want %s", path, r.body, c.want)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(r.body), []byte("\n")) {
			if len(line) > 0 && !json.Valid(line) {
				t.Fatalf("%s: line %s is not JSON", path, line)
			}
		}
	}

	for _, c := range []struct {
		path, field string
		status      int
	}{
		{"/v1/tables/crm/t/state?at=yesterday", "at", 400},
		{"/v1/tables/crm/t/state?sorce=crm", "sorce", 400},
		{"/v1/tables/crm/t/state?at=2026-01-01T00:00:00Z&at=2026-01-02T00:00:00Z", "at", 400},
	} {
		r := e.get(t, c.path)
		if r.status != c.status || r.json(t)["field"] != c.field {
			t.Errorf("%s: status %d body %s, want %d naming %q", c.path, r.status, r.body, c.status, c.field)
		}
	}
	if r := e.do(t, http.MethodDelete, "/v1/tables/crm/t/state", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: status %d", r.status)
	}
	e.setHealth("tampered", "seq 3 changed")
	if r := e.get(t, "/v1/tables/crm/t/state"); r.status != http.StatusServiceUnavailable {
		t.Errorf("tampered log: status %d", r.status)
	}
}
