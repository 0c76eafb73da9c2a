package record

import (
	"fmt"
	"strings"
	"testing"
)

func TestIDDeriverMatchesDeriveID(t *testing.T) {
	var d IDDeriver
	for i := int64(0); i < 300; i++ {
		idx := i * 7919
		r := &Record{
			Source: Source{Name: fmt.Sprint("src", i%3), Kind: "postgres", Database: "db", Schema: "sch\u00e9ma", Table: strings.Repeat("t", int(i%70))},
			Tx:     &Tx{ID: "1", Position: fmt.Sprintf("%X/%X", i, i*31), Index: &idx},
		}
		if got, want := d.Derive(r), DeriveID(r); got != want {
			t.Fatalf("record %d: derive %s, DeriveID %s", i, got, want)
		}
	}
}

func TestDeriveBatchID(t *testing.T) {
	r := &Record{Source: Source{Name: "app", Kind: "http", Table: "orders"}, Op: OpInsert, After: []byte(`{"email":"a@b.com"}`)}
	id := DeriveBatchID("key-1", 3, 10, r)
	if !strings.HasPrefix(id, "k") || len(id) != 27 || id != strings.ToLower(id) {
		t.Fatalf("id %q: want k and 26 lower-case base32 characters", id)
	}
	same := *r
	same.After = []byte(`{"email":"c@d.com"}`)
	same.OccurredAt = same.OccurredAt.AddDate(1, 0, 0)
	if DeriveBatchID("key-1", 3, 10, &same) != id {
		t.Fatal("the id depends on the images or the time: a resent record would get another id, and the id would hash personal data")
	}
	other := *r
	other.Source.Table = "invoices"
	for name, got := range map[string]string{
		"key":        DeriveBatchID("key-2", 3, 10, r),
		"index":      DeriveBatchID("key-1", 4, 10, r),
		"batch size": DeriveBatchID("key-1", 3, 11, r),
		"table":      DeriveBatchID("key-1", 3, 10, &other),
		"parts":      DeriveBatchID("key-13", 1, 0, r), // "key-1","31","0" vs "key-13","1","0"…
	} {
		if got == id {
			t.Errorf("another %s gives the same id %s", name, id)
		}
	}
}

func TestParseIngestWithIdempotencyKey(t *testing.T) {
	opts := IngestOptions{IdempotencyKey: "k1", BatchIndex: 2, BatchSize: 5}
	for _, c := range []struct {
		in, prefix string
	}{
		{`{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}}`, "k"},
		{`{"id":"mine","source":{"name":"a","table":"t"},"op":"insert","key":{"id":1}}`, "mine"},
		{`{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"tx":{"position":"0/1"}}`, "p"},
	} {
		r, err := ParseIngest([]byte(c.in), opts)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.ID, c.prefix) {
			t.Errorf("%s: id %q, want prefix %q", c.in, r.ID, c.prefix)
		}
	}
}

func TestDeriveChangeID(t *testing.T) {
	r := &Record{
		Source: Source{Name: "crm", Kind: "postgres", Database: "crm", Schema: "public", Table: "items"},
		Key:    []byte(`{"a":1,"b":"x"}`),
		Tx:     &Tx{ID: "771", Position: "0/16B3748"},
	}
	id := DeriveChangeID(r)
	if !strings.HasPrefix(id, "c") || len(id) != 27 || id != strings.ToLower(id) {
		t.Fatalf("id %q: want c and 26 lower-case base32 characters", id)
	}
	same := *r
	idx := int64(9)
	same.Tx = &Tx{ID: "other", Position: "0/16B3748", Index: &idx}
	same.Key = []byte(`{ "b":"x", "a":1 }`)
	if DeriveChangeID(&same) != id {
		t.Fatal("the id depends on tx.id, tx.index or the key's member order: the two readers of one change would disagree")
	}
	var d IDDeriver
	for name, mut := range map[string]func(*Record){
		"key":      func(r *Record) { r.Key = []byte(`{"a":2,"b":"x"}`) },
		"position": func(r *Record) { r.Tx = &Tx{Position: "0/16B3749"} },
		"table":    func(r *Record) { r.Source.Table = "orders" },
		"name":     func(r *Record) { r.Source.Name = "crm2" },
		"snapshot": func(r *Record) { r.Op = OpSnapshot },
	} {
		other := *r
		mut(&other)
		if d.DeriveChange(&other) == id {
			t.Errorf("changing the %s keeps the id", name)
		}
	}
	if DeriveChangeID(r) == DeriveID(r) {
		t.Error("the change id equals the transaction-position id of the same record")
	}
}

// BenchmarkDeriveChangeID: the change id (which canonicalises the key)
// next to the commit id of the same record, per capture record.
func BenchmarkDeriveChangeID(b *testing.B) {
	idx := int64(3)
	r := &Record{
		Source: Source{Name: "crm", Kind: "postgres", Database: "crm", Schema: "public", Table: "items"},
		Key:    []byte(`{"id":123456}`),
		Tx:     &Tx{ID: "771", Position: "0/16B3748", Index: &idx},
	}
	b.Run("commit", func(b *testing.B) {
		var d IDDeriver
		for b.Loop() {
			_ = d.Derive(r)
		}
	})
	b.Run("change", func(b *testing.B) {
		var d IDDeriver
		for b.Loop() {
			_ = d.DeriveChange(r)
		}
	})
}

// DeriveChange skips canonicalising the keys singleScalarKey accepts:
// they must be canonical already.
func TestSimpleKeysAreCanonical(t *testing.T) {
	for _, k := range []string{`{"id":1}`, `{"id":-0}`, `{"id":1e2}`, `{"id":1.50}`, `{"id":12345678901234567890}`,
		`{"id":"a"}`, `{"id":"<a>&"}`, `{"id":"é ✓"}`, "{\"id\":\"\u2028\"}", `{"k":true}`, `{"k":null}`, `{"é":"x"}`} {
		if _, ok := singleScalarKey([]byte(k)); !ok {
			continue
		}
		c, err := Canonical([]byte(k))
		if err != nil || string(c) != k {
			t.Errorf("%s: canonical %s (%v): singleScalarKey accepts a key that is not canonical", k, c, err)
		}
	}
}
