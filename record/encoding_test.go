package record_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// TestBodySizeCoversTheBody: the estimate callers allocate by holds the
// whole body of ordinary records, so appending never grows the buffer.
func TestBodySizeCoversTheBody(t *testing.T) {
	idx := int64(3)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, r := range []*record.Record{
		{ID: "r1", Source: record.Source{Name: "crm", Table: "t"}, Op: record.OpInsert, Key: []byte(`{"id":1}`), OccurredAt: at},
		{ID: "p" + strings.Repeat("x", 26), Source: record.Source{Name: "crm", Kind: "postgres", Database: "db", Schema: "public", Table: "customers"},
			Op: record.OpUpdate, Key: []byte(`{"id":1}`), Before: []byte(`{"a":1,"id":1}`), After: []byte(`{"a":2,"id":1}`), Changed: []string{"a"},
			Actor: []byte(`{"id":"alice"}`), Cause: []byte(`{"request":"r-1"}`), Tx: &record.Tx{ID: "77", Position: "0/16B3748", Index: &idx, CommitTime: &at},
			Schema: &record.SchemaRef{Subject: "crm.public.customers", Version: 12}, OccurredAt: at, RecordedAt: at},
	} {
		if got, est := len(record.AppendBody(nil, r)), record.BodySize(r); got > est {
			t.Errorf("record %s: body %d bytes, estimate %d", r.ID, got, est)
		}
	}
}
