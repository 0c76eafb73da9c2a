package record

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkParseIngest parses a 512-byte update record as HTTP clients send
// them (the shape of the HTTP ingest figure of stele bench): "parser" as
// ingest does, "full" with the full parser alone, which every record the
// one-pass parser leaves to it goes through, for a same-run baseline.
func BenchmarkParseIngest(b *testing.B) {
	rec := []byte(fmt.Sprintf(`{"id":"http-000000000042","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":42},`+
		`"before":{"email":"old42@example.com","id":42,"name":"Ada"},"after":{"email":"new42@example.com","id":42,"name":"Ada","note":"%s"},`+
		`"changed":["email","note"],"actor":{"app":"billing","id":"user-42"},"tx":{"id":"1004","position":"0/1006270"},"occurred_at":"2026-01-01T00:00:42Z"}`,
		strings.Repeat("x", 120)))
	b.Run("parser", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		b.ReportAllocs()
		var ps Parser
		for b.Loop() {
			if _, err := ps.Parse(rec, IngestOptions{DefaultKind: "http"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		b.ReportAllocs()
		var ps Parser
		for b.Loop() {
			clear(ps.p.slab)
			ps.p.slab = ps.p.slab[:0]
			if _, err := ps.p.parse(rec, IngestOptions{DefaultKind: "http"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestParserReuse: a Parser used for many records in turn gives each the
// record ParseIngest gives it, whatever came before.
func TestParserReuse(t *testing.T) {
	var ps Parser
	for i, in := range []string{
		`{"id":"r1","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"after":{"id":1,"b":"x"}}`,
		`{"source":{"name":"a","table":"t"},"op":"bogus","key":{"id":1}}`,
		`{"id":"r3","source":{"name":"b","table":"u","schema":"s"},"op":"update","key":{"k":"v"},"before":{"k":"v","n":1},"after":{"n":2,"k":"v"},"actor":{"id":"u"},"tx":{"id":"7","index":2}}`,
	} {
		opts := IngestOptions{DefaultKind: "http", Now: time.Unix(1, 0)}
		want, wantErr := ParseIngest([]byte(in), opts)
		got, gotErr := ps.Parse([]byte(in), opts)
		if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
			t.Fatalf("%d: error %v, want %v", i, gotErr, wantErr)
		}
		if wantErr == nil && !bytes.Equal(Encode(got), Encode(want)) {
			t.Errorf("%d: record %s, want %s", i, Encode(got), Encode(want))
		}
	}
}
