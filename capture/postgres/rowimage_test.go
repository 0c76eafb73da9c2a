package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stele/stele/record"
)

// The image is built by concatenation; it must be exactly what
// canonicalising the naive object gives, member order included (UTF-16
// order differs from byte order for names beyond the BMP).
func TestImageIsCanonical(t *testing.T) {
	names := []string{"id", "b", "a", "Z", "é", "\U0001F600", "\uFF21", "a b", "<tag>", "q\"uote"}
	cols := make([]*pglogrepl.RelationMessageColumn, len(names))
	for i, n := range names {
		cols[i] = &pglogrepl.RelationMessageColumn{Name: n, DataType: pgtype.TextOID}
	}
	rel := &relation{schema: "public", table: "t", cols: cols, key: []string{"id"}}
	lay, err := rel.layout()
	if err != nil {
		t.Fatal(err)
	}
	m := pgtype.NewMap()
	vals := make(rowVals, len(names))
	inputs := []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int8OID, "-42"}, {pgtype.TextOID, "<a & b>\u2028\x01"}, {pgtype.JSONBOID, `{"b": [1, 2], "a": {"y": 1, "x": "é"}}`},
		{pgtype.NumericOID, "12345678901234567890.1230"}, {pgtype.Float8OID, "NaN"}, {pgtype.BoolOID, "t"},
		{pgtype.TimestamptzOID, "2026-11-25 04:34:54.1234+05:30"}, {pgtype.ByteaOID, `\x00ff10`},
		{pgtype.TextArrayOID, `{"a<b",NULL,c}`}, {pgtype.DateOID, "2024-02-29"},
	}
	naive := []byte{'{'}
	for i, in := range inputs {
		v, err := columnJSON(m, in.oid, []byte(in.text))
		if err != nil {
			t.Fatalf("column %d (%q): %v", i, in.text, err)
		}
		canon, err := record.Canonical(v)
		if err != nil || !bytes.Equal(canon, v) {
			t.Errorf("value of %q = %s, not canonical (canonical %s, err %v)", in.text, v, canon, err)
		}
		vals[i] = v
		if i > 0 {
			naive = append(naive, ',')
		}
		nameJSON, _ := json.Marshal(names[i])
		naive = append(append(append(naive, nameJSON...), ':'), v...)
	}
	naive = append(naive, '}')
	want, err := record.Canonical(naive)
	if err != nil {
		t.Fatal(err)
	}
	if got := lay.image(vals); !bytes.Equal(got, want) {
		t.Errorf("image\n got %s\nwant %s", got, want)
	}
	// An absent column is left out; an image of no row is nil.
	dropped := vals[1]
	vals[1] = nil
	if got := lay.image(vals); bytes.Contains(got, dropped) || !json.Valid(got) {
		t.Errorf("absent column in image: %s", got)
	}
	if lay.image(nil) != nil {
		t.Error("image of no row is not nil")
	}
	if key, err := lay.keyOf(vals); err != nil || string(key) != `{"id":-42}` {
		t.Errorf("key = %s, %v", key, err)
	}
	vals[0] = nil
	if _, err := lay.keyOf(vals); err == nil || !strings.Contains(err.Error(), "key column id missing") {
		t.Errorf("key without its column: %v", err)
	}
}

func TestChangedColumns(t *testing.T) {
	rel := &relation{cols: []*pglogrepl.RelationMessageColumn{{Name: "id"}, {Name: "z"}, {Name: "a"}, {Name: "m"}}}
	before := rowVals{json.RawMessage("1"), json.RawMessage(`"x"`), nil, json.RawMessage("2")}
	after := rowVals{json.RawMessage("1"), json.RawMessage(`"y"`), json.RawMessage("3"), nil}
	if got := fmt.Sprint(rel.changed(before, after)); got != "[a m z]" {
		t.Errorf("changed = %s, want [a m z]", got)
	}
	if got := fmt.Sprint(rel.changed(nil, after)); got != "[a id z]" {
		t.Errorf("insert missing a column: changed = %s, want [a id z]", got)
	}
	full := rowVals{json.RawMessage("1"), json.RawMessage(`"y"`), json.RawMessage("3"), json.RawMessage("null")}
	for _, tc := range []struct{ before, after rowVals }{{nil, full}, {full, nil}} {
		got := rel.changed(tc.before, tc.after)
		if fmt.Sprint(got) != "[a id m z]" {
			t.Errorf("insert or delete: changed = %v, want [a id m z]", got)
		}
		// The list is shared between records: appending must not write
		// into it.
		_ = append(got, "extra")
		if again := rel.changed(tc.before, tc.after); fmt.Sprint(again) != "[a id m z]" {
			t.Errorf("after an append to a returned list: %v", again)
		}
	}
	if got := rel.changed(full, full); got != nil {
		t.Errorf("no change: %v, want nil", got)
	}
}

// The ISO fast path must agree with pgx for what it accepts and decline
// what it cannot read.
func TestParseISOTimeAgreesWithPgx(t *testing.T) {
	m := pgtype.NewMap()
	cases := []struct {
		oid  uint32
		text string
		fast bool
	}{
		{pgtype.TimestamptzOID, "2026-11-25 04:34:54.123456+00", true},
		{pgtype.TimestamptzOID, "2026-11-25 04:34:54+05:30", true},
		{pgtype.TimestamptzOID, "1883-11-18 12:00:00-04:56:02", true},
		{pgtype.TimestamptzOID, "2026-01-01 00:00:00.5-08", true},
		{pgtype.TimestampOID, "2026-11-25 04:34:54.000001", true},
		{pgtype.DateOID, "2024-02-29", true},
		{pgtype.TimestamptzOID, "infinity", false},
		{pgtype.TimestamptzOID, "0044-03-15 12:00:00+00 BC", false},
		{pgtype.TimestampOID, "12026-01-01 00:00:00", false},
		{pgtype.DateOID, "2023-02-29", false},
		{pgtype.TimestampOID, "2026-11-25 04:34:54+00", false},
	}
	for _, c := range cases {
		got, ok := parseISOTime(c.oid, []byte(c.text))
		if ok != c.fast {
			t.Errorf("%q: fast path %v, want %v", c.text, ok, c.fast)
			continue
		}
		if !ok {
			continue
		}
		v, err := decodeText(m, c.oid, []byte(c.text))
		if err != nil {
			t.Fatalf("pgx %q: %v", c.text, err)
		}
		if want := v.(time.Time); !got.Equal(want) {
			t.Errorf("%q: fast %v, pgx %v", c.text, got, want)
		}
	}
}

func TestIsNumberMatchesJSON(t *testing.T) {
	for _, s := range []string{"0", "-0", "12", "-1.50", "1e+10", "1.5E-07", "01", "1.", ".5", "-", "+1", "NaN", "Infinity", "-Infinity", "1e", "", "1 ", "0x1"} {
		if got, want := isNumber([]byte(s)), json.Valid([]byte(s)) && !strings.ContainsAny(s, "\"{[ tfn"); got != want {
			t.Errorf("isNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseRowMessage(t *testing.T) {
	// U, relation 7, key-only old tuple (id 1, null), new tuple (id 1,
	// unchanged TOAST, text "hi").
	msg := []byte{'U', 0, 0, 0, 7, 'K', 0, 2, 't', 0, 0, 0, 1, '1', 'n', 'N', 0, 3, 't', 0, 0, 0, 1, '1', 'u', 't', 0, 0, 0, 2, 'h', 'i'}
	var m rowMessage
	if err := parseRowMessage(msg, &m); err != nil {
		t.Fatal(err)
	}
	if m.relID != 7 || m.oldType != 'K' || !m.hasOld || !m.hasNew || len(m.old) != 2 || len(m.new) != 3 ||
		string(m.new[2].data) != "hi" || m.new[1].kind != 'u' || m.old[1].kind != 'n' {
		t.Errorf("parsed %+v", m)
	}
	for _, cut := range []int{3, 7, 12, 16, 20, len(msg) - 1} {
		if err := parseRowMessage(msg[:cut], &m); err == nil {
			t.Errorf("message cut to %d bytes parsed without error", cut)
		}
	}
	if err := parseRowMessage([]byte{'D', 0, 0, 0, 7, 'N', 0, 0}, &m); err == nil || !strings.Contains(err.Error(), "no old tuple") {
		t.Errorf("delete without old tuple: %v", err)
	}
}

// Record ids must stay what record.DeriveID gives, or a replay after an
// upgrade would store changes twice.
// BenchmarkRowMessage measures the per-row work of the stream: parsing an
// Insert message, typing its values and building the record (key, image,
// changed columns; the TOAST cache skips these small rows), as in the
// capture benchmark's table.
func BenchmarkRowMessage(b *testing.B) {
	src, err := New(Config{ConnString: "postgres://bench@localhost/bench", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	x := &stream{src: src, st: newState(src), rels: map[uint32]*relation{}, toastAt: 2032}
	x.rels[7] = &relation{schema: "public", table: "t", key: []string{"id"}, cols: []*pglogrepl.RelationMessageColumn{
		{Name: "id", DataType: pgtype.Int8OID, Flags: 1}, {Name: "v", DataType: pgtype.TextOID}, {Name: "at", DataType: pgtype.TimestamptzOID},
	}}
	col := func(s string) []byte {
		return append([]byte{'t', 0, 0, 0, byte(len(s))}, s...)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		msg := append([]byte{'I', 0, 0, 0, 7, 'N', 0, 3}, col(fmt.Sprint(i))...)
		msg = append(msg, col("some value of a row")...)
		msg = append(msg, col("2026-11-25 04:34:54.123456+00")...)
		if err := x.handle(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
		if x.tx.buf.Len() >= 1000 {
			x.tx = nil
		}
	}
}
