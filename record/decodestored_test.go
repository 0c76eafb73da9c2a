package record_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/stele/stele/record"
)

// storedBodies are bodies as Encode writes them, for seeds and the
// plain test.
func storedBodies(t testing.TB) [][]byte {
	var out [][]byte
	for _, r := range builtRecords() {
		out = append(out, record.Encode(r)[record.HeaderSize:])
	}
	for _, s := range ingestSeeds {
		if r, err := record.ParseIngest([]byte(s), testOpts); err == nil {
			out = append(out, record.Encode(r)[record.HeaderSize:])
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d stored bodies to test with", len(out))
	}
	return out
}

// checkStored fails when the fast decoder takes a body and decodes it
// differently from encoding/json, or takes one encoding/json refuses.
func checkStored(t *testing.T, body []byte) (taken bool) {
	t.Helper()
	fast, ok := record.DecodeStored(body)
	if !ok {
		return false
	}
	var want record.Record
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("fast decoder took %q, which encoding/json refuses: %v", body, err)
	}
	if !reflect.DeepEqual(fast, &want) {
		t.Fatalf("fast decoder and encoding/json differ on %q:\nfast %+v\njson %+v", body, fast, &want)
	}
	return true
}

// Every body Encode writes takes the fast path, and decodes as
// encoding/json decodes it.
func TestDecodeStoredMatchesUnmarshal(t *testing.T) {
	for _, body := range storedBodies(t) {
		if !checkStored(t, body) {
			t.Errorf("Encode's body %q left to encoding/json", body)
		}
	}
	// Bodies appendBody does not write are left to encoding/json.
	for _, body := range []string{
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"2026-01-02T03:04:05+01:00"}`,
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"2026-01-02T03:04:05.100Z"}`,
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1,"id":2},"occurred_at":"2026-01-02T03:04:05Z"}`,
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"2026-01-02T03:04:05Z"} `,
		`{"id":"a", "source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"2026-01-02T03:04:05Z"}`,
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"tx":{"index":1.5},"occurred_at":"2026-01-02T03:04:05Z"}`,
		`{"id":"a","source":{"name":"crm","kind":"http","table":"t"},"op":"insert","key":{"id":1},"seq":3,"occurred_at":"2026-01-02T03:04:05Z"}`,
	} {
		if checkStored(t, []byte(body)) {
			t.Errorf("fast decoder took %q, which appendBody does not write", body)
		}
	}
}

func FuzzDecodeStoredMatchesUnmarshal(f *testing.F) {
	for _, body := range storedBodies(f) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkStored(t, body) })
}

func BenchmarkDecode(b *testing.B) {
	r := builtRecords()["full"]
	if r == nil {
		b.Fatal("no full record among builtRecords")
	}
	r.Seq = 7
	stored := record.Encode(r)
	b.SetBytes(int64(len(stored)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := record.Decode(stored); err != nil {
			b.Fatal(err)
		}
	}
}
