package api_test

import (
	"net/url"
	"strings"
	"testing"
)

// A REST page of large records ends at the page budget (16 MiB) with a
// next_cursor, instead of holding 1,000 records of 1 MiB in memory; paging
// on reaches every record once.
func TestRecordsPageBudget(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat("x", 900<<10)
	var batch []string
	for i := range 24 {
		batch = append(batch, rec(i, `"cause":{"pad":"`+big+`"}`))
	}
	for i := 0; i < len(batch); i += 4 {
		mustAppend(t, e, "application/json", "["+strings.Join(batch[i:i+4], ",")+"]")
	}
	p := e.page(t, "/v1/records?limit=100&order=asc")
	if n := len(p.Records); n == 0 || n >= 24 || p.NextCursor == "" {
		t.Fatalf("first page of 24 records of 900 KiB: %d records, next_cursor %q", n, p.NextCursor)
	}
	seen := len(p.Records)
	for p.NextCursor != "" {
		p = e.page(t, "/v1/records?limit=100&order=asc&cursor="+url.QueryEscape(p.NextCursor))
		seen += len(p.Records)
	}
	if seen != 24 {
		t.Fatalf("paging found %d of 24 records", seen)
	}
}
