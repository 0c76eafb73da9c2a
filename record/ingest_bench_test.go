package record

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParseIngest parses a 512-byte update record as HTTP clients send
// them (the shape of the HTTP ingest figure of stele bench).
func BenchmarkParseIngest(b *testing.B) {
	rec := []byte(fmt.Sprintf(`{"id":"http-000000000042","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":42},`+
		`"before":{"email":"old42@example.com","id":42,"name":"Ada"},"after":{"email":"new42@example.com","id":42,"name":"Ada","note":"%s"},`+
		`"changed":["email","note"],"actor":{"app":"billing","id":"user-42"},"tx":{"id":"1004","position":"0/1006270"},"occurred_at":"2026-01-01T00:00:42Z"}`,
		strings.Repeat("x", 120)))
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseIngest(rec, IngestOptions{DefaultKind: "http"}); err != nil {
			b.Fatal(err)
		}
	}
}
