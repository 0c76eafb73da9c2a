package record_test

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

const minimal = `{"source":{"name":"crm","table":"customers"},"op":"insert","key":{"id":1}}`

var (
	derivedID = regexp.MustCompile(`^p[a-z2-7]{26}$`)
	randomID  = regexp.MustCompile(`^r[a-z2-7]{26}$`)
)

func TestParseIngestMinimal(t *testing.T) {
	now := time.Date(2026, 5, 6, 9, 8, 7, 6, time.FixedZone("CEST", 2*3600))
	r, err := record.ParseIngest([]byte(minimal), record.IngestOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := record.Source{Name: "crm", Kind: "http", Table: "customers"}
	if r.Source != want {
		t.Errorf("source = %+v, want %+v", r.Source, want)
	}
	if r.Op != record.OpInsert || string(r.Key) != `{"id":1}` {
		t.Errorf("op/key = %q/%s", r.Op, r.Key)
	}
	if !r.OccurredAt.Equal(now) || r.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at = %v, want %v in UTC", r.OccurredAt, now)
	}
	if !randomID.MatchString(r.ID) {
		t.Errorf("id = %q, want a random id", r.ID)
	}
	if r.Seq != 0 || !r.RecordedAt.IsZero() {
		t.Errorf("seq/recorded_at set by ingest: %d %v", r.Seq, r.RecordedAt)
	}
	if r.Before != nil || r.After != nil || r.Actor != nil || r.Cause != nil || r.Tx != nil || r.Schema != nil || r.Changed != nil {
		t.Errorf("optional members set: %+v", r)
	}
}

func TestParseIngestDefaults(t *testing.T) {
	t.Run("DefaultKind", func(t *testing.T) {
		r, err := record.ParseIngest([]byte(minimal), record.IngestOptions{DefaultKind: "debezium", Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if r.Source.Kind != "debezium" {
			t.Errorf("kind = %q, want the default kind", r.Source.Kind)
		}
	})
	t.Run("explicit kind beats DefaultKind", func(t *testing.T) {
		in := `{"source":{"name":"crm","kind":"mysql","table":"customers"},"op":"insert","key":{"id":1}}`
		r, err := record.ParseIngest([]byte(in), record.IngestOptions{DefaultKind: "debezium", Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if r.Source.Kind != "mysql" {
			t.Errorf("kind = %q, want mysql", r.Source.Kind)
		}
	})
	t.Run("zero Now uses the clock", func(t *testing.T) {
		before := time.Now()
		r, err := record.ParseIngest([]byte(minimal), record.IngestOptions{})
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if r.OccurredAt.Before(before.Add(-time.Second)) || r.OccurredAt.After(after.Add(time.Second)) || r.OccurredAt.Location() != time.UTC {
			t.Errorf("occurred_at = %v, want about now in UTC", r.OccurredAt)
		}
	})
	t.Run("client occurred_at beats Now", func(t *testing.T) {
		in := `{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"2020-02-29T23:00:00.25-01:00"}`
		r := mustParse(t, in)
		if want := time.Date(2020, 3, 1, 0, 0, 0, 250000000, time.UTC); !r.OccurredAt.Equal(want) || r.OccurredAt.Location() != time.UTC {
			t.Errorf("occurred_at = %v, want %v", r.OccurredAt, want)
		}
	})
}

func TestParseIngestFull(t *testing.T) {
	r := mustParse(t, customerUpdate)
	if want := (record.Source{Name: "crm", Kind: "postgres", Database: "crm", Schema: "public", Table: "customers"}); r.Source != want {
		t.Errorf("source = %+v", r.Source)
	}
	if r.Op != record.OpUpdate {
		t.Errorf("op = %q", r.Op)
	}
	if string(r.Key) != `{"tenant":"acme","id":42}` {
		t.Errorf("key = %s", r.Key)
	}
	if string(r.Before) != `{"address":{"city":"London","zip":"N1"},"balance":12345678901234567890.123456789,"email":"ada@old.example","name":"Ada","tags":["a","b"]}` {
		t.Errorf("before = %s", r.Before)
	}
	if string(r.After) != `{"address":{"city":"Paris","zip":"N1"},"balance":12345678901234567890.123456789,"email":"ada@new.example","name":"Ada","tags":["a","b"]}` {
		t.Errorf("after = %s", r.After)
	}
	if !slices.Equal(r.Changed, []string{"address", "email"}) {
		t.Errorf("changed = %q", r.Changed)
	}
	if string(r.Actor) != `{"app":"backoffice","id":"u-7","ip":"203.0.113.9","request_id":"req-1","roles":["admin"],"type":"user"}` {
		t.Errorf("actor = %s", r.Actor)
	}
	if r.ActorID() != "u-7" {
		t.Errorf("ActorID = %q", r.ActorID())
	}
	if r.Tx == nil || r.Tx.ID != "tx-1" || r.Tx.Position != "0/16B3748" || r.Tx.Index == nil || *r.Tx.Index != 3 || r.Tx.CommitTime == nil {
		t.Fatalf("tx = %+v", r.Tx)
	}
	if want := time.Date(2026, 1, 2, 13, 4, 5, 123456000, time.UTC); !r.Tx.CommitTime.Equal(want) || r.Tx.CommitTime.Location() != time.UTC {
		t.Errorf("commit_time = %v, want %v in UTC", r.Tx.CommitTime, want)
	}
	if string(r.Cause) != `{"description":"customer moved","ticket":991,"type":"support_ticket"}` {
		t.Errorf("cause = %s", r.Cause)
	}
	if r.Schema == nil || *r.Schema != (record.SchemaRef{Subject: "crm.customers", Version: 7}) {
		t.Errorf("schema = %+v", r.Schema)
	}
	if want := time.Date(2026, 1, 2, 13, 4, 5, 500000000, time.UTC); !r.OccurredAt.Equal(want) || r.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at = %v, want %v", r.OccurredAt, want)
	}
	if !derivedID.MatchString(r.ID) || r.ID != record.DeriveID(r) {
		t.Errorf("id = %q, want derived %q", r.ID, record.DeriveID(r))
	}
}

func TestParseIngestAcceptsEveryOpAndKind(t *testing.T) {
	for _, op := range record.Ops {
		for _, kind := range record.Kinds {
			in := `{"source":{"name":"s","kind":"` + kind + `","table":"t"},"op":"` + string(op) + `","key":{"id":1}}`
			r, err := record.ParseIngest([]byte(in), testOpts)
			if err != nil {
				t.Errorf("op %s kind %s: %v", op, kind, err)
				continue
			}
			if r.Op != op || r.Source.Kind != kind {
				t.Errorf("op %s kind %s parsed as %s %s", op, kind, r.Op, r.Source.Kind)
			}
		}
	}
}

func TestParseIngestChanged(t *testing.T) {
	const head = `{"source":{"name":"s","table":"t"},"key":{"id":1},`
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"update: only differing fields", head + `"op":"update","before":{"id":1,"a":1,"b":2,"c":3},"after":{"id":1,"a":1,"b":5,"c":3}}`, []string{"b"}},
		{"update: added and removed fields", head + `"op":"update","before":{"id":1,"old":1},"after":{"id":1,"new":1}}`, []string{"new", "old"}},
		{"update: nested change is the top-level field", head + `"op":"update","before":{"addr":{"city":"A","zip":1}},"after":{"addr":{"city":"B","zip":1}}}`, []string{"addr"}},
		{"update: nested member order is not a change", head + `"op":"update","before":{"addr":{"city":"A","zip":1},"n":1},"after":{"addr":{"zip":1,"city":"A"},"n":2}}`, []string{"n"}},
		{"update: whitespace is not a change", head + `"op":"update","before":{"a":{"x": [1, 2]}},"after":{"a":{"x":[1,2]}}}`, nil},
		{"update: nothing changed", head + `"op":"update","before":{"a":1},"after":{"a":1}}`, nil},
		{"insert: all after fields", head + `"op":"insert","after":{"z":1,"id":1,"a":null}}`, []string{"a", "id", "z"}},
		{"delete: all before fields", head + `"op":"delete","before":{"z":1,"id":1}}`, []string{"id", "z"}},
		{"null images are absent", head + `"op":"insert","before":null,"after":{"a":1}}`, []string{"a"}},
		{"no images", head + `"op":"event"}`, nil},
		{"client changed matching", head + `"op":"update","before":{"a":1,"b":1,"c":1},"after":{"a":2,"b":1,"c":2},"changed":["c","a"]}`, []string{"a", "c"}},
		{"client changed with duplicates", head + `"op":"update","before":{"a":1,"c":1},"after":{"a":2,"c":2},"changed":["c","a","c"]}`, []string{"a", "c"}},
		{"client changed empty when nothing changed", head + `"op":"update","before":{"a":1},"after":{"a":1},"changed":[]}`, nil},
		{"client changed kept with only after (partial image)", head + `"op":"update","after":{"a":1,"b":2},"changed":["b"]}`, []string{"b"}},
		{"client changed kept with no images", head + `"op":"update","changed":["x","a"]}`, []string{"a", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, tt.in)
			if !slices.Equal(r.Changed, tt.want) {
				t.Fatalf("changed = %q, want %q", r.Changed, tt.want)
			}
			if len(r.Before) > 0 && len(r.After) > 0 {
				computed, err := record.ChangedFields(r.Before, r.After)
				if err != nil || !slices.Equal(computed, r.Changed) {
					t.Fatalf("ChangedFields on the parsed images = %q, %v", computed, err)
				}
			}
		})
	}
}

func TestParseIngestID(t *testing.T) {
	rec := func(source, tx string) string {
		return `{"source":` + source + `,"op":"update","key":{"id":1},"after":{"v":1}` + tx + `}`
	}
	const src = `{"name":"crm","kind":"postgres","database":"d","schema":"public","table":"customers"}`
	parseID := func(t *testing.T, in string) string {
		t.Helper()
		return mustParse(t, in).ID
	}

	base := parseID(t, rec(src, `,"tx":{"position":"0/1","index":2}`))
	if !derivedID.MatchString(base) {
		t.Fatalf("derived id %q has the wrong form", base)
	}

	same := map[string]string{
		"identical input":                rec(src, `,"tx":{"position":"0/1","index":2}`),
		"different tx id and time":       rec(src, `,"tx":{"id":"other","position":"0/1","index":2,"commit_time":"2026-01-01T00:00:00Z"}`),
		"different images and time":      `{"source":` + src + `,"op":"delete","key":{"id":9},"before":{"v":3},"occurred_at":"2020-01-01T00:00:00Z","tx":{"index":2,"position":"0/1"}}`,
		"different member order":         `{"tx":{"index":2,"position":"0/1"},"key":{"id":1},"op":"update","source":{"table":"customers","schema":"public","database":"d","kind":"postgres","name":"crm"}}`,
		"different actor, cause, schema": rec(src, `,"tx":{"position":"0/1","index":2},"actor":{"id":"x"},"cause":{"type":"y"},"schema":{"subject":"s","version":3}`),
	}
	for name, in := range same {
		if got := parseID(t, in); got != base {
			t.Errorf("%s: id %q, want %q (same source position)", name, got, base)
		}
	}

	different := map[string]string{
		"different index":           rec(src, `,"tx":{"position":"0/1","index":3}`),
		"index 0":                   rec(src, `,"tx":{"position":"0/1","index":0}`),
		"no index":                  rec(src, `,"tx":{"position":"0/1"}`),
		"different position":        rec(src, `,"tx":{"position":"0/2","index":2}`),
		"different name":            rec(`{"name":"crm2","kind":"postgres","database":"d","schema":"public","table":"customers"}`, `,"tx":{"position":"0/1","index":2}`),
		"different kind":            rec(`{"name":"crm","kind":"mysql","database":"d","schema":"public","table":"customers"}`, `,"tx":{"position":"0/1","index":2}`),
		"different database":        rec(`{"name":"crm","kind":"postgres","database":"e","schema":"public","table":"customers"}`, `,"tx":{"position":"0/1","index":2}`),
		"different schema":          rec(`{"name":"crm","kind":"postgres","database":"d","schema":"audit","table":"customers"}`, `,"tx":{"position":"0/1","index":2}`),
		"different table":           rec(`{"name":"crm","kind":"postgres","database":"d","schema":"public","table":"orders"}`, `,"tx":{"position":"0/1","index":2}`),
		"fields shifted":            rec(`{"name":"crm","kind":"postgres","database":"dpublic","table":"customers"}`, `,"tx":{"position":"0/1","index":2}`),
		"index moved into position": rec(src, `,"tx":{"position":"0/12"}`),
	}
	seen := map[string]string{base: "base"}
	for name, in := range different {
		got := parseID(t, in)
		if !derivedID.MatchString(got) {
			t.Errorf("%s: id %q is not a derived id", name, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("%s: id %q collides with %s", name, got, prev)
		}
		seen[got] = name
	}

	t.Run("DeriveID is deterministic", func(t *testing.T) {
		r := mustParse(t, rec(src, `,"tx":{"position":"0/1","index":2}`))
		for range 3 {
			if id := record.DeriveID(r); id != base {
				t.Fatalf("DeriveID = %q, want %q", id, base)
			}
		}
		other := *r
		otherTx := *r.Tx
		idx := int64(3)
		otherTx.Index = &idx
		other.Tx = &otherTx
		if record.DeriveID(&other) == base {
			t.Fatal("DeriveID ignores tx.index")
		}
	})

	t.Run("no position gives random ids", func(t *testing.T) {
		for name, tx := range map[string]string{
			"no tx":                  "",
			"tx without position":    `,"tx":{"id":"t1","index":2}`,
			"tx with empty position": `,"tx":{"position":"","index":2}`,
			"null tx":                `,"tx":null`,
		} {
			in := rec(src, tx)
			a, b := parseID(t, in), parseID(t, in)
			if !randomID.MatchString(a) || !randomID.MatchString(b) {
				t.Errorf("%s: ids %q %q are not random ids", name, a, b)
			}
			if a == b {
				t.Errorf("%s: two captures without a position got the same id %q", name, a)
			}
		}
		r := &record.Record{Source: record.Source{Name: "s", Kind: "http", Table: "t"}}
		if first, second := record.DeriveID(r), record.DeriveID(r); first == second {
			t.Errorf("DeriveID without a position is not random")
		}
	})

	t.Run("client id is kept", func(t *testing.T) {
		in := `{"id":"client-id-1","source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"tx":{"position":"p"}}`
		if got := parseID(t, in); got != "client-id-1" {
			t.Errorf("id = %q, want the client's", got)
		}
		long := strings.Repeat("x", record.MaxIDBytes)
		in = `{"id":"` + long + `","source":{"name":"s","table":"t"},"op":"insert","key":{"id":1}}`
		if got := parseID(t, in); got != long {
			t.Errorf("id of exactly MaxIDBytes not kept")
		}
	})
}

// validWith returns the minimal record with one top-level member added or
// replaced by the raw text given (not validated, so it may be malformed), or
// removed when raw is "".
func validWith(name, raw string) string {
	members := []struct{ name, raw string }{
		{"source", `{"name":"crm","table":"customers"}`},
		{"op", `"update"`},
		{"key", `{"id":1}`},
	}
	found := false
	var b strings.Builder
	b.WriteByte('{')
	sep := ""
	for _, m := range members {
		if m.name == name {
			found = true
			if raw == "" {
				continue
			}
			m.raw = raw
		}
		b.WriteString(sep + `"` + m.name + `":` + m.raw)
		sep = ","
	}
	if !found && raw != "" {
		b.WriteString(sep + `"` + name + `":` + raw)
	}
	b.WriteByte('}')
	return b.String()
}

func TestParseIngestErrors(t *testing.T) {
	const valid = `{"source":{"name":"crm","table":"customers"},"op":"update","key":{"id":1}}`
	tests := []struct {
		name   string
		in     string
		field  string
		reason string // a substring the reason must contain
	}{
		// Whole-input problems.
		{"empty input", ``, "", "malformed JSON"},
		{"whitespace only", "  \n", "", "malformed JSON"},
		{"not JSON", `hello`, "", "malformed JSON"},
		{"truncated object", `{"source":{"name":"crm"`, "source", "malformed JSON"},
		{"truncated after member", `{"op":"insert",`, "", "malformed JSON"},
		{"open brace only", `{`, "", "malformed JSON"},
		{"missing value", `{"op":}`, "op", "malformed JSON"},
		{"missing colon", `{"op" "insert"}`, "op", "malformed JSON"},
		{"trailing comma", `{"op":"insert",}`, "", "malformed JSON"},
		{"single quotes", `{'op':'insert'}`, "", "malformed JSON"},
		{"array", `[` + valid + `]`, "", "expected a JSON object, got an array"},
		{"string", `"x"`, "", "expected a JSON object, got a string"},
		{"number", `42`, "", "expected a JSON object, got a number"},
		{"null", `null`, "", "expected a JSON object, got null"},
		{"boolean", `true`, "", "expected a JSON object, got a boolean"},
		{"trailing object", valid + ` {}`, "", "unexpected data after the JSON object"},
		{"trailing number", valid + `1`, "", "unexpected data after the JSON object"},
		{"trailing garbage", valid + `x`, "", "unexpected data after the JSON object"},
		{"trailing bracket", valid + `]`, "", "unexpected data after the JSON object"},
		{"trailing brace", valid + `}`, "", "unexpected data after the JSON object"},
		{"invalid UTF-8", "{\"source\":{\"name\":\"cr\xffm\",\"table\":\"t\"},\"op\":\"update\",\"key\":{\"id\":1}}", "", "UTF-8"},
		{"invalid UTF-8 in image", validWith("after", "{\"a\":\"\xc3\"}"), "", "UTF-8"},
		{"lone surrogate escape", validWith("op", `"\ud800"`), "op", "malformed JSON"},
		{"bad escape", validWith("op", `"\x"`), "op", "malformed JSON"},
		{"raw control char in string", "{\"op\":\"in\x01sert\"}", "op", "malformed JSON"},
		{"duplicate top-level member", `{"op":"insert","op":"update","source":{"name":"crm","table":"t"},"key":{"id":1}}`, "op", "duplicate"},
		{"duplicate in source", validWith("source", `{"name":"a","name":"b","table":"t"}`), "source.name", "duplicate"},
		{"duplicate in key", validWith("key", `{"id":1,"id":2}`), "key.id", "duplicate"},
		{"duplicate in after", validWith("after", `{"a":1,"b":{"c":1,"c":1}}`), "after.b.c", "duplicate"},
		{"duplicate in tx", validWith("tx", `{"position":"a","position":"b"}`), "tx.position", "duplicate"},

		// Unknown and log-assigned fields.
		{"unknown top-level field", validWith("extra", `1`), "extra", "unknown field"},
		{"misspelt field", validWith("befor", `{}`), "befor", "unknown field"},
		{"unknown source field", validWith("source", `{"name":"crm","table":"t","x":"y"}`), "source.x", "unknown field"},
		{"unknown tx field", validWith("tx", `{"position":"p","x":1}`), "tx.x", "unknown field"},
		{"unknown schema field", validWith("schema", `{"subject":"s","version":1,"x":1}`), "schema.x", "unknown field"},
		{"seq sent", validWith("seq", `5`), "seq", "assigned by the log"},
		{"recorded_at sent", validWith("recorded_at", `"2026-01-02T03:04:05Z"`), "recorded_at", "assigned by the log"},

		// Required fields.
		{"missing source", validWith("source", ""), "source.name", "is required"},
		{"missing source.name", validWith("source", `{"table":"t"}`), "source.name", "is required"},
		{"empty source.name", validWith("source", `{"name":"","table":"t"}`), "source.name", "is required"},
		{"missing source.table", validWith("source", `{"name":"crm"}`), "source.table", "is required"},
		{"missing op", validWith("op", ""), "op", "is required"},
		{"missing key", validWith("key", ""), "key", "is required"},
		{"empty key", validWith("key", `{}`), "key", "at least one column"},
		{"empty key with spaces", validWith("key", `{ }`), "key", "at least one column"},
		{"key is array", validWith("key", `[1]`), "key", "expected a JSON object, got an array"},
		{"key is string", validWith("key", `"1"`), "key", "expected a JSON object, got a string"},
		{"key is number", validWith("key", `1`), "key", "expected a JSON object, got a number"},
		{"key is null", validWith("key", `null`), "key", "expected a JSON object, got null"},

		// Wrong types and values.
		{"op number", validWith("op", `1`), "op", "expected a string, got a number"},
		{"op null", validWith("op", `null`), "op", "expected a string, got null"},
		{"op unknown", validWith("op", `"upsert"`), "op", `"upsert" is not one of insert, update, delete, truncate, snapshot, ddl, event`},
		{"op upper case", validWith("op", `"INSERT"`), "op", "is not one of"},
		{"op empty", validWith("op", `""`), "op", "is not one of"},
		{"op too long", validWith("op", `"`+strings.Repeat("a", 33)+`"`), "op", "limit"},
		{"source is string", validWith("source", `"crm"`), "source", "expected a JSON object, got a string"},
		{"source is null", validWith("source", `null`), "source", "expected a JSON object, got null"},
		{"source.name number", validWith("source", `{"name":1,"table":"t"}`), "source.name", "expected a string, got a number"},
		{"source.table object", validWith("source", `{"name":"n","table":{}}`), "source.table", "expected a string, got an object"},
		{"source.kind bad", validWith("source", `{"name":"n","table":"t","kind":"oracle"}`), "source.kind", `"oracle" is not one of postgres, mysql, dynamodb, http, debezium`},
		{"source.kind case", validWith("source", `{"name":"n","table":"t","kind":"Postgres"}`), "source.kind", "is not one of"},
		{"source.name too long", validWith("source", `{"name":"`+strings.Repeat("n", record.MaxNameBytes+1)+`","table":"t"}`), "source.name", "257 bytes, more than the 256-byte limit"},
		{"id number", validWith("id", `5`), "id", "expected a string, got a number"},
		{"id empty", validWith("id", `""`), "id", "must not be empty"},
		{"id too long", validWith("id", `"`+strings.Repeat("i", record.MaxIDBytes+1)+`"`), "id", "201 bytes, more than the 200-byte limit"},
		{"id multibyte too long", validWith("id", `"`+strings.Repeat("é", 101)+`"`), "id", "202 bytes"},
		{"tx not object", validWith("tx", `"p"`), "tx", "expected a JSON object, got a string"},
		{"tx.index string", validWith("tx", `{"position":"p","index":"1"}`), "tx.index", "expected an integer, got a string"},
		{"tx.index negative", validWith("tx", `{"position":"p","index":-1}`), "tx.index", "must not be negative"},
		{"tx.index fraction", validWith("tx", `{"position":"p","index":1.5}`), "tx.index", "expected an integer"},
		{"tx.index exponent", validWith("tx", `{"position":"p","index":1e3}`), "tx.index", "expected an integer"},
		{"tx.index overflow", validWith("tx", `{"position":"p","index":9223372036854775808}`), "tx.index", "expected an integer"},
		{"tx.position number", validWith("tx", `{"position":1}`), "tx.position", "expected a string"},
		{"tx.id bool", validWith("tx", `{"id":true}`), "tx.id", "expected a string, got a boolean"},
		{"tx.commit_time bad", validWith("tx", `{"commit_time":"noon"}`), "tx.commit_time", "not an RFC 3339 timestamp"},
		{"tx.commit_time number", validWith("tx", `{"commit_time":1700000000}`), "tx.commit_time", "expected an RFC 3339 timestamp string"},
		{"occurred_at not RFC3339", validWith("occurred_at", `"2026-01-02 03:04:05"`), "occurred_at", "not an RFC 3339 timestamp"},
		{"occurred_at date only", validWith("occurred_at", `"2026-01-02"`), "occurred_at", "not an RFC 3339 timestamp"},
		{"occurred_at no zone", validWith("occurred_at", `"2026-01-02T03:04:05"`), "occurred_at", "not an RFC 3339 timestamp"},
		{"occurred_at number", validWith("occurred_at", `1700000000`), "occurred_at", "expected an RFC 3339 timestamp string, got a number"},
		{"occurred_at null", validWith("occurred_at", `null`), "occurred_at", "expected an RFC 3339 timestamp string, got null"},
		{"occurred_at UTC year -1", validWith("occurred_at", `"0000-01-01T00:00:00+01:00"`), "occurred_at", "year"},
		{"occurred_at UTC year 10000", validWith("occurred_at", `"9999-12-31T23:30:00-01:00"`), "occurred_at", "year"},
		{"commit_time UTC year 10000", validWith("tx", `{"commit_time":"9999-12-31T23:30:00-01:00"}`), "tx.commit_time", "year"},
		{"schema not object", validWith("schema", `[]`), "schema", "expected a JSON object, got an array"},
		{"schema.version 0", validWith("schema", `{"subject":"s","version":0}`), "schema.version", "must be 1 or more"},
		{"schema.version negative", validWith("schema", `{"subject":"s","version":-3}`), "schema.version", "must be 1 or more"},
		{"schema.version string", validWith("schema", `{"subject":"s","version":"1"}`), "schema.version", "expected an integer, got a string"},
		{"schema.version float", validWith("schema", `{"subject":"s","version":1.0}`), "schema.version", "expected an integer"},
		{"schema.subject missing", validWith("schema", `{"version":1}`), "schema.subject", "is required when schema is given"},
		{"schema.subject number", validWith("schema", `{"subject":1,"version":1}`), "schema.subject", "expected a string"},
		{"before array", validWith("before", `[1]`), "before", "expected a JSON object, got an array"},
		{"after string", validWith("after", `"x"`), "after", "expected a JSON object, got a string"},
		{"cause number", validWith("cause", `1`), "cause", "expected a JSON object, got a number"},
		{"actor array", validWith("actor", `[]`), "actor", "expected a JSON object, got an array"},
		{"actor.id number", validWith("actor", `{"id":7}`), "actor.id", "expected a string, got a number"},
		{"actor.ip too long", validWith("actor", `{"ip":"`+strings.Repeat("1", 257)+`"}`), "actor.ip", "limit"},
		{"changed not array", validWith("changed", `"a"`), "changed", "expected an array of strings, got a string"},
		{"changed item number", validWith("changed", `["a",1]`), "changed[1]", "expected a string, got a number"},
		{"changed mismatch", `{"source":{"name":"s","table":"t"},"op":"update","key":{"id":1},"before":{"a":1,"b":1},"after":{"a":2,"b":1},"changed":["b"]}`, "changed", "does not match the fields that differ between before and after (a)"},
		{"changed missing one", `{"source":{"name":"s","table":"t"},"op":"update","key":{"id":1},"before":{"a":1,"b":1},"after":{"a":2,"b":2},"changed":["a"]}`, "changed", "does not match"},
		{"changed extra", `{"source":{"name":"s","table":"t"},"op":"update","key":{"id":1},"before":{"a":1,"b":1},"after":{"a":2,"b":1},"changed":["a","b"]}`, "changed", "does not match"},

		// Control characters in strings.
		{"control char in source.name", validWith("source", `{"name":"a\u0001b","table":"t"}`), "source.name", "control characters"},
		{"newline in source.table", validWith("source", `{"name":"a","table":"t\n"}`), "source.table", "control characters"},
		{"tab in op", validWith("op", `"insert\t"`), "op", "control characters"},
		{"DEL in id", validWith("id", `"a\u007fb"`), "id", "control characters"},
		{"NUL in tx.position", validWith("tx", `{"position":"a\u0000"}`), "tx.position", "control characters"},
		{"escape in actor.request_id", validWith("actor", `{"request_id":"r\u001b[31m"}`), "actor.request_id", "control characters"},
		{"newline in changed", validWith("changed", `["a\nb"]`), "changed[0]", "control characters"},
		{"control char in schema.subject", validWith("schema", `{"subject":"s\r","version":1}`), "schema.subject", "control characters"},

		// Size.
		{"larger than MaxRecordBytes", validWith("after", `{"blob":"`+strings.Repeat("x", record.MaxRecordBytes)+`"}`), "", "more than the 1048576-byte limit"},
	}
	names := map[string]bool{}
	for _, tt := range tests {
		if names[tt.name] {
			t.Fatalf("duplicate test name %q", tt.name)
		}
		names[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			r, err := record.ParseIngest([]byte(tt.in), testOpts)
			if err == nil {
				t.Fatalf("ParseIngest accepted %.200s as %+v", tt.in, r)
			}
			if r != nil {
				t.Errorf("ParseIngest returned a record with its error")
			}
			if !errors.Is(err, record.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var fe *record.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (reason %q)", fe.Field, tt.field, fe.Reason)
			}
			if strings.TrimSpace(fe.Reason) == "" || !strings.Contains(fe.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", fe.Reason, tt.reason)
			}
			if len(fe.Reason) > 400 {
				t.Errorf("Reason is %d bytes; a client message should be short", len(fe.Reason))
			}
			if tt.field != "" && !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Error() = %q does not name the field", err.Error())
			}
		})
	}
}

func TestParseIngestSizeLimit(t *testing.T) {
	pad := func(n int) []byte {
		b := []byte(minimal)
		return append(b, strings.Repeat(" ", n-len(b))...)
	}
	if _, err := record.ParseIngest(pad(record.MaxRecordBytes), testOpts); err != nil {
		t.Fatalf("record of exactly MaxRecordBytes rejected: %v", err)
	}
	_, err := record.ParseIngest(pad(record.MaxRecordBytes+1), testOpts)
	var fe *record.FieldError
	if !errors.As(err, &fe) || fe.Field != "" || !strings.Contains(fe.Reason, "1048577 bytes") {
		t.Fatalf("record of MaxRecordBytes+1: error %v", err)
	}
}

// ParseIngest must not keep references to the caller's buffer: the HTTP
// layer reuses it.
func TestParseIngestDoesNotAliasInput(t *testing.T) {
	in := []byte(customerUpdate)
	r, err := record.ParseIngest(in, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := record.Encode(r)
	for i := range in {
		in[i] = 'X'
	}
	if got := record.Encode(r); string(got) != string(want) {
		t.Fatalf("record changed when the input buffer was overwritten")
	}
}

func TestParseIngestAcceptsUnicode(t *testing.T) {
	in := `{"source":{"name":"crm-é","table":"客户"},"op":"insert","key":{"名":"😀"},"after":{"s":"\u2028 ok","t":"tab\there"},"actor":{"id":"ü","note":"line\nbreak"}}`
	r := mustParse(t, in)
	if r.Source.Name != "crm-é" || r.Source.Table != "客户" {
		t.Fatalf("source = %+v", r.Source)
	}
	if ks, err := record.KeyString(r.Key); err != nil || ks != "😀" {
		t.Fatalf("KeyString = %q, %v", ks, err)
	}
	// Control characters inside images and free-form actor members are data.
	if !strings.Contains(string(r.After), `\t`) || !strings.Contains(string(r.Actor), `\n`) {
		t.Fatalf("escaped control characters lost: %s %s", r.After, r.Actor)
	}
}
