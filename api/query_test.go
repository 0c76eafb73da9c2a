package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

type pageResp struct {
	Records    []map[string]any `json:"records"`
	NextCursor string           `json:"next_cursor"`
}

func (e *env) page(t *testing.T, path string) pageResp {
	t.Helper()
	r := e.get(t, path)
	if r.status != http.StatusOK {
		t.Fatalf("%s: status %d %s", path, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", path, ct)
	}
	var p pageResp
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%s: %v in %s", path, err, r.body)
	}
	return p
}

func pageSeqs(p pageResp) string {
	s := make([]string, len(p.Records))
	for i, r := range p.Records {
		s[i] = fmt.Sprint(r["seq"])
	}
	return strings.Join(s, ",")
}

func TestListRecords(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 10) // keys 0..9, actors u-0,u-1,u-2 in turn
	if got := pageSeqs(e.page(t, "/v1/records")); got != "9,8,7,6,5,4,3,2,1,0" {
		t.Fatalf("default order: %s", got)
	}
	if got := pageSeqs(e.page(t, "/v1/records?order=asc&actor=u-1")); got != "1,4,7" {
		t.Fatalf("actor filter: %s", got)
	}
	if got := pageSeqs(e.page(t, "/v1/records?source=crm&table=customers&key=4")); got != "4" {
		t.Fatalf("key filter: %s", got)
	}
	if got := pageSeqs(e.page(t, "/v1/records?op=insert")); got != "" {
		t.Fatalf("op filter: %s", got)
	}
	// Walk pages of 4 with the cursor.
	var all []string
	path := "/v1/records?limit=4&order=asc"
	for range 10 {
		p := e.page(t, path)
		all = append(all, pageSeqs(p))
		if p.NextCursor == "" {
			break
		}
		path = "/v1/records?limit=4&order=asc&cursor=" + url.QueryEscape(p.NextCursor)
	}
	if got := strings.Join(all, "|"); got != "0,1,2,3|4,5,6,7|8,9" && got != "0,1,2,3|4,5,6,7|8,9|" {
		t.Fatalf("pages: %s", got)
	}
	// Record JSON starts with seq, as record.AppendJSON renders it.
	r := e.get(t, "/v1/records?limit=1")
	if !strings.HasPrefix(string(r.body), `{"records":[{"seq":9,"id":`) {
		t.Fatalf("body %s", r.body)
	}
}

func TestListRecordsBadParams(t *testing.T) {
	e := newEnv(t)
	appendN(t, e, 2)
	for _, tc := range []struct{ query, field string }{
		{"op=upsert", "op"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"},
		{"since=2026-02-01T00:00:00Z&until=2026-02-01T00:00:00Z", "until"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"order=sideways", "order"},
		{"key=7", "key"},
		{"source=crm&key=7", "key"},
		{"sorce=crm", "sorce"},
		{"source=a&source=b", "source"},
		{"cursor=%21%21garbage", "cursor"},
	} {
		r := e.get(t, "/v1/records?"+tc.query)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s)", tc.query, r.status, r.body)
			continue
		}
		if f := r.json(t)["field"]; f != tc.field {
			t.Errorf("%s: field %v, want %s (%s)", tc.query, f, tc.field, r.body)
		}
	}
}

func TestEntityHistoryAndState(t *testing.T) {
	e := newEnv(t)
	body := strings.Join([]string{
		`{"source":{"name":"crm","table":"customers"},"op":"insert","key":{"id":"a/b"},"after":{"v":1},"occurred_at":"2026-01-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"customers"},"op":"insert","key":{"id":"other"},"after":{"v":9},"occurred_at":"2026-01-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"customers"},"op":"update","key":{"id":"a/b"},"before":{"v":1},"after":{"v":2},"occurred_at":"2026-02-01T00:00:00Z"}`,
		`{"source":{"name":"crm","table":"customers"},"op":"delete","key":{"id":"a/b"},"before":{"v":2},"occurred_at":"2026-03-01T00:00:00Z"}`,
	}, "\n")
	mustAppend(t, e, "application/x-ndjson", body)
	base := "/v1/entities/crm/customers/" + url.PathEscape("a/b")
	if got := pageSeqs(e.page(t, base+"/history")); got != "0,2,3" {
		t.Fatalf("history: %s", got)
	}
	if got := pageSeqs(e.page(t, base+"/history?limit=2")); got != "0,2" {
		t.Fatalf("history page: %s", got)
	}
	if r := e.get(t, base+"/history?order=desc"); r.status != 400 || r.json(t)["field"] != "order" {
		t.Fatalf("history takes no order: %d %s", r.status, r.body)
	}
	r := e.get(t, base+"/state?at=2026-02-15T00:00:00Z")
	if r.status != http.StatusOK {
		t.Fatalf("state: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if m["source"] != "crm" || m["table"] != "customers" || m["key"] != "a/b" || fmt.Sprint(m["seq"]) != "2" ||
		m["at"] != "2026-02-15T00:00:00Z" || m["occurred_at"] != "2026-02-01T00:00:00Z" {
		t.Fatalf("state: %s", r.body)
	}
	if st, _ := json.Marshal(m["state"]); string(st) != `{"v":2}` {
		t.Fatalf("state image %s", st)
	}
	for _, at := range []string{"2025-12-31T00:00:00Z", "2026-03-02T00:00:00Z"} {
		r := e.get(t, base+"/state?at="+at)
		if r.status != http.StatusNotFound || !strings.Contains(r.json(t)["error"].(string), "did not exist at") {
			t.Fatalf("state at %s: %d %s", at, r.status, r.body)
		}
		if strings.Contains(string(r.body), "a/b") {
			t.Fatalf("404 echoes the key: %s", r.body)
		}
	}
	// at defaults to the configured clock (2026-03-31): deleted by then.
	if r := e.get(t, base+"/state"); r.status != http.StatusNotFound {
		t.Fatalf("state now: %d %s", r.status, r.body)
	}
	if r := e.get(t, base+"/state?at=soon"); r.status != 400 || r.json(t)["field"] != "at" {
		t.Fatalf("bad at: %d %s", r.status, r.body)
	}
}
