package publish_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

func TestToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"customers", "customers"},
		{"public.users", "public%2Eusers"},
		{"a b", "a%20b"},
		{"tab\there", "tab%09here"},
		{"*", "%2A"},
		{">", "%3E"},
		{"50%", "50%25"},
		{"", "%"},
		{"nbsp\u00a0x", "nbsp%C2%A0x"},
		{"ünïcødé", "ünïcødé"},
		{"line\nbreak", "line%0Abreak"},
	} {
		if got := publish.Token(tc.in); got != tc.want {
			t.Errorf("Token(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Any name yields a token NATS accepts as one literal token, and the
// escaping is reversible.
func TestTokenProperty(t *testing.T) {
	alphabet := []rune{'a', 'Z', '0', '.', '*', '>', '%', ' ', '\t', '\n', '\r', '\u00a0', '\u2003', 'é', '_', '-', '/', '\x00', '\x7f'}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		in := b.String()
		tok := publish.Token(in)
		if !server.IsValidLiteralSubject("stele." + tok + ".x") {
			t.Fatalf("Token(%q) = %q is not a valid literal subject token", in, tok)
		}
		if strings.Count("stele."+tok+".x", ".") != 2 {
			t.Fatalf("Token(%q) = %q spans several tokens", in, tok)
		}
		if in == "" {
			continue
		}
		back, err := url.PathUnescape(tok)
		if err != nil || back != in {
			t.Fatalf("PathUnescape(Token(%q)=%q) = %q, %v", in, tok, back, err)
		}
	}
	// Invalid UTF-8 still yields a valid token.
	if tok := publish.Token("a\xffb"); !utf8.ValidString(tok) || !server.IsValidLiteralSubject(tok) {
		t.Fatalf("Token of invalid UTF-8 = %q", tok)
	}
}

func TestSubject(t *testing.T) {
	r := sampleRecord(7)
	r.Source.Name, r.Source.Table = "crm prod", "public.customers"
	if got, want := publish.Subject(publish.DefaultSubjectPrefix, r), "stele.lineage.crm%20prod.public%2Ecustomers.update"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
}

func sampleRecord(seq uint64) *record.Record {
	idx := int64(3)
	commit := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	return &record.Record{
		Seq:        seq,
		ID:         "rec-" + string(rune('a'+seq%26)),
		Source:     record.Source{Name: "crm", Kind: "postgres", Database: "crmdb", Schema: "public", Table: "customers"},
		Op:         record.OpUpdate,
		Key:        json.RawMessage(`{"id":7}`),
		Before:     json.RawMessage(`{"email":"a@b.c","id":7}`),
		After:      json.RawMessage(`{"email":"x@y.z","id":7}`),
		Changed:    []string{"email"},
		Actor:      json.RawMessage(`{"id":"alice"}`),
		Tx:         &record.Tx{ID: "991", Position: "0/16B3748", Index: &idx, CommitTime: &commit},
		OccurredAt: time.Date(2026, 3, 31, 12, 0, 0, 123456789, time.UTC),
		RecordedAt: time.Date(2026, 3, 31, 12, 0, 1, 500_000_000, time.UTC),
	}
}

func TestCloudEventsEnvelope(t *testing.T) {
	r := sampleRecord(4_000_000_000) // beyond a CloudEvents Integer
	b, err := publish.Encoder{Source: "stele://example.com/log"}.Append(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("event is not JSON: %v\n%s", err, b)
	}
	str := func(name string) string {
		var s string
		if err := json.Unmarshal(ev[name], &s); err != nil {
			t.Fatalf("attribute %s: %s is not a string", name, ev[name])
		}
		return s
	}
	for name, want := range map[string]string{
		"specversion":     "1.0",
		"id":              r.ID,
		"source":          "stele://example.com/log/crm",
		"type":            "dev.stele.lineage.update",
		"subject":         "customers/7",
		"datacontenttype": "application/json",
		"stelseq":         "4000000000",
	} {
		if got := str(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	tm, err := time.Parse(time.RFC3339Nano, str("time"))
	if err != nil || !tm.Equal(r.OccurredAt) {
		t.Errorf("time = %q (%v), want occurred_at %v", str("time"), err, r.OccurredAt)
	}
	if got, want := string(ev["data"]), string(record.AppendJSON(nil, r)); got != want {
		t.Errorf("data = %s\nwant the record JSON %s", got, want)
	}
}

func TestDebeziumShape(t *testing.T) {
	r := sampleRecord(12)
	b, err := publish.Encoder{Format: publish.FormatDebezium}.Append(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			Before map[string]any `json:"before"`
			After  map[string]any `json:"after"`
			Source map[string]any `json:"source"`
			Op     string         `json:"op"`
			TsMs   int64          `json:"ts_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("event is not JSON: %v\n%s", err, b)
	}
	d := ev.Data
	if d.Op != "u" || d.Before["email"] != "a@b.c" || d.After["email"] != "x@y.z" {
		t.Errorf("op/before/after = %q %v %v", d.Op, d.Before, d.After)
	}
	if d.TsMs != r.RecordedAt.UnixMilli() {
		t.Errorf("ts_ms = %d, want recorded_at %d", d.TsMs, r.RecordedAt.UnixMilli())
	}
	for k, want := range map[string]any{
		"connector": "postgres", "name": "crm", "db": "crmdb", "schema": "public", "table": "customers",
		"ts_ms": float64(r.OccurredAt.UnixMilli()), "txId": "991", "lsn": "0/16B3748",
		"stele_seq": float64(12), "stele_id": r.ID, "snapshot": "false",
	} {
		if d.Source[k] != want {
			t.Errorf("source.%s = %v, want %v", k, d.Source[k], want)
		}
	}

	// Every op maps; an insert has a null before, a delete a null after.
	for op, want := range map[record.Op]string{record.OpInsert: "c", record.OpUpdate: "u", record.OpDelete: "d",
		record.OpSnapshot: "r", record.OpTruncate: "t", record.OpDDL: "m", record.OpEvent: "m"} {
		if got := publish.DebeziumOp(op); got != want {
			t.Errorf("DebeziumOp(%s) = %q, want %q", op, got, want)
		}
	}
	r.Op, r.Before = record.OpInsert, nil
	b, _ = publish.Encoder{Format: publish.FormatDebezium}.Append(nil, r)
	var ins struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &ins); err != nil {
		t.Fatal(err)
	}
	if string(ins.Data["before"]) != "null" || string(ins.Data["op"]) != `"c"` {
		t.Errorf("insert: before = %s, op = %s; want null, \"c\"", ins.Data["before"], ins.Data["op"])
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]publish.Format{"": publish.FormatRecord, "cloudevents": publish.FormatRecord, "debezium": publish.FormatDebezium} {
		if got, err := publish.ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := publish.ParseFormat("avro"); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("ParseFormat(avro) = %v, want an error naming format", err)
	}
}
