package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/projection"
)

// newProjectionEnv is a server whose projections follow its own log: a
// count of records per key, and the state of customers keyed "crm/<id>"
// (a key with a '/').
func newProjectionEnv(t *testing.T) (*env, *projection.Store) {
	t.Helper()
	set, err := projection.Compile([]projection.Definition{
		{Name: "per-key", Key: `string(record.key.id)`, Fold: projection.FoldCount},
		{Name: "customers", Filter: `record.source.table == "customers"`, Key: `record.source.name + "/" + string(record.key.id)`, Fold: projection.FoldState},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := projection.Open(filepath.Join(t.TempDir(), "projections"), set, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnv(t, func(c *api.Config) { c.Projections = st })
	return e, st
}

func TestProjectionsAPI(t *testing.T) {
	e, st := newProjectionEnv(t)
	var body strings.Builder
	for i := range 25 {
		fmt.Fprintln(&body, rec(i, fmt.Sprintf(`"id":"r%d"`, i)))
	}
	fmt.Fprintln(&body, rec(3, `"id":"again"`))
	mustAppend(t, e, "application/x-ndjson", body.String())
	if err := st.CatchUp(context.Background(), e.store); err != nil {
		t.Fatal(err)
	}

	r := e.get(t, "/v1/projections")
	var list struct {
		Projections []projection.Info `json:"projections"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != http.StatusOK {
		t.Fatalf("list: %d %s (%v)", r.status, r.body, err)
	}
	if len(list.Projections) != 2 || list.Projections[0].Name != "per-key" || list.Projections[0].Applied != 26 || list.Projections[0].Keys != 25 || list.Projections[0].Fold != "count" {
		t.Errorf("list = %+v", list.Projections)
	}

	// Page through all 25 keys, 10 at a time.
	var keys []string
	path := "/v1/projections/per-key?limit=10"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		r := e.get(t, path)
		var page struct {
			Name       string `json:"name"`
			Applied    uint64 `json:"applied"`
			Entries    []projection.Entry
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != http.StatusOK {
			t.Fatalf("page: %d %s (%v)", r.status, r.body, err)
		}
		for _, en := range page.Entries {
			keys = append(keys, en.Key)
			want := "1"
			if en.Key == "3" {
				want = "2"
			}
			if string(en.Value) != want {
				t.Errorf("per-key/%s = %s, want %s", en.Key, en.Value, want)
			}
		}
		if page.NextCursor == "" {
			break
		}
		path = "/v1/projections/per-key?limit=10&cursor=" + url.QueryEscape(page.NextCursor)
	}
	if len(keys) != 25 || keys[0] != "0" || keys[1] != "1" || keys[2] != "10" {
		t.Errorf("paged keys (bytewise order) = %v", keys)
	}

	r = e.get(t, "/v1/projections/customers/crm%2F7")
	if r.status != http.StatusOK {
		t.Fatalf("get crm/7: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if m["key"] != "crm/7" || m["name"] != "customers" || !strings.Contains(string(r.body), `"state":{"id":7,"n":"<x&y>"}`) {
		t.Errorf("get crm/7 = %s", r.body)
	}

	for _, tc := range []struct {
		path   string
		status int
		field  string
		inMsg  string
	}{
		{"/v1/projections/nope", 404, "", `no projection named "nope"`},
		{"/v1/projections/nope/1", 404, "", `no projection named "nope"`},
		{"/v1/projections/per-key/secret-key", 404, "", "holds no value for that key"},
		{"/v1/projections/per-key?limit=0", 400, "limit", "limit"},
		{"/v1/projections/per-key?limit=abc", 400, "limit", "limit"},
		{"/v1/projections/per-key?cursor=%21%21", 400, "cursor", "cursor"},
		{"/v1/projections/per-key?sort=asc", 400, "sort", "unknown query parameter"},
		{"/v1/projections?limit=1", 400, "limit", "unknown query parameter"},
		{"/v1/projections/per-key/1?x=1", 400, "x", "unknown query parameter"},
	} {
		r := e.get(t, tc.path)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.path, r.status, tc.status, r.body)
			continue
		}
		m := r.json(t)
		if f, _ := m["field"].(string); f != tc.field {
			t.Errorf("%s: field %q, want %q", tc.path, f, tc.field)
		}
		if msg, _ := m["error"].(string); !strings.Contains(msg, tc.inMsg) || strings.Contains(msg, "secret-key") {
			t.Errorf("%s: error %q, want it to contain %q and not the key", tc.path, msg, tc.inMsg)
		}
	}
	if r := e.do(t, http.MethodDelete, "/v1/projections/per-key/1", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: status %d", r.status)
	}
}

func TestProjectionsAPIWithoutProjections(t *testing.T) {
	e := newEnv(t)
	if r := e.get(t, "/v1/projections"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"projections":[]`) {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := e.get(t, "/v1/projections/any"); r.status != http.StatusNotFound {
		t.Errorf("page: %d %s", r.status, r.body)
	}
}
