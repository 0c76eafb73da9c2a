package projection_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/projection"
	"github.com/stele/stele/record"
)

func newLog(t testing.TB) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), t.TempDir(), logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendAll(t testing.TB, s *logstore.Store, recs ...*record.Record) {
	t.Helper()
	if _, err := s.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func compile(t testing.TB, defs ...projection.Definition) *projection.Set {
	t.Helper()
	set, err := projection.Compile(defs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func openStore(t testing.TB, dir string, set *projection.Set, opts projection.Options) *projection.Store {
	t.Helper()
	st, err := projection.Open(dir, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// rec builds a record of the crm source. after and actor may be nil.
func rec(id string, table string, op record.Op, key any, after map[string]any, changed []string, actor string, day int) *record.Record {
	r := &record.Record{
		ID: id, Source: record.Source{Name: "crm", Kind: "http", Table: table}, Op: op,
		Key: mustJSON(key), Changed: changed, OccurredAt: epoch.Add(time.Duration(day) * 24 * time.Hour),
	}
	if after != nil {
		r.After = mustJSON(after)
	}
	if actor != "" {
		r.Actor = mustJSON(map[string]string{"id": actor})
	}
	return r
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	c, err := record.Canonical(b)
	if err != nil {
		panic(err)
	}
	return c
}

// dump is every key and value of a projection, length-prefixed, in key
// order: two equal dumps are byte-for-byte equal projections.
func dump(t testing.TB, st *projection.Store, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := st.Scan(name, func(k, v []byte) error {
		buf.Write(binary.AppendUvarint(nil, uint64(len(k))))
		buf.Write(k)
		buf.Write(binary.AppendUvarint(nil, uint64(len(v))))
		buf.Write(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func get(t testing.TB, st *projection.Store, name, key string) string {
	t.Helper()
	e, _, err := st.Get(name, key)
	if err != nil {
		t.Fatalf("get %s/%s: %v", name, key, err)
	}
	return string(e.Value)
}

// mixedRecords generates n records of every op over two tables, a few
// dozen keys and several actors, with int and double amounts, partial
// updates, and occasional truncates, ddl and events.
func mixedRecords(rng *rand.Rand, prefix string, n int) []*record.Record {
	out := make([]*record.Record, n)
	actors := []string{"alice", "bob", "carol", "dave", ""}
	for i := range out {
		table := []string{"orders", "customers"}[rng.IntN(2)]
		id := rng.IntN(40)
		actor := actors[rng.IntN(len(actors))]
		var amount any = rng.IntN(1000)
		if rng.IntN(3) == 0 {
			amount = float64(rng.IntN(100000)) / 100
		}
		rid := fmt.Sprintf("%s-%d", prefix, i)
		day := i / 50
		switch p := rng.IntN(100); {
		case p < 30:
			out[i] = rec(rid, table, record.OpInsert, map[string]any{"id": id},
				map[string]any{"id": id, "status": "new", "amount": amount, "customer": fmt.Sprintf("c%d", id%7), "note": "<&>"}, nil, actor, day)
		case p < 65:
			after := map[string]any{"status": []string{"paid", "shipped", "void"}[rng.IntN(3)]}
			changed := []string{"status"}
			if rng.IntN(2) == 0 {
				after["amount"] = amount
				changed = append(changed, "amount")
			}
			out[i] = rec(rid, table, record.OpUpdate, map[string]any{"id": id}, after, changed, actor, day)
		case p < 80:
			out[i] = rec(rid, table, record.OpDelete, map[string]any{"id": id}, nil, nil, actor, day)
		case p < 90:
			out[i] = rec(rid, table, record.OpSnapshot, map[string]any{"id": id},
				map[string]any{"id": id, "status": "snap", "amount": amount}, nil, "", day)
		case p < 94:
			out[i] = rec(rid, table, record.OpDDL, map[string]any{}, map[string]any{"statement": "ALTER TABLE x"}, nil, actor, day)
		case p < 99:
			out[i] = rec(rid, "signups", record.OpEvent, map[string]any{"id": id}, map[string]any{"plan": "pro"}, nil, actor, day)
		default:
			out[i] = rec(rid, table, record.OpTruncate, map[string]any{}, nil, nil, actor, day)
		}
	}
	return out
}

// testDefs covers every fold kind, a filter, keys from the key, the actor
// and the time, and an expression that fails on some records.
func testDefs() []projection.Definition {
	return []projection.Definition{
		{Name: "orders", Filter: `record.source.table == "orders" && record.op != "ddl"`, Key: `string(record.key.id)`, Fold: projection.FoldState},
		{Name: "by-actor", Key: `record.actor.id`, Fold: projection.FoldCount}, // fails (skips) without an actor
		{Name: "per-year", Key: `string(record.occurred_at.getFullYear())`, Fold: projection.FoldCount},
		{Name: "fields", Filter: `record.source.table == "customers"`, Key: `string(record.key.id)`, Fold: projection.FoldLastChangePerField},
		{Name: "revenue", Filter: `record.op == "insert" && has(record.after.amount)`, Key: `record.after.customer`,
			Fold: projection.FoldReduce, Initial: `{"n": 0, "sum": 0.0, "max": 0.0}`,
			Value: `{"n": state.n + 1, "sum": state.sum + double(record.after.amount), "max": math.greatest(state.max, double(record.after.amount))}`},
	}
}
