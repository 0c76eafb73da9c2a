package publish_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

// TestAppendStoredMatchesAppend: the event spliced from the stored bytes
// is the one encoded from the decoded record, byte for byte, for records
// with every optional member, escapes and non-ASCII names, a composite
// key, no recorded_at, and in both formats.
func TestAppendStoredMatchesAppend(t *testing.T) {
	idx := int64(3)
	commit := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	full := sampleRecord(42)
	full.Tx = &record.Tx{ID: "t1", Position: "0/1A", Index: &idx, CommitTime: &commit}
	full.Cause = json.RawMessage(`{"type":"signup"}`)
	full.Schema = &record.SchemaRef{Subject: "crm.public.customers", Version: 2}
	escaped := sampleRecord(7)
	escaped.ID = "id \"quoted\" \\ é 😀"
	escaped.Source = record.Source{Name: "crm/ü", Kind: "http", Database: "db", Schema: "s", Table: "tab\tle"}
	escaped.Key = json.RawMessage(`{"b":"x,y","a":2}`)
	escaped.OccurredAt = time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	bare := testRecord(5)
	bare.RecordedAt = time.Time{}
	for _, enc := range []publish.Encoder{{}, {Source: "stele://example/log"}, {Format: publish.FormatDebezium}} {
		for name, rec := range map[string]*record.Record{"full": full, "escaped": escaped, "bare": bare} {
			stored := record.Encode(rec)
			want, err := enc.Append(nil, mustDecode(t, stored))
			if err != nil {
				t.Fatal(err)
			}
			got, head, err := enc.AppendStored([]byte("prefix"), stored)
			if err != nil {
				t.Fatalf("%s %s: %v", enc.Format, name, err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("%s %s:\n got %s\nwant prefix%s", enc.Format, name, got, want)
			}
			if head.ID != rec.ID || head.Seq != rec.Seq || head.Source.Name != rec.Source.Name || head.Source.Table != rec.Source.Table ||
				head.Op != rec.Op || !bytes.Equal(head.Key, rec.Key) {
				t.Errorf("%s %s: envelope fields %+v, want those of %+v", enc.Format, name, head, rec)
			}
			if !json.Valid(got[len("prefix"):]) {
				t.Errorf("%s %s: not JSON: %s", enc.Format, name, got)
			}
		}
	}
}

// TestAppendStoredRefusesBadBytes: bytes that are not a stored record
// fail as Decode fails, with record.ErrFormat.
func TestAppendStoredRefusesBadBytes(t *testing.T) {
	good := record.Encode(sampleRecord(1))
	for name, b := range map[string][]byte{
		"short":         good[:5],
		"version":       append([]byte{9}, good[1:]...),
		"cut body":      good[:len(good)-10],
		"not an object": append(good[:record.HeaderSize:record.HeaderSize], `[1,2]`...),
	} {
		if _, _, err := (publish.Encoder{}).AppendStored(nil, b); !errors.Is(err, record.ErrFormat) {
			t.Errorf("%s: err %v, want record.ErrFormat", name, err)
		}
	}
}

func mustDecode(t *testing.T, stored []byte) *record.Record {
	t.Helper()
	r, err := record.Decode(stored)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// BenchmarkAppendStored is the event of a 512-byte record built from its
// stored bytes (what the publisher does), next to decoding the record and
// encoding it (what it did).
func BenchmarkAppendStored(b *testing.B) {
	stored := record.Encode(benchRecord(1))
	b.Run("stored", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := (publish.Encoder{}).AppendStored(make([]byte, 0, len(stored)+512), stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := record.Decode(stored)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := (publish.Encoder{}).Append(nil, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
