package record_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// fixedNow is the ingest clock used by the tests.
var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)

var testOpts = record.IngestOptions{Now: fixedNow}

// customerUpdate is a realistic client record: a customer update with both
// images, an actor, a transaction position and a cause.
const customerUpdate = `{
  "source": {"name": "crm", "kind": "postgres", "database": "crm", "schema": "public", "table": "customers"},
  "op": "update",
  "key": {"tenant": "acme", "id": 42},
  "before": {"name": "Ada", "email": "ada@old.example", "balance": 12345678901234567890.123456789, "tags": ["a", "b"], "address": {"city": "London", "zip": "N1"}},
  "after": {"name": "Ada", "email": "ada@new.example", "balance": 12345678901234567890.123456789, "tags": ["a", "b"], "address": {"zip": "N1", "city": "Paris"}},
  "actor": {"id": "u-7", "type": "user", "app": "backoffice", "ip": "203.0.113.9", "request_id": "req-1", "roles": ["admin"]},
  "tx": {"id": "tx-1", "position": "0/16B3748", "index": 3, "commit_time": "2026-01-02T15:04:05.123456+02:00"},
  "cause": {"type": "support_ticket", "description": "customer moved", "ticket": 991},
  "schema": {"subject": "crm.customers", "version": 7},
  "occurred_at": "2026-01-02T15:04:05.5+02:00"
}`

// diffRecords describes how a and b differ, or returns "" when they describe
// the same record. Raw JSON members compare byte for byte; times compare as
// instants; an empty changed list equals an absent one.
func diffRecords(a, b *record.Record) string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	if a == nil || b == nil {
		if a != b {
			return fmt.Sprintf("one record is nil: %v vs %v", a, b)
		}
		return ""
	}
	if a.Seq != b.Seq {
		add("seq %d != %d", a.Seq, b.Seq)
	}
	if a.ID != b.ID {
		add("id %q != %q", a.ID, b.ID)
	}
	if a.Source != b.Source {
		add("source %+v != %+v", a.Source, b.Source)
	}
	if a.Op != b.Op {
		add("op %q != %q", a.Op, b.Op)
	}
	for _, f := range []struct {
		name string
		x, y json.RawMessage
	}{{"key", a.Key, b.Key}, {"before", a.Before, b.Before}, {"after", a.After, b.After}, {"actor", a.Actor, b.Actor}, {"cause", a.Cause, b.Cause}} {
		if !bytes.Equal(f.x, f.y) {
			add("%s %s != %s", f.name, f.x, f.y)
		}
	}
	if !slices.Equal(a.Changed, b.Changed) {
		add("changed %q != %q", a.Changed, b.Changed)
	}
	switch {
	case (a.Tx == nil) != (b.Tx == nil):
		add("tx %+v != %+v", a.Tx, b.Tx)
	case a.Tx != nil:
		if a.Tx.ID != b.Tx.ID || a.Tx.Position != b.Tx.Position {
			add("tx id/position %q/%q != %q/%q", a.Tx.ID, a.Tx.Position, b.Tx.ID, b.Tx.Position)
		}
		if (a.Tx.Index == nil) != (b.Tx.Index == nil) || (a.Tx.Index != nil && *a.Tx.Index != *b.Tx.Index) {
			add("tx.index %v != %v", a.Tx.Index, b.Tx.Index)
		}
		if (a.Tx.CommitTime == nil) != (b.Tx.CommitTime == nil) || (a.Tx.CommitTime != nil && !a.Tx.CommitTime.Equal(*b.Tx.CommitTime)) {
			add("tx.commit_time %v != %v", a.Tx.CommitTime, b.Tx.CommitTime)
		}
	}
	if (a.Schema == nil) != (b.Schema == nil) || (a.Schema != nil && *a.Schema != *b.Schema) {
		add("schema %+v != %+v", a.Schema, b.Schema)
	}
	if !a.OccurredAt.Equal(b.OccurredAt) {
		add("occurred_at %v != %v", a.OccurredAt, b.OccurredAt)
	}
	if !a.RecordedAt.Equal(b.RecordedAt) {
		add("recorded_at %v != %v", a.RecordedAt, b.RecordedAt)
	}
	return strings.Join(d, "; ")
}

func mustParse(t testing.TB, in string) *record.Record {
	t.Helper()
	r, err := record.ParseIngest([]byte(in), testOpts)
	if err != nil {
		t.Fatalf("ParseIngest(%s): %v", in, err)
	}
	return r
}

func i64(n int64) *int64 { return &n }

func tm(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tmp(s string) *time.Time { t := tm(s); return &t }

// builtRecords are records assembled in Go, covering every optional member
// present and absent.
func builtRecords() map[string]*record.Record {
	return map[string]*record.Record{
		"minimal": {
			ID:         "r1",
			Source:     record.Source{Name: "crm", Kind: "http", Table: "customers"},
			Op:         record.OpInsert,
			Key:        json.RawMessage(`{"id":1}`),
			OccurredAt: tm("2026-01-02T03:04:05Z"),
			RecordedAt: tm("2026-01-02T03:04:06Z"),
		},
		"full": {
			Seq:        1<<64 - 1,
			ID:         "pabc",
			Source:     record.Source{Name: "crm", Kind: "postgres", Database: "db", Schema: "public", Table: "customers"},
			Op:         record.OpUpdate,
			Key:        json.RawMessage(`{"z":"k","a":2}`),
			Before:     json.RawMessage(`{"a":1,"b":{"c":null}}`),
			After:      json.RawMessage(`{"a":2,"b":{"c":true}}`),
			Changed:    []string{"a", "b"},
			Actor:      json.RawMessage(`{"id":"u1","type":"user"}`),
			Tx:         &record.Tx{ID: "t", Position: "0/1", Index: i64(0), CommitTime: tmp("2026-01-02T03:04:05.000000001Z")},
			Cause:      json.RawMessage(`{"type":"x"}`),
			Schema:     &record.SchemaRef{Subject: "s", Version: 1},
			OccurredAt: tm("2026-01-02T03:04:05.5Z"),
			RecordedAt: tm("2026-01-02T03:04:05.75Z"),
		},
		"tx index only": {
			Seq:        7,
			ID:         "x",
			Source:     record.Source{Name: "n", Kind: "mysql", Table: "t"},
			Op:         record.OpDelete,
			Key:        json.RawMessage(`{"id":"a,b=c%d"}`),
			Before:     json.RawMessage(`{"id":"a,b=c%d"}`),
			Changed:    []string{"id"},
			Tx:         &record.Tx{Index: i64(9)},
			OccurredAt: tm("1999-12-31T23:59:59Z"),
		},
		"empty tx": {
			Seq:    1,
			ID:     "x",
			Source: record.Source{Name: "n", Kind: "http", Table: "t"},
			Op:     record.OpEvent,
			Key:    json.RawMessage(`{"id":true}`),
			Tx:     &record.Tx{},
		},
		"unicode and escapes": {
			Seq:        256,
			ID:         "id-\u00e9\u2028\"\\/<>&",
			Source:     record.Source{Name: "na\"me", Kind: "debezium", Database: "d\u00fc", Table: "t\U0001F600"},
			Op:         record.OpSnapshot,
			Key:        json.RawMessage(`{"k":"\u00e9\n"}`),
			After:      json.RawMessage(`{"big":12345678901234567890.123456789,"exp":1E+400,"neg":-0}`),
			Changed:    []string{"big", "exp", "neg"},
			OccurredAt: tm("2026-01-02T03:04:05+05:30"),
			RecordedAt: tm("2026-01-02T03:04:05-08:00"),
		},
	}
}

func TestEncodeDecodeRoundTripBuilt(t *testing.T) {
	for name, r := range builtRecords() {
		t.Run(name, func(t *testing.T) {
			b := record.Encode(r)
			if !json.Valid(b[record.HeaderSize:]) {
				t.Fatalf("body is not valid JSON: %s", b[record.HeaderSize:])
			}
			got, err := record.Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffRecords(r, got); d != "" {
				t.Fatalf("Decode(Encode(r)) differs: %s", d)
			}
			for _, ts := range []time.Time{got.OccurredAt, got.RecordedAt} {
				if ts.Location() != time.UTC {
					t.Errorf("decoded time %v is not in UTC", ts)
				}
			}
			if again := record.Encode(got); !bytes.Equal(again, b) {
				t.Fatalf("Encode(Decode(b)) != b:\n%s\n%s", again, b)
			}
			if seq, err := record.Seq(b); err != nil || seq != r.Seq {
				t.Fatalf("Seq = %d, %v; want %d", seq, err, r.Seq)
			}
		})
	}
}

func TestEncodeDecodeRoundTripIngested(t *testing.T) {
	inputs := map[string]string{
		"customer update": customerUpdate,
		"minimal":         `{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1}}`,
		"insert":          `{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":"x"},"after":{"id":"x","v":[1,2,{"b":1,"a":2}]}}`,
		"delete":          `{"source":{"name":"s","table":"t","kind":"dynamodb"},"op":"delete","key":{"pk":"a","sk":"b"},"before":{"pk":"a","sk":"b","n":1.50}}`,
		"ddl":             `{"source":{"name":"s","table":"t"},"op":"ddl","key":{"table":"t"},"cause":{"statement":"ALTER TABLE t ADD c int"}}`,
		"nulls":           `{"source":{"name":"s","table":"t"},"op":"truncate","key":{"id":null},"before":null,"after":null,"actor":null,"tx":null,"cause":null,"schema":null}`,
		"explicit id":     `{"id":"client-1","source":{"name":"s","table":"t"},"op":"event","key":{"id":1},"occurred_at":"2026-01-02T03:04:05Z"}`,
		"unicode":         `{"source":{"name":"s\u00e9","table":"\u6771\u4eac"},"op":"insert","key":{"\u540d":"\ud83d\ude00"},"after":{"s":"\u2028\u0000\"\\"}}`,
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			r := mustParse(t, in)
			r.Seq = 99
			r.RecordedAt = fixedNow.Add(time.Second)
			b := record.Encode(r)
			if !bytes.Equal(b, record.Encode(r)) {
				t.Fatal("Encode is not deterministic")
			}
			got, err := record.Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffRecords(r, got); d != "" {
				t.Fatalf("Decode(Encode(r)) differs: %s", d)
			}
			if again := record.Encode(got); !bytes.Equal(again, b) {
				t.Fatalf("Encode(Decode(b)) != b:\n%s\n%s", again, b)
			}
		})
	}
}

// Two inputs that say the same thing in different member order and spacing
// must encode to the same bytes: the leaf hash depends only on content.
func TestEncodeIsCanonical(t *testing.T) {
	a := `{"id":"x","source":{"name":"s","table":"t","kind":"mysql"},"op":"update","key":{"id":1},
		"before":{"a":1,"b":{"y":1,"x":2}},"after":{"b":{"x":2,"y":1},"a":2},"actor":{"type":"user","id":"u"},
		"tx":{"index":1,"position":"p"},"cause":{"z":1,"a":2},"schema":{"version":2,"subject":"s"},"occurred_at":"2026-01-02T04:04:05+01:00"}`
	b := `{ "occurred_at" : "2026-01-02T03:04:05.000Z", "schema":{"subject":"s","version":2}, "cause":{"a":2,"z":1},
		"tx":{"position":"p","index":1}, "actor":{"id":"u","type":"user"}, "after":{"a":2,"b":{"y":1,"x":2}},
		"before":{"b":{"x":2,"y":1},"a":1}, "key":{"id":1}, "op":"update", "source":{"kind":"mysql","table":"t","name":"s"}, "id":"x" }`
	ra, rb := mustParse(t, a), mustParse(t, b)
	ea, eb := record.Encode(ra), record.Encode(rb)
	if !bytes.Equal(ea, eb) {
		t.Fatalf("same record encodes differently:\n%s\n%s", ea, eb)
	}
	want := `{"id":"x","source":{"name":"s","kind":"mysql","table":"t"},"op":"update","key":{"id":1},` +
		`"before":{"a":1,"b":{"x":2,"y":1}},"after":{"a":2,"b":{"x":2,"y":1}},"changed":["a"],` +
		`"actor":{"id":"u","type":"user"},"tx":{"position":"p","index":1},"cause":{"a":2,"z":1},` +
		`"schema":{"subject":"s","version":2},"occurred_at":"2026-01-02T03:04:05Z"}`
	if got := string(ea[record.HeaderSize:]); got != want {
		t.Fatalf("body:\n got %s\nwant %s", got, want)
	}
}

func TestEncodeLayout(t *testing.T) {
	r := mustParse(t, customerUpdate)
	r.Seq = 0x0102030405060708
	r.RecordedAt = fixedNow
	b := record.Encode(r)
	if b[0] != record.FormatV1 {
		t.Fatalf("version byte = %d, want %d", b[0], record.FormatV1)
	}
	if got := binary.BigEndian.Uint64(b[1:9]); got != r.Seq {
		t.Fatalf("header seq = %#x, want %#x", got, r.Seq)
	}
	names := topLevelNames(t, b[record.HeaderSize:])
	want := []string{"id", "source", "op", "key", "before", "after", "changed", "actor", "tx", "cause", "schema", "occurred_at"}
	if !slices.Equal(names, want) {
		t.Fatalf("body members = %q, want %q", names, want)
	}
	if got := int64(binary.BigEndian.Uint64(b[9:record.HeaderSize])); got != r.RecordedAt.UnixNano() {
		t.Fatalf("header recorded_at = %d, want %d", got, r.RecordedAt.UnixNano())
	}
	body := string(b[record.HeaderSize:])
	for _, s := range []string{
		`"source":{"name":"crm","kind":"postgres","database":"crm","schema":"public","table":"customers"}`,
		`"tx":{"id":"tx-1","position":"0/16B3748","index":3,"commit_time":"2026-01-02T13:04:05.123456Z"}`,
		`"occurred_at":"2026-01-02T13:04:05.5Z"`,
		`"changed":["address","email"]`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %s:\n%s", s, body)
		}
	}
	if strings.Contains(body, `"seq"`) {
		t.Errorf("body must not carry seq: %s", body)
	}

	prefix := []byte("prefix")
	app := record.AppendEncoded(slices.Clone(prefix), r)
	if !bytes.HasPrefix(app, prefix) || !bytes.Equal(app[len(prefix):], b) {
		t.Fatalf("AppendEncoded did not append Encode's bytes after the prefix")
	}
}

func topLevelNames(t testing.TB, obj []byte) []string {
	t.Helper()
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		t.Fatalf("not an object: %s (%v)", obj, err)
	}
	var names []string
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			t.Fatalf("reading %s: %v", obj, err)
		}
		names = append(names, tok.String())
		if _, err := dec.ReadValue(); err != nil {
			t.Fatalf("reading %s: %v", obj, err)
		}
	}
	return names
}

func TestSeq(t *testing.T) {
	for _, seq := range []uint64{0, 1, 255, 256, 1 << 32, 1<<64 - 1} {
		r := builtRecords()["minimal"]
		r.Seq = seq
		got, err := record.Seq(record.Encode(r))
		if err != nil || got != seq {
			t.Errorf("Seq(Encode(seq %d)) = %d, %v", seq, got, err)
		}
	}
	// Seq reads only the header: a body that is not JSON does not matter.
	hdr := []byte{record.FormatV1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, body := range []string{"", "not json", "{"} {
		got, err := record.Seq(append(slices.Clone(hdr), body...))
		if err != nil || got != 258 {
			t.Errorf("Seq(header+%q) = %d, %v; want 258", body, got, err)
		}
		if _, err := record.Decode(append(slices.Clone(hdr), body...)); !errors.Is(err, record.ErrFormat) {
			t.Errorf("Decode(header+%q) error = %v, want ErrFormat", body, err)
		}
	}
	for name, in := range map[string][]byte{
		"nil":           nil,
		"empty":         {},
		"8 bytes":       {1, 0, 0, 0, 0, 0, 0, 0},
		"version 0":     {0, 0, 0, 0, 0, 0, 0, 0, 1},
		"version 2":     {2, 0, 0, 0, 0, 0, 0, 0, 1, '{', '}'},
		"ascii version": []byte(`{"id":"x"}`),
	} {
		if _, err := record.Seq(in); !errors.Is(err, record.ErrFormat) {
			t.Errorf("Seq(%s) error = %v, want ErrFormat", name, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := record.Encode(builtRecords()["full"])
	hdr := good[:record.HeaderSize]
	body := func(s string) []byte { return append(slices.Clone(hdr), s...) }
	withVersion := func(v byte) []byte { b := slices.Clone(good); b[0] = v; return b }
	tests := map[string][]byte{
		"nil":                   nil,
		"empty":                 {},
		"one byte":              {record.FormatV1},
		"short header":          good[:8],
		"header only":           good[:record.HeaderSize],
		"version 0":             withVersion(0),
		"version 2":             withVersion(2),
		"version 0xff":          withVersion(0xff),
		"truncated body":        good[:len(good)-1],
		"body not json":         body("hello"),
		"body array":            body(`[1,2]`),
		"body string":           body(`"x"`),
		"trailing garbage":      append(slices.Clone(good), 'x'),
		"two objects":           append(slices.Clone(good), "{}"...),
		"id wrong type":         body(`{"id":1,"key":{"id":1}}`),
		"source wrong type":     body(`{"source":"x","key":{"id":1}}`),
		"tx.index wrong type":   body(`{"tx":{"index":"1"},"key":{"id":1}}`),
		"changed wrong type":    body(`{"changed":"a","key":{"id":1}}`),
		"occurred_at not time":  body(`{"occurred_at":"yesterday","key":{"id":1}}`),
		"recorded_at number":    body(`{"recorded_at":5,"key":{"id":1}}`),
		"schema version float":  body(`{"schema":{"subject":"s","version":1.5},"key":{"id":1}}`),
		"corrupted byte":        bytes.Replace(slices.Clone(good), []byte(`"op":`), []byte(`"op";`), 1),
		"missing key":           body(`{"id":"x","source":{"name":"s","kind":"http","table":"t"},"op":"insert","occurred_at":"2026-01-02T03:04:05Z","recorded_at":"2026-01-02T03:04:05Z"}`),
		"occurred_at year -1":   body(`{"key":{"id":1},"occurred_at":"0000-01-01T00:00:00+01:00"}`),
		"recorded_at year 1e4":  body(`{"key":{"id":1},"recorded_at":"9999-12-31T23:30:00-01:00"}`),
		"commit_time year 1e4":  body(`{"key":{"id":1},"tx":{"commit_time":"9999-12-31T23:30:00-01:00"}}`),
		"invalid utf8 in body":  body("{\"key\":{\"id\":1},\"id\":\"\xff\"}\xff"),
		"body with only braces": body(`{`),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := record.Decode(in)
			if !errors.Is(err, record.ErrFormat) {
				t.Fatalf("Decode error = %v, want ErrFormat (record %+v)", err, r)
			}
			if r != nil {
				t.Fatalf("Decode returned a record with an error: %+v", r)
			}
			if err.Error() == record.ErrFormat.Error() {
				t.Errorf("error %q says nothing about the cause", err)
			}
		})
	}
}

func TestAppendJSON(t *testing.T) {
	recs := builtRecords()
	recs["ingested"] = mustParse(t, customerUpdate)
	for name, r := range recs {
		t.Run(name, func(t *testing.T) {
			out := record.AppendJSON(nil, r)
			if !json.Valid(out) {
				t.Fatalf("AppendJSON is not valid JSON: %s", out)
			}
			names := topLevelNames(t, out)
			if len(names) == 0 || names[0] != "seq" {
				t.Fatalf("first member = %q, want seq", names)
			}
			bodyNames := topLevelNames(t, record.Encode(r)[record.HeaderSize:])
			if !slices.Equal(names[1:], append(bodyNames, "recorded_at")) {
				t.Fatalf("API members %q != seq, body members %q, recorded_at", names, bodyNames)
			}
			wantPrefix := fmt.Sprintf(`{"seq":%d,`, r.Seq)
			if !strings.HasPrefix(string(out), wantPrefix) {
				t.Fatalf("API JSON starts %.40s, want %s", out, wantPrefix)
			}
			// Between seq and recorded_at, the API form is the body's members
			// byte for byte.
			enc := record.Encode(r)
			wantRest := string(enc[record.HeaderSize+1:len(enc)-1]) + `,"recorded_at":` + strconv.Quote(r.RecordedAt.UTC().Format(time.RFC3339Nano)) + "}"
			if got, want := string(out[len(wantPrefix):]), wantRest; got != want {
				t.Fatalf("API JSON after seq:\n%s\nbody:\n%s", got, want)
			}

			m, err := r.MarshalJSON()
			if err != nil || !bytes.Equal(m, out) {
				t.Fatalf("MarshalJSON = %s, %v; want %s", m, err, out)
			}
			// encoding/json re-escapes <, >, & and U+2028 in MarshalJSON's
			// output, so compare it as JSON, not bytes.
			viaStd, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("json.Marshal(r): %v", err)
			}
			var fromStd record.Record
			if err := json.Unmarshal(viaStd, &fromStd); err != nil {
				t.Fatalf("json.Marshal output does not unmarshal: %v", err)
			}
			if d := diffRecords(r, &fromStd); d != "" {
				t.Fatalf("json.Marshal round trip differs: %s", d)
			}
			prefixed := record.AppendJSON([]byte("[1,"), r)
			if string(prefixed[:3]) != "[1," || !bytes.Equal(prefixed[3:], out) {
				t.Fatalf("AppendJSON with prefix = %s", prefixed)
			}

			var back record.Record
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("API JSON does not unmarshal: %v", err)
			}
			if d := diffRecords(r, &back); d != "" {
				t.Fatalf("API JSON round trip differs: %s", d)
			}
		})
	}
}

func TestBigNumbersKeepLiteralText(t *testing.T) {
	literals := []string{
		"12345678901234567890.123456789",
		"123456789012345678901234567890",
		"-0.000000000000000000000001",
		"1E+400",
		"1.0",
		"1e2",
		"-0",
	}
	for _, lit := range literals {
		t.Run(lit, func(t *testing.T) {
			in := `{"source":{"name":"s","table":"t"},"op":"update","key":{"id":` + lit + `},"before":{"n":0},"after":{"n":` + lit + `},"cause":{"n":` + lit + `}}`
			r := mustParse(t, in)
			for what, raw := range map[string]json.RawMessage{"key": r.Key, "after": r.After, "cause": r.Cause} {
				if !strings.Contains(string(raw), ":"+lit+"}") {
					t.Errorf("%s = %s, lost literal %s", what, raw, lit)
				}
			}
			b := record.Encode(r)
			if !strings.Contains(string(b), `"after":{"n":`+lit+`}`) {
				t.Errorf("encoding lost literal %s: %s", lit, b)
			}
			d, err := record.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(d.After) != `{"n":`+lit+`}` {
				t.Errorf("decoded after = %s", d.After)
			}
			if !strings.Contains(string(record.AppendJSON(nil, d)), `{"n":`+lit+`}`) {
				t.Errorf("API JSON lost literal %s", lit)
			}
			if ks, err := record.KeyString(r.Key); err != nil || ks != lit {
				t.Errorf("KeyString = %q, %v; want %q", ks, err, lit)
			}
		})
	}
}

func TestMemberOrder(t *testing.T) {
	in := `{"source":{"name":"s","table":"t"},"op":"update",
		"key":{"z":1,"m":{"y":1,"b":2},"a":"x"},
		"before":{"z":1,"a":{"y":1,"b":[{"d":1,"c":2}]},"m":null},
		"after":{"z":2,"a":{"y":1,"b":[{"d":1,"c":2}]},"m":null},
		"actor":{"type":"user","id":"u","app":"a","zz":{"q":1,"p":2}},
		"cause":{"type":"t","description":"d","b":{"z":0,"a":0}}}`
	r := mustParse(t, in)
	tests := []struct{ name, got, want string }{
		{"key keeps column order", string(r.Key), `{"z":1,"m":{"y":1,"b":2},"a":"x"}`},
		{"before sorted", string(r.Before), `{"a":{"b":[{"c":2,"d":1}],"y":1},"m":null,"z":1}`},
		{"after sorted", string(r.After), `{"a":{"b":[{"c":2,"d":1}],"y":1},"m":null,"z":2}`},
		{"actor sorted", string(r.Actor), `{"app":"a","id":"u","type":"user","zz":{"p":2,"q":1}}`},
		{"cause sorted", string(r.Cause), `{"b":{"a":0,"z":0},"description":"d","type":"t"}`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	if !slices.Equal(r.Changed, []string{"z"}) {
		t.Errorf("changed = %q, want [z]", r.Changed)
	}
	b := record.Encode(r)
	for _, tt := range tests {
		if !bytes.Contains(b, []byte(tt.want)) {
			t.Errorf("%s: encoding lacks %s", tt.name, tt.want)
		}
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		name, key, want string
	}{
		{"string", `{"id":"abc"}`, "abc"},
		{"string with separators stays bare", `{"id":"a,b=c%d"}`, "a,b=c%d"},
		{"string with escapes", `{"id":"caf\u00e9 \"q\""}`, `café "q"`},
		{"empty string", `{"id":""}`, ""},
		{"integer", `{"id":42}`, "42"},
		{"negative float", `{"id":-1.5}`, "-1.5"},
		{"big number literal", `{"id":12345678901234567890.123456789}`, "12345678901234567890.123456789"},
		{"true", `{"flag":true}`, "true"},
		{"false", `{"flag":false}`, "false"},
		{"null", `{"id":null}`, "null"},
		{"multi column in key order", `{"tenant":"acme","id":42}`, "tenant=acme,id=42"},
		{"multi column reversed", `{"id":42,"tenant":"acme"}`, "id=42,tenant=acme"},
		{"multi column bools", `{"a":true,"b":false,"c":null}`, "a=true,b=false,c=null"},
		{"escape comma", `{"a":"x,y","b":1}`, "a=x%2Cy,b=1"},
		{"escape equals", `{"a":"x=y","b":1}`, "a=x%3Dy,b=1"},
		{"escape percent", `{"a":"100%","b":"%2C"}`, "a=100%25,b=%252C"},
		{"escape in column names", `{"a,b":1,"c=d":2,"e%":3}`, "a%2Cb=1,c%3Dd=2,e%25=3"},
		{"whitespace is not significant", `{ "a" : "x" , "b" : 2 }`, "a=x,b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := record.KeyString(json.RawMessage(tt.key))
			if err != nil {
				t.Fatalf("KeyString(%s): %v", tt.key, err)
			}
			if got != tt.want {
				t.Fatalf("KeyString(%s) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
	// Values that differ must give different key strings even when they
	// contain the separators.
	a, _ := record.KeyString(json.RawMessage(`{"a":"1,b=2","b":"3"}`))
	b, _ := record.KeyString(json.RawMessage(`{"a":"1","b":"2,b=3"}`))
	if a == b {
		t.Fatalf("ambiguous key strings: %q", a)
	}
	// Quoted and unquoted values are distinct key strings.
	if s, _ := record.KeyString(json.RawMessage(`{"id":"42"}`)); s != "42" {
		t.Fatalf("string key \"42\" = %q", s)
	}
}

func TestKeyStringErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `1`, `{`, `{"a":}`, `{"a":1}x`, `{"a":1,"a":2}`} {
		_, err := record.KeyString(json.RawMessage(in))
		if !errors.Is(err, record.ErrInvalid) {
			t.Errorf("KeyString(%q) error = %v, want ErrInvalid", in, err)
		}
	}
}

func TestChangedFields(t *testing.T) {
	tests := []struct {
		name          string
		before, after string
		want          []string
	}{
		{"both nil", "", "", nil},
		{"identical", `{"a":1,"b":"x"}`, `{"a":1,"b":"x"}`, nil},
		{"one differs", `{"a":1,"b":"x"}`, `{"a":1,"b":"y"}`, []string{"b"}},
		{"added and removed", `{"a":1,"gone":2}`, `{"a":1,"new":3}`, []string{"gone", "new"}},
		{"sorted output", `{"z":1,"a":1,"m":1}`, `{"z":2,"a":2,"m":2}`, []string{"a", "m", "z"}},
		{"nested object change is the top-level field", `{"addr":{"city":"A","zip":"1"}}`, `{"addr":{"city":"B","zip":"1"}}`, []string{"addr"}},
		{"nested array change", `{"tags":["a","b"]}`, `{"tags":["b","a"]}`, []string{"tags"}},
		{"deep nested change", `{"x":{"y":{"z":[1,{"w":1}]}}}`, `{"x":{"y":{"z":[1,{"w":2}]}}}`, []string{"x"}},
		{"null to value", `{"a":null}`, `{"a":0}`, []string{"a"}},
		{"value to null", `{"a":false}`, `{"a":null}`, []string{"a"}},
		{"type change", `{"a":"1"}`, `{"a":1}`, []string{"a"}},
		{"nil before is an insert", "", `{"b":1,"a":2}`, []string{"a", "b"}},
		{"nil after is a delete", `{"b":1,"a":2}`, "", []string{"a", "b"}},
		{"empty objects", `{}`, `{}`, nil},
		{"empty before", `{}`, `{"a":1}`, []string{"a"}},
		{"whitespace around values ignored", `{"a": 1 }`, `{"a":1}`, nil},
		{"non-canonical nested order is not a change", `{"a":{"x":1,"y":[{"q":1,"p":2}]}}`, `{"a":{"y":[{"p":2,"q":1}],"x":1}}`, nil},
		{"non-canonical nested spacing is not a change", `{"a":{"x": [1, 2]},"b":1}`, `{"a":{"x":[1,2]},"b":2}`, []string{"b"}},
		{"string escapes are not a change", `{"a":"é\/"}`, `{"a":"é/"}`, nil},
		{"number literals are compared as text", `{"a":1.0,"b":1e2}`, `{"a":1,"b":100}`, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after json.RawMessage
			if tt.before != "" {
				before = json.RawMessage(tt.before)
			}
			if tt.after != "" {
				after = json.RawMessage(tt.after)
			}
			got, err := record.ChangedFields(before, after)
			if err != nil {
				t.Fatalf("ChangedFields: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ChangedFields(%s, %s) = %q, want %q", tt.before, tt.after, got, tt.want)
			}
		})
	}
}

func TestChangedFieldsErrors(t *testing.T) {
	tests := []struct {
		name, before, after, field string
	}{
		{"before not object", `[1]`, `{"a":1}`, "before"},
		{"after not object", `{"a":1}`, `"x"`, "after"},
		{"before malformed", `{"a":`, `{"a":1}`, "before.a"},
		{"after malformed", `{"a":1}`, `{`, "after"},
		{"after null literal", `{"a":1}`, `null`, "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := record.ChangedFields(json.RawMessage(tt.before), json.RawMessage(tt.after))
			var fe *record.FieldError
			if !errors.Is(err, record.ErrInvalid) || !errors.As(err, &fe) {
				t.Fatalf("error = %v, want a FieldError", err)
			}
			if fe.Field != tt.field || fe.Reason == "" {
				t.Fatalf("FieldError = %+v, want field %q", fe, tt.field)
			}
		})
	}
}

func TestActorID(t *testing.T) {
	tests := []struct{ actor, want string }{
		{"", ""},
		{`{"id":"u-1","type":"user"}`, "u-1"},
		{`{"type":"user"}`, ""},
		{`{"id":5}`, ""},
		{`null`, ""},
	}
	for _, tt := range tests {
		r := &record.Record{Actor: json.RawMessage(tt.actor)}
		if tt.actor == "" {
			r.Actor = nil
		}
		if got := r.ActorID(); got != tt.want {
			t.Errorf("ActorID(%s) = %q, want %q", tt.actor, got, tt.want)
		}
	}
}

func TestOps(t *testing.T) {
	want := []record.Op{"insert", "update", "delete", "truncate", "snapshot", "ddl", "event"}
	if !slices.Equal(record.Ops, want) {
		t.Fatalf("Ops = %q, want %q", record.Ops, want)
	}
	for _, op := range want {
		if !op.Valid() {
			t.Errorf("%q not valid", op)
		}
	}
	for _, op := range []record.Op{"", "INSERT", "upsert", "insert "} {
		if op.Valid() {
			t.Errorf("%q should not be valid", op)
		}
	}
	if !slices.Equal(record.Kinds, []string{"postgres", "mysql", "dynamodb", "http", "debezium"}) {
		t.Fatalf("Kinds = %q", record.Kinds)
	}
}

func TestFieldErrorMessage(t *testing.T) {
	e := &record.FieldError{Field: "source.table", Reason: "is required"}
	if e.Error() != "source.table: is required" {
		t.Errorf("Error() = %q", e.Error())
	}
	e = &record.FieldError{Reason: "record is not valid UTF-8"}
	if e.Error() != "record is not valid UTF-8" {
		t.Errorf("Error() = %q", e.Error())
	}
	var err error = e
	if !errors.Is(err, record.ErrInvalid) || errors.Is(err, record.ErrFormat) || errors.Is(err, io.EOF) {
		t.Errorf("FieldError Is wrong")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), record.ErrInvalid) {
		t.Errorf("wrapped FieldError is not ErrInvalid")
	}
}
