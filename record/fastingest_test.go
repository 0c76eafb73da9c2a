package record

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/internal/jsonscan"
)

// fastAccepted are records fastParse must take itself, not leave to parse:
// the forms clients mostly send.
var fastAccepted = []string{
	`{"id":"http-000000000042","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":42},` +
		`"before":{"email":"old42@example.com","id":42,"name":"Ada"},"after":{"email":"new42@example.com","id":42,"name":"Ada","note":"xxxx"},` +
		`"changed":["email","note"],"actor":{"app":"billing","id":"user-42"},"tx":{"id":"1004","position":"0/1006270"},"occurred_at":"2026-01-01T00:00:42Z"}`,
	`{"source":{"name":"crm","table":"customers"},"op":"insert","key":{"id":1}}`,
	` { "source" : { "name" : "crm" , "table" : "t" } , "op" : "insert" , "key" : {"b":1,"a":2} , "after" : {"v":"x","id":1,"email":"a@b"} } `,
	`{"source":{"name":"crm","table":"t","database":"d","kind":"mysql"},"op":"delete","key":{"id":"k"},"before":{"id":"k","n":1.50,"z":[1,{"a":null,"b":true}]},"after":null,"actor":null,"tx":null,"cause":null,"schema":null}`,
	`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"before":{"a":1,"b":2},"after":{"b":3,"a":1},"changed":["b","b"],"tx":{"position":"p","index":7,"commit_time":"2026-01-02T03:04:05.123+02:00"},"schema":{"subject":"crm.t","version":2}}`,
	`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"after":{"a":1},"changed":["zz",""],"occurred_at":"2026-01-02T03:04:05Z","cause":{"type":"signup","record_id":"r1"}}`,
	`{"source":{"name":"sé","table":"東京"},"op":"event","key":{"id":"😀"},"after":{"s":"é"},"changed":[]}`,
	`{"source":{"name":"crm","table":"t"},"op":"update","key":{"id":1},"before":{"a":1,"b":2,"c":3,"d":4,"e":5},"after":{"a":0,"b":0,"c":0,"d":0,"e":0,"f":0}}`,
}

func TestFastParseTakesCommonRecords(t *testing.T) {
	for _, in := range fastAccepted {
		var p parser
		if _, ok := p.fastParse([]byte(in), testIngestOpts(true)); !ok {
			t.Errorf("fastParse left %s to parse", in)
		}
		checkFastMatchesParse(t, []byte(in))
	}
}

func testIngestOpts(idem bool) IngestOptions {
	opts := IngestOptions{DefaultKind: "http", Now: time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC), BatchIndex: 3, BatchSize: 9}
	if idem {
		opts.IdempotencyKey = "k"
	}
	return opts
}

// FuzzFastIngestMatchesParse: whatever fastParse accepts, parse accepts
// too and makes the same record of; a Parser gives what ParseIngest gives.
func FuzzFastIngestMatchesParse(f *testing.F) {
	for _, s := range fastAccepted {
		f.Add([]byte(s))
	}
	for _, s := range fastCorpus {
		f.Add([]byte(`{"source":{"name":"a","table":"t"},"op":"update","key":{"id":1},"before":` + s + `,"after":{"a":1}}`))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastMatchesParse(t, data)
	})
}

func checkFastMatchesParse(t *testing.T, data []byte) {
	t.Helper()
	in := bytes.Clone(data)
	var ps Parser
	for _, idem := range []bool{true, false} {
		opts := testIngestOpts(idem)
		fast, ok := new(parser).fastParse(data, opts)
		if !bytes.Equal(in, data) {
			t.Fatal("fastParse modified its input")
		}
		want, err := new(parser).parse(data, opts)
		if ok {
			if err != nil {
				t.Fatalf("%q: fastParse accepted what parse refuses: %v", data, err)
			}
			sameRecord(t, data, fast, want)
			for _, raw := range [][]byte{fast.Key, fast.Before, fast.After, fast.Actor, fast.Cause} {
				if cap(raw) != len(raw) {
					t.Fatalf("%q: a JSON field has room after it (cap %d, len %d): appending to it would overwrite the next", data, cap(raw), len(raw))
				}
			}
		}
		// ParseNext takes a record that goes on: the rest of the input
		// is left to its caller.
		if next, end, ok := ps.ParseNext(data, opts); ok {
			if end > len(data) || end < 2 || data[end-1] != '}' {
				t.Fatalf("%q: ParseNext ended at %d", data, end)
			}
			want, err := new(parser).parse(data[:end], opts)
			if err != nil {
				t.Fatalf("%q: ParseNext took %q, which parse refuses: %v", data, data[:end], err)
			}
			sameRecord(t, data, next, want)
			checkInPlace(t, data, end, opts)
		}
		// A Parser reuses its scratch: the record of the input before
		// must not leak into this one.
		got, gotErr := ps.Parse(data, opts)
		if (gotErr == nil) != (err == nil) || (err != nil && gotErr.Error() != err.Error()) {
			t.Fatalf("%q: Parser error %v, parse error %v", data, gotErr, err)
		}
		if err == nil {
			sameRecord(t, data, got, want)
		}
	}
}

func sameRecord(t *testing.T, data []byte, got, want *Record) {
	t.Helper()
	if strings.HasPrefix(want.ID, "r") && len(want.ID) == 27 && len(got.ID) == 27 && strings.HasPrefix(got.ID, "r") && !bytes.Contains(data, []byte(want.ID)) {
		got.ID = want.ID // both random
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast  %+v\nparse %+v\nfast  %s\nparse %s", data, got, want, Encode(got), Encode(want))
	}
}

// checkInPlace: ParseNextInPlace makes the record ParseNext makes of the
// same input, with the images it did not sort pointing into data, each
// capped, and records carved from its slab that do not overlap.
func checkInPlace(t *testing.T, data []byte, end int, opts IngestOptions) {
	t.Helper()
	var ps Parser
	first, n, ok := ps.ParseNextInPlace(data, opts)
	if !ok || n != end {
		t.Fatalf("%q: ParseNextInPlace ok %v, end %d; ParseNext took it, ending at %d", data, ok, n, end)
	}
	want, _, _ := new(Parser).ParseNext(data, opts)
	// A second record from the same slab must not touch the first.
	second, _, _ := ps.ParseNextInPlace(data, opts)
	for _, got := range []*Record{first, second} {
		if strings.HasPrefix(want.ID, "r") && len(want.ID) == 27 && !bytes.Contains(data, []byte(want.ID)) {
			got.ID = want.ID // both random
		}
		sameRecord(t, data, got, want)
	}
	if first == second {
		t.Fatalf("%q: two records share their memory", data)
	}
	for _, raw := range [][]byte{first.Key, first.Before, first.After, first.Actor, first.Cause} {
		if cap(raw) != len(raw) {
			t.Fatalf("%q: a JSON field has room after it (cap %d, len %d): appending to it would overwrite the next", data, cap(raw), len(raw))
		}
	}
	if in := data[:end]; len(first.Key) > 0 && !bytes.Contains(in, first.Key) {
		t.Fatalf("%q: key %s is not the input's", data, first.Key)
	}
	checkIsBody(t, data[jsonscan.Space(data, 0):end], first)
}

// checkIsBody: IsBody says b is r's body only when it is AppendBody's,
// and says so of AppendBody's whenever r's strings are printable ASCII.
func checkIsBody(t *testing.T, b []byte, r *Record) {
	t.Helper()
	body := AppendBody(nil, r)
	if IsBody(b, r) && !bytes.Equal(b, body) {
		t.Fatalf("IsBody(%q) for a record whose body is %q", b, body)
	}
	if plainStrings(r) && !IsBody(body, r) {
		t.Fatalf("IsBody refused %q, the body of its record", body)
	}
	for _, cut := range []int{len(body) - 1, len(body) / 2} {
		if cut >= 0 && IsBody(body[:cut], r) {
			t.Fatalf("IsBody took %q, the first %d bytes of %q", body[:cut], cut, body)
		}
	}
	if IsBody(append(bytes.Clone(body), ' '), r) {
		t.Fatalf("IsBody took %q with a space after it", body)
	}
}

// plainStrings reports whether every string of r is printable ASCII
// without a quote or a backslash.
func plainStrings(r *Record) bool {
	strs := []string{r.ID, r.Source.Name, r.Source.Kind, r.Source.Database, r.Source.Schema, r.Source.Table, string(r.Op)}
	strs = append(strs, r.Changed...)
	if r.Tx != nil {
		strs = append(strs, r.Tx.ID, r.Tx.Position)
	}
	if r.Schema != nil {
		strs = append(strs, r.Schema.Subject)
	}
	for _, s := range strs {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
	}
	return true
}
