package query

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// storedOccurredAt reads the time appendBody writes last, and nothing
// from a body laid out otherwise (the page then decodes the record).
func TestStoredOccurredAt(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	r := &record.Record{Seq: 3, ID: "a", Source: record.Source{Name: "crm", Kind: "http", Table: "t"}, Op: record.OpInsert,
		Key: json.RawMessage(`{"id":1}`), After: json.RawMessage(`{"occurred_at":"1999-01-01T00:00:00Z"}`), OccurredAt: at}
	stored := record.Encode(r)
	if got := storedOccurredAt(stored); !got.Equal(at) {
		t.Fatalf("occurred_at of an encoded record: %v, want %v", got, at)
	}
	hdr := stored[:record.HeaderSize]
	for _, body := range []string{
		`{"after":{"x":1,"occurred_at":"1999-01-01T00:00:00Z"}}`,
		`{"occurred_at":"2026-03-04T05:06:07Z","after":{"k":"v"}}`,
		`{"k":"v,\"occurred_at\":\"1999-01-01T00:00:00Z\"}`,
		`{"occurred_at":"not a time"}`,
		`{"occurred_at":"2026-03-04T05:06:07\u005a"}`,
		`"}`,
	} {
		if got := storedOccurredAt(append(append([]byte{}, hdr...), body...)); !got.IsZero() {
			t.Errorf("body %s: %v, want the zero time", body, got)
		}
	}
}

// The peek never disagrees with the full decoder: whenever it gives a
// time for bytes Decode accepts, it is the record's occurred_at.
func FuzzStoredOccurredAt(f *testing.F) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	r := &record.Record{Seq: 3, ID: "a", Source: record.Source{Name: "crm", Kind: "http", Table: "t"}, Op: record.OpInsert,
		Key: json.RawMessage(`{"id":1}`), After: json.RawMessage(`{"occurred_at":"1999-01-01T00:00:00Z"}`), OccurredAt: at}
	stored := record.Encode(r)
	f.Add(stored)
	hdr := stored[:record.HeaderSize]
	for _, body := range []string{
		`{"key":{"id":1},"occurred_at":"2026-03-04T05:06:07+01:00"}`,
		`{"key":{"id":1},"after":{"occurred_at":"1999-01-01T00:00:00Z"}}`,
		`{"key":{"id":1},"occurred_at":"2026-03-04T05:06:07Z","occurred_at":"2020-01-01T00:00:00Z"}`,
	} {
		f.Add(append(append([]byte{}, hdr...), body...))
	}
	f.Fuzz(func(t *testing.T, stored []byte) {
		peek := storedOccurredAt(stored)
		r, err := record.Decode(stored)
		if err != nil || peek.IsZero() {
			return
		}
		if !peek.Equal(r.OccurredAt) {
			t.Fatalf("peek %v, Decode %v for %q", peek, r.OccurredAt, stored)
		}
	})
}
