package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// env is a log with its index wired as the server does it.
type env struct {
	dir string
	s   *logstore.Store
	ix  *index.Index
	e   *query.Engine
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		ix.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		ix.Close()
	})
	return &env{dir: dir, s: s, ix: ix, e: query.New(s, ix)}
}

func (v *env) append(t *testing.T, recs ...*record.Record) []stele.Appended {
	t.Helper()
	res, err := v.s.Append(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Duplicate {
			t.Fatalf("unexpected duplicate %+v", r)
		}
	}
	return res
}

// all reads every stored record back from the log.
func (v *env) all(t *testing.T) []*record.Record {
	t.Helper()
	out := make([]*record.Record, v.s.Size())
	for seq := range out {
		r, err := v.s.Read(uint64(seq))
		if err != nil {
			t.Fatal(err)
		}
		out[seq] = r
	}
	return out
}

type table struct{ source, kind, name string }

var tables = []table{
	{"crm", "postgres", "customers"},
	{"crm", "postgres", "orders"},
	{"billing", "mysql", "customers"}, // same table name, other source
}

var actors = []string{"alice", "bob", "carol", "svc-etl", ""}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func entityKey(e int) json.RawMessage { return mustJSON(map[string]int{"id": e}) }

var base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// buildHistory appends a realistic, seeded mix: 50 entities over three
// tables, inserts, partial updates, snapshots, deletes and re-inserts,
// table truncates and ddl, several actors, occurred_at spread over months
// and not always in log order.
func buildHistory(t *testing.T, v *env, steps int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 1))
	exists := make([]bool, 50)
	var batch []*record.Record
	flush := func() {
		if len(batch) > 0 {
			v.append(t, batch...)
			batch = nil
		}
	}
	for i := range steps {
		r := &record.Record{ID: fmt.Sprintf("q-%d", i)}
		if a := actors[rng.IntN(len(actors))]; a != "" {
			r.Actor = mustJSON(map[string]string{"id": a, "app": "backoffice"})
		}
		jitter := time.Duration(rng.IntN(40)-20) * time.Minute
		r.OccurredAt = base.Add(time.Duration(i)*37*time.Minute + jitter + time.Duration(rng.IntN(1000))*time.Microsecond)
		switch p := rng.IntN(100); {
		case p < 3 || p < 6:
			tb := tables[rng.IntN(len(tables))]
			r.Source = record.Source{Name: tb.source, Kind: tb.kind, Table: tb.name}
			r.Key = mustJSON(map[string]string{"table": tb.name})
			if p < 3 {
				r.Op = record.OpTruncate
				for e := range exists {
					if tables[e%3] == tb {
						exists[e] = false
					}
				}
			} else {
				r.Op = record.OpDDL
				r.After = mustJSON(map[string]string{"statement": "ALTER TABLE add column x"})
			}
		default:
			e := rng.IntN(50)
			tb := tables[e%3]
			r.Source = record.Source{Name: tb.source, Kind: tb.kind, Table: tb.name}
			r.Key = entityKey(e)
			switch q := rng.IntN(100); {
			case !exists[e]:
				r.Op = record.OpInsert
				r.After = mustJSON(map[string]any{"id": e, "name": fmt.Sprintf("n%d", i), "email": fmt.Sprintf("e%d@x.test", i)})
				exists[e] = true
			case q < 65:
				r.Op = record.OpUpdate
				if q%2 == 0 {
					r.After = mustJSON(map[string]any{"name": fmt.Sprintf("n%d", i)})
				} else {
					r.After = mustJSON(map[string]any{"email": fmt.Sprintf("e%d@x.test", i), "tier": q})
				}
			case q < 75:
				r.Op = record.OpSnapshot
				r.After = mustJSON(map[string]any{"id": e, "name": fmt.Sprintf("s%d", i)})
			case q < 80:
				r.Op = record.OpEvent
				r.Cause = mustJSON(map[string]string{"type": "viewed"})
			default:
				r.Op = record.OpDelete
				r.Before = mustJSON(map[string]any{"id": e})
				exists[e] = false
			}
		}
		batch = append(batch, r)
		if rng.IntN(20) == 0 || len(batch) == 40 {
			flush()
		}
	}
	flush()
}

func match(f query.Filter, r *record.Record) bool {
	if f.Source != "" && r.Source.Name != f.Source || f.Table != "" && r.Source.Table != f.Table {
		return false
	}
	if f.Key != "" {
		k, err := record.KeyString(r.Key)
		if err != nil || k != f.Key {
			return false
		}
	}
	if f.Actor != "" && r.ActorID() != f.Actor || f.Op != "" && r.Op != f.Op {
		return false
	}
	if !f.Since.IsZero() && r.OccurredAt.Before(f.Since) || !f.Until.IsZero() && !r.OccurredAt.Before(f.Until) {
		return false
	}
	return true
}

func expected(all []*record.Record, f query.Filter, order query.Order) []uint64 {
	var out []uint64
	for _, r := range all {
		if match(f, r) {
			out = append(out, r.Seq)
		}
	}
	if order == query.Desc {
		slices.Reverse(out)
	}
	return out
}

// collect pages through a query until NextCursor is empty.
func collect(t *testing.T, limit int, page func(cursor string) (*query.Page, error)) []*record.Record {
	t.Helper()
	max := limit
	if max == 0 {
		max = query.DefaultLimit
	}
	var out []*record.Record
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatal("pagination does not end")
		}
		p, err := page(cursor)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(p.Records) > max {
			t.Fatalf("page %d holds %d records, limit %d", pages, len(p.Records), max)
		}
		out = append(out, p.Records...)
		if p.NextCursor == "" {
			return out
		}
		cursor = p.NextCursor
	}
}

func seqsOf(recs []*record.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func TestRecordsFilters(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 500)
	all := v.all(t)
	if len(all) != 500 {
		t.Fatalf("%d records", len(all))
	}
	ctx := context.Background()
	// Boundaries that fall exactly on stored occurred_at values.
	since, until := all[150].OccurredAt, all[350].OccurredAt
	filters := []query.Filter{
		{},
		{Source: "crm"},
		{Source: "billing"},
		{Source: "nope"},
		{Source: "crm", Table: "customers"},
		{Source: "billing", Table: "customers"},
		{Table: "customers"}, // across sources, without an index list
		{Source: "crm", Table: "orders"},
		{Source: "crm", Table: "customers", Key: "3"},
		{Source: "billing", Table: "customers", Key: "2"},
		{Source: "crm", Table: "orders", Key: "4"},
		{Source: "crm", Table: "orders", Key: "3"}, // entity 3 lives in crm.customers
		{Source: "crm", Table: "customers", Key: "customers"},
		{Actor: "alice"},
		{Actor: "svc-etl"},
		{Actor: "nobody"},
		{Op: record.OpInsert},
		{Op: record.OpUpdate},
		{Op: record.OpDelete},
		{Op: record.OpTruncate},
		{Op: record.OpDDL},
		{Since: since},
		{Until: until},
		{Since: since, Until: until},
		{Source: "crm", Actor: "bob"},
		{Source: "crm", Table: "customers", Op: record.OpUpdate, Actor: "carol"},
		{Actor: "alice", Op: record.OpDelete, Since: since},
		{Source: "billing", Table: "customers", Key: "5", Until: until},
		{Source: "crm", Since: since, Until: until, Op: record.OpInsert},
		{Source: "crm", Table: "customers", Op: record.OpTruncate},
	}
	for _, f := range filters {
		for _, order := range []query.Order{query.Desc, query.Asc} {
			want := expected(all, f, order)
			for _, limit := range []int{7, 0} {
				got := collect(t, limit, func(c string) (*query.Page, error) {
					return v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: limit, Cursor: c})
				})
				if !slices.Equal(seqsOf(got), want) {
					t.Fatalf("filter %+v order %v limit %d:\n got  %v\n want %v", f, order, limit, seqsOf(got), want)
				}
				for _, r := range got {
					if r.ID != all[r.Seq].ID || !r.OccurredAt.Equal(all[r.Seq].OccurredAt) {
						t.Fatalf("seq %d: record %s, stored %s", r.Seq, r.ID, all[r.Seq].ID)
					}
				}
			}
			if len(want) > 0 && len(want) < 40 {
				got := collect(t, 1, func(c string) (*query.Page, error) {
					return v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: 1, Cursor: c})
				})
				if !slices.Equal(seqsOf(got), want) {
					t.Fatalf("filter %+v order %v limit 1: got %v want %v", f, order, seqsOf(got), want)
				}
			}
		}
	}
	// The filters that matter are not vacuous.
	for _, f := range []query.Filter{{Source: "crm", Table: "customers", Key: "3"}, {Op: record.OpTruncate}, {Op: record.OpDDL}, {Since: since, Until: until}, {Actor: "alice", Op: record.OpDelete, Since: since}} {
		if n := len(expected(all, f, query.Asc)); n < 2 {
			t.Errorf("filter %+v matches only %d records: the data set does not exercise it", f, n)
		}
	}
}

func TestRecordsRejectsBadRequests(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 60)
	ctx := context.Background()
	p, err := v.e.Records(ctx, query.Filter{Source: "crm"}, query.PageRequest{Order: query.Desc, Limit: 2})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, p)
	}
	descCursor := p.NextCursor
	p, err = v.e.Records(ctx, query.Filter{Source: "crm"}, query.PageRequest{Order: query.Asc, Limit: 2})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, p)
	}
	ascCursor := p.NextCursor

	for _, c := range []struct {
		name   string
		order  query.Order
		cursor string
	}{
		{"not-base64", query.Desc, "!!!"},
		{"garbage", query.Desc, "Zm9vYmFy"},                   // "foobar"
		{"unknown-version", query.Asc, "djE6YTox"},            // "v1:a:1", the unbound format
		{"bad-position", query.Asc, "djE6YTp4"},               // "v1:a:x"
		{"desc-cursor-used-ascending", query.Asc, descCursor}, // issued for the other order
		{"asc-cursor-used-descending", query.Desc, ascCursor}, // issued for the other order
		{"padded", query.Desc, descCursor + "="},              // raw base64url has no padding
	} {
		_, err := v.e.Records(ctx, query.Filter{Source: "crm"}, query.PageRequest{Order: c.order, Cursor: c.cursor})
		if !errors.Is(err, query.ErrBadCursor) {
			t.Errorf("%s: %v, want ErrBadCursor", c.name, err)
		}
	}
	if _, err := v.e.History(ctx, "crm", "customers", "3", query.PageRequest{Cursor: descCursor}); !errors.Is(err, query.ErrBadCursor) {
		t.Errorf("descending cursor in History: %v, want ErrBadCursor", err)
	}
	// A cursor continues the query it was issued for, and no other: with
	// another filter or on another entity it would skip or repeat records.
	for name, f := range map[string]query.Filter{
		"another source": {Source: "billing"},
		"an op added":    {Source: "crm", Op: "insert"},
		"a time window":  {Source: "crm", Since: base},
		"no filter":      {},
	} {
		_, err := v.e.Records(ctx, f, query.PageRequest{Order: query.Asc, Cursor: ascCursor})
		if !errors.Is(err, query.ErrBadCursor) || !strings.Contains(err.Error(), "another query") {
			t.Errorf("cursor reused with %s: %v, want ErrBadCursor naming another query", name, err)
		}
	}
	if _, err := v.e.Records(ctx, query.Filter{Source: "crm"}, query.PageRequest{Order: query.Asc, Cursor: ascCursor}); err != nil {
		t.Errorf("cursor with its own filter: %v", err)
	}
	historyCursor := ""
	for key := range 20 {
		h, err := v.e.History(ctx, "crm", "customers", strconv.Itoa(key), query.PageRequest{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if h.NextCursor != "" {
			historyCursor = h.NextCursor
			break
		}
	}
	if historyCursor == "" {
		t.Fatal("no entity of the fixture has two changes")
	}
	if _, err := v.e.History(ctx, "crm", "customers", "other", query.PageRequest{Cursor: historyCursor}); !errors.Is(err, query.ErrBadCursor) {
		t.Errorf("one entity's history cursor on another: %v, want ErrBadCursor", err)
	}

	for _, c := range []struct {
		field string
		f     query.Filter
		limit int
	}{
		{"key", query.Filter{Key: "3"}, 0},
		{"key", query.Filter{Source: "crm", Key: "3"}, 0},
		{"key", query.Filter{Table: "customers", Key: "3"}, 0},
		{"op", query.Filter{Op: "upsert"}, 0},
		{"until", query.Filter{Since: base.Add(time.Hour), Until: base}, 0},
		{"until", query.Filter{Since: base, Until: base}, 0},
		{"limit", query.Filter{}, query.MaxLimit + 1},
		{"limit", query.Filter{Source: "crm"}, 5000},
	} {
		_, err := v.e.Records(ctx, c.f, query.PageRequest{Limit: c.limit})
		var fe *record.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("filter %+v limit %d: %v, want a FieldError on %q", c.f, c.limit, err, c.field)
		}
		if !errors.Is(err, record.ErrInvalid) {
			t.Errorf("filter %+v: %v does not wrap record.ErrInvalid", c.f, err)
		}
	}
	if _, err := v.e.History(ctx, "crm", "customers", "3", query.PageRequest{Limit: query.MaxLimit + 1}); err == nil {
		t.Error("History accepted a limit above the maximum")
	}
	if p, err := v.e.Records(ctx, query.Filter{}, query.PageRequest{Limit: query.MaxLimit}); err != nil || len(p.Records) != 60 {
		t.Errorf("limit at the maximum: %v, %d records", err, len(p.Records))
	}
}

func TestHistory(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 500)
	all := v.all(t)
	ctx := context.Background()
	checked := 0
	for e := range 50 {
		tb := tables[e%3]
		key := fmt.Sprint(e)
		want := expected(all, query.Filter{Source: tb.source, Table: tb.name, Key: key}, query.Asc)
		for _, limit := range []int{3, 0} {
			got := collect(t, limit, func(c string) (*query.Page, error) {
				return v.e.History(ctx, tb.source, tb.name, key, query.PageRequest{Limit: limit, Cursor: c})
			})
			if !slices.Equal(seqsOf(got), want) {
				t.Fatalf("history of %s/%s/%s limit %d: got %v want %v", tb.source, tb.name, key, limit, seqsOf(got), want)
			}
		}
		// History is oldest first whatever order is asked for.
		got := collect(t, 4, func(c string) (*query.Page, error) {
			return v.e.History(ctx, tb.source, tb.name, key, query.PageRequest{Order: query.Desc, Limit: 4, Cursor: c})
		})
		if !slices.Equal(seqsOf(got), want) {
			t.Fatalf("history asked descending: got %v want %v", seqsOf(got), want)
		}
		if len(want) > 3 {
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d entities have more than one page of history", checked)
	}
	// Another table's entity with the same key shares nothing.
	if p, err := v.e.History(ctx, "crm", "orders", "0", query.PageRequest{}); err != nil || len(p.Records) != 0 {
		t.Fatalf("history of an entity that never existed: %v %d", err, len(p.Records))
	}
}

// fold is the reference model of StateAt: changes to the unit and truncates
// of its table with occurred_at <= at, in log order.
func fold(t *testing.T, all []*record.Record, source, tbl, key string, at time.Time) map[string]any {
	t.Helper()
	var state map[string]any
	for _, r := range all {
		if r.Source.Name != source || r.Source.Table != tbl || r.OccurredAt.After(at) {
			continue
		}
		k, _ := record.KeyString(r.Key)
		if k != key && r.Op != record.OpTruncate {
			continue
		}
		img := func() map[string]any {
			m := map[string]any{}
			if len(r.After) > 0 {
				if err := json.Unmarshal(r.After, &m); err != nil {
					t.Fatal(err)
				}
			}
			return m
		}
		switch r.Op {
		case record.OpInsert, record.OpSnapshot:
			state = img()
		case record.OpUpdate:
			if state == nil {
				state = img()
			} else {
				state = maps.Clone(state)
				maps.Copy(state, img())
			}
		case record.OpDelete, record.OpTruncate:
			state = nil
		}
	}
	return state
}

func decode(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("state %s: %v", raw, err)
	}
	return m
}

func TestStateAtMatchesModel(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 500)
	all := v.all(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	end := all[len(all)-1].OccurredAt.Add(time.Hour)
	found, missing := 0, 0
	for e := range 50 {
		tb := tables[e%3]
		key := fmt.Sprint(e)
		var ats []time.Time
		for _, r := range all {
			if k, _ := record.KeyString(r.Key); k == key && r.Source.Name == tb.source && r.Source.Table == tb.name {
				ats = append(ats, r.OccurredAt)
				if len(ats) < 4 {
					ats = append(ats, r.OccurredAt.Add(-time.Nanosecond))
				}
			}
		}
		for range 3 {
			ats = append(ats, base.Add(time.Duration(rng.Int64N(int64(end.Sub(base))))))
		}
		ats = append(ats, base.Add(-time.Hour), end)
		for _, at := range ats {
			want := fold(t, all, tb.source, tb.name, key, at)
			st, err := v.e.StateAt(ctx, tb.source, tb.name, key, at)
			if want == nil {
				if !errors.Is(err, query.ErrNotFound) {
					t.Fatalf("%s/%s/%s at %v: %v %+v, want ErrNotFound", tb.source, tb.name, key, at, err, st)
				}
				missing++
				continue
			}
			if err != nil {
				t.Fatalf("%s/%s/%s at %v: %v, want %v", tb.source, tb.name, key, at, err, want)
			}
			if got := decode(t, st.State); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s/%s/%s at %v: state %v, want %v", tb.source, tb.name, key, at, got, want)
			}
			if st.OccurredAt.After(at) || st.Seq >= uint64(len(all)) {
				t.Fatalf("state folded seq %d at %v, after %v", st.Seq, st.OccurredAt, at)
			}
			found++
		}
	}
	if found < 100 || missing < 50 {
		t.Fatalf("model check too thin: %d found, %d not found", found, missing)
	}
}

func TestStateAtTimeline(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	cust := record.Source{Name: "crm", Kind: "postgres", Table: "customers"}
	orders := record.Source{Name: "crm", Kind: "postgres", Table: "orders"}
	billing := record.Source{Name: "billing", Kind: "mysql", Table: "customers"}
	n := 0
	mk := func(src record.Source, op record.Op, key json.RawMessage, after any, h int) *record.Record {
		n++
		r := &record.Record{ID: fmt.Sprintf("t-%d", n), Source: src, Op: op, Key: key, OccurredAt: at(h),
			Actor: mustJSON(map[string]string{"id": "alice"})}
		if after != nil {
			r.After = mustJSON(after)
		}
		return r
	}
	k7 := entityKey(7)
	res := v.append(t,
		mk(cust, record.OpInsert, k7, map[string]any{"id": 7, "name": "Ada", "email": "ada@x.test"}, 10),
		mk(orders, record.OpInsert, k7, map[string]any{"id": 7, "total": 12}, 10),
		mk(billing, record.OpInsert, k7, map[string]any{"id": 7, "iban": "DE00"}, 10),
		mk(cust, record.OpInsert, entityKey(8), map[string]any{"id": 8, "name": "Other"}, 11),
	)
	v.append(t, mk(cust, record.OpUpdate, k7, map[string]any{"email": "ada@y.test"}, 20))
	v.append(t, mk(cust, record.OpEvent, k7, nil, 25), mk(cust, record.OpDDL, mustJSON(map[string]string{"table": "customers"}), map[string]any{"statement": "ALTER"}, 26))
	v.append(t, mk(cust, record.OpDelete, k7, nil, 30))
	v.append(t, mk(cust, record.OpInsert, k7, map[string]any{"id": 7, "name": "Bea"}, 40))
	upd := v.append(t, mk(cust, record.OpUpdate, k7, map[string]any{"name": "Cy", "tier": "gold"}, 50))
	v.append(t, mk(cust, record.OpTruncate, mustJSON(map[string]string{"table": "customers"}), nil, 60))
	v.append(t, mk(cust, record.OpInsert, k7, map[string]any{"id": 7, "name": "Dee"}, 70))

	type want struct {
		at    time.Time
		state map[string]any // nil: ErrNotFound
	}
	adaY := map[string]any{"id": 7.0, "name": "Ada", "email": "ada@y.test"}
	for _, w := range []want{
		{at(0), nil}, // before creation
		{at(10).Add(-time.Nanosecond), nil},
		{at(10), map[string]any{"id": 7.0, "name": "Ada", "email": "ada@x.test"}}, // inclusive
		{at(15), map[string]any{"id": 7.0, "name": "Ada", "email": "ada@x.test"}},
		{at(20), adaY}, // partial update merged
		{at(25), adaY}, // an event changes nothing
		{at(29), adaY}, // nor does ddl
		{at(30), nil},  // deleted
		{at(35), nil},
		{at(40), map[string]any{"id": 7.0, "name": "Bea"}}, // re-inserted: a fresh image
		{at(50), map[string]any{"id": 7.0, "name": "Cy", "tier": "gold"}},
		{at(59), map[string]any{"id": 7.0, "name": "Cy", "tier": "gold"}},
		{at(60), nil}, // table truncated
		{at(69), nil},
		{at(70), map[string]any{"id": 7.0, "name": "Dee"}},
		{at(1000), map[string]any{"id": 7.0, "name": "Dee"}},
	} {
		st, err := v.e.StateAt(ctx, "crm", "customers", "7", w.at)
		if w.state == nil {
			if !errors.Is(err, query.ErrNotFound) {
				t.Errorf("at %v: %v %+v, want ErrNotFound", w.at, err, st)
			}
			continue
		}
		if err != nil {
			t.Errorf("at %v: %v", w.at, err)
			continue
		}
		if got := decode(t, st.State); !reflect.DeepEqual(got, w.state) {
			t.Errorf("at %v: %v, want %v", w.at, got, w.state)
		}
		if st.Source != "crm" || st.Table != "customers" || st.Key != "7" || !st.At.Equal(w.at) {
			t.Errorf("at %v: state names %+v", w.at, st)
		}
	}
	st, err := v.e.StateAt(ctx, "crm", "customers", "7", at(55))
	if err != nil || st.Seq != upd[0].Seq || !st.OccurredAt.Equal(at(50)) {
		t.Errorf("state at 55: %+v %v, want last change seq %d at %v", st, err, upd[0].Seq, at(50))
	}
	// The truncate of crm.customers touches neither crm.orders nor
	// billing.customers, and entity 8 is gone with it.
	for _, c := range []struct{ source, table string }{{"crm", "orders"}, {"billing", "customers"}} {
		if _, err := v.e.StateAt(ctx, c.source, c.table, "7", at(65)); err != nil {
			t.Errorf("%s.%s/7 after truncating crm.customers: %v", c.source, c.table, err)
		}
	}
	if _, err := v.e.StateAt(ctx, "crm", "customers", "8", at(65)); !errors.Is(err, query.ErrNotFound) {
		t.Errorf("entity 8 after the truncate: %v, want ErrNotFound", err)
	}
	if st, err := v.e.StateAt(ctx, "crm", "customers", "8", at(59)); err != nil || decode(t, st.State)["name"] != "Other" {
		t.Errorf("entity 8 before the truncate: %v", err)
	}
	if _, err := v.e.StateAt(ctx, "crm", "customers", "99", at(1000)); !errors.Is(err, query.ErrNotFound) {
		t.Errorf("unknown entity: %v, want ErrNotFound", err)
	}
	_ = res
}

// TestReadYourWrites queries right after each acknowledged append.
func TestReadYourWrites(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	src := record.Source{Name: "crm", Kind: "postgres", Table: "customers"}
	for i := range 60 {
		r := &record.Record{ID: fmt.Sprintf("ryw-%d", i), Source: src, Op: record.OpInsert, Key: entityKey(i % 7),
			After: mustJSON(map[string]any{"id": i % 7, "v": i}), Actor: mustJSON(map[string]string{"id": "dave"}),
			OccurredAt: base.Add(time.Duration(i) * time.Second)}
		if i%7 != i {
			r.Op = record.OpUpdate
			r.After = mustJSON(map[string]any{"v": i})
		}
		seq := v.append(t, r)[0].Seq
		key := fmt.Sprint(i % 7)
		for _, f := range []query.Filter{{}, {Source: "crm"}, {Source: "crm", Table: "customers", Key: key}, {Actor: "dave"}} {
			p, err := v.e.Records(ctx, f, query.PageRequest{Limit: 1})
			if err != nil || len(p.Records) != 1 || p.Records[0].Seq != seq {
				t.Fatalf("append %d, filter %+v: newest is %v (%v), want seq %d", i, f, seqsOf(p.Records), err, seq)
			}
		}
		st, err := v.e.StateAt(ctx, "crm", "customers", key, r.OccurredAt)
		if err != nil || st.Seq != seq || decode(t, st.State)["v"] != float64(i) {
			t.Fatalf("append %d: state %+v %v", i, st, err)
		}
	}
}

// TestDescendingSkipsRecordsNewerThanTheSnapshot: a query answers for the
// log size it saw when it started; postings the index applied after that
// (a concurrent append) must be skipped, not end a descending scan.
func TestDescendingSkipsRecordsNewerThanTheSnapshot(t *testing.T) {
	ctx := context.Background()
	// The index holds 100 records; the log the engine reads holds the same
	// first 50: exactly what a query sees when 50 appends land and are
	// indexed between its snapshot and its scan.
	full := newEnv(t)
	prefixDir := t.TempDir()
	prefix, err := logstore.Open(ctx, prefixDir, logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatal(err)
	}
	defer prefix.Close()
	mk := func(i int) *record.Record {
		return &record.Record{ID: fmt.Sprintf("s-%d", i), Source: record.Source{Name: "crm", Kind: "http", Table: "customers"},
			Op: record.OpUpdate, Key: entityKey(i % 5), After: mustJSON(map[string]int{"v": i}), OccurredAt: base.Add(time.Duration(i) * time.Minute)}
	}
	for i := range 100 {
		full.append(t, mk(i))
		if i < 50 {
			if _, err := prefix.Append(ctx, []*record.Record{mk(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := full.s.WaitIndexed(ctx, 100); err != nil {
		t.Fatal(err)
	}
	e := query.New(prefix, full.ix)
	var want []uint64
	for seq := 49; seq >= 0; seq-- {
		want = append(want, uint64(seq))
	}
	for _, f := range []query.Filter{{Source: "crm"}, {Source: "crm", Table: "customers"}} {
		got := collect(t, 20, func(c string) (*query.Page, error) {
			return e.Records(ctx, f, query.PageRequest{Order: query.Desc, Limit: 20, Cursor: c})
		})
		if !slices.Equal(seqsOf(got), want) {
			t.Errorf("descending %+v: got %v, want 49..0", f, seqsOf(got))
		}
		got = collect(t, 20, func(c string) (*query.Page, error) {
			return e.Records(ctx, f, query.PageRequest{Order: query.Asc, Limit: 20, Cursor: c})
		})
		if len(got) != 50 || got[0].Seq != 0 || got[49].Seq != 49 {
			t.Errorf("ascending %+v: got %v, want 0..49", f, seqsOf(got))
		}
	}
	got := collect(t, 3, func(c string) (*query.Page, error) {
		return e.History(ctx, "crm", "customers", "2", query.PageRequest{Limit: 3, Cursor: c})
	})
	if want := []uint64{2, 7, 12, 17, 22, 27, 32, 37, 42, 47}; !slices.Equal(seqsOf(got), want) {
		t.Errorf("history: %v, want %v", seqsOf(got), want)
	}
	st, err := e.StateAt(ctx, "crm", "customers", "2", base.Add(1000*time.Minute))
	if err != nil || st.Seq != 47 {
		t.Errorf("state at the end: %+v %v, want seq 47", st, err)
	}
}

// TestQueriesDuringAppends runs descending queries while appends land: a
// page is never cut short by records newer than the query.
func TestQueriesDuringAppends(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	src := record.Source{Name: "crm", Kind: "http", Table: "customers"}
	mk := func(i int) *record.Record {
		return &record.Record{ID: fmt.Sprintf("c-%d", i), Source: src, Op: record.OpUpdate, Key: entityKey(i % 3),
			After: mustJSON(map[string]int{"v": i}), OccurredAt: base.Add(time.Duration(i) * time.Second)}
	}
	for i := range 30 {
		v.append(t, mk(i))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop.Store(true)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 30; !stop.Load() && i < 5000; i += 4 {
			if _, err := v.s.Append(ctx, []*record.Record{mk(i), mk(i + 1), mk(i + 2), mk(i + 3)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	deadline := time.Now().Add(700 * time.Millisecond)
	for q := 0; time.Now().Before(deadline); q++ {
		p, err := v.e.Records(ctx, query.Filter{Source: "crm", Table: "customers", Key: "1"}, query.PageRequest{Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != 5 || p.NextCursor == "" {
			t.Fatalf("query %d during appends: %d records, cursor %q", q, len(p.Records), p.NextCursor)
		}
		for i := 1; i < len(p.Records); i++ {
			if p.Records[i].Seq >= p.Records[i-1].Seq {
				t.Fatalf("query %d: seqs out of order %v", q, seqsOf(p.Records))
			}
		}
	}
}

// A budget ends a page early, with a cursor that continues after the last
// record put on it: paging under a budget still yields every record once,
// in order, and no page holds more than the budget allows.
func TestPageBudget(t *testing.T) {
	v := newEnv(t)
	buildHistory(t, v, 200)
	all := v.all(t)
	ctx := context.Background()
	for _, order := range []query.Order{query.Asc, query.Desc} {
		for _, f := range []query.Filter{{}, {Source: "crm"}, {Actor: "alice"}} {
			want := expected(all, f, order)
			pages := 0
			got := collect(t, 100, func(c string) (*query.Page, error) {
				pages++
				told := 0
				p, err := v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: 100, Cursor: c, Budget: func(n int) bool {
					if n < 100 {
						t.Fatalf("budget told %d bytes for a record", n)
					}
					told++
					return told < 3 // spent after three records
				}})
				if err == nil && len(p.Records) > 3 {
					t.Fatalf("a page of %d records under a budget of three", len(p.Records))
				}
				return p, err
			})
			if !slices.Equal(seqsOf(got), want) {
				t.Fatalf("filter %+v order %v: got %v, want %v", f, order, seqsOf(got), want)
			}
			if len(want) > 10 && pages < len(want)/3 {
				t.Fatalf("filter %+v: %d records in %d pages: the budget did not end pages", f, len(want), pages)
			}
		}
	}
	h, err := v.e.History(ctx, "crm", "customers", "3", query.PageRequest{Budget: func(int) bool { return false }})
	if err != nil || len(h.Records) != 1 || h.NextCursor == "" {
		t.Fatalf("history with a spent budget: %v, %+v", err, h)
	}
}

// The changes an event caused are one query: the index's cause list,
// whatever else the log holds, in both orders and across pages, with the
// other filters applied on top.
func TestRecordsByCause(t *testing.T) {
	v := newEnv(t)
	at := base
	rec := func(id, table string, op record.Op, cause string) *record.Record {
		at = at.Add(time.Minute)
		r := &record.Record{ID: id, Source: record.Source{Name: "shop", Kind: "postgres", Table: table}, Op: op,
			Key: mustJSON(map[string]string{"id": id}), After: mustJSON(map[string]string{"v": id}), OccurredAt: at}
		if cause != "" {
			r.Cause = json.RawMessage(cause)
		}
		return r
	}
	v.append(t,
		rec("ev1", "outbox", record.OpEvent, ""),
		rec("c1", "orders", record.OpInsert, `{"record_id":"ev1","type":"OrderPlaced"}`),
		rec("u1", "orders", record.OpInsert, `{"type":"OrderPlaced"}`),
		rec("ev2", "outbox", record.OpEvent, ""),
		rec("c2", "lines", record.OpInsert, `{"type":"OrderPlaced","record_id":"ev1"}`),
		rec("c3", "lines", record.OpInsert, `{"record_id":"ev2"}`),
		rec("c4", "orders", record.OpUpdate, `{"aggregateid":"7","record_id":"ev1"}`),
	)
	ids := func(recs []*record.Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		f     query.Filter
		order query.Order
		want  []string
	}{
		{query.Filter{Cause: "ev1"}, query.Asc, []string{"c1", "c2", "c4"}},
		{query.Filter{Cause: "ev1"}, query.Desc, []string{"c4", "c2", "c1"}},
		{query.Filter{Cause: "ev1", Table: "orders"}, query.Asc, []string{"c1", "c4"}},
		{query.Filter{Cause: "ev1", Op: record.OpUpdate}, query.Asc, []string{"c4"}},
		{query.Filter{Cause: "ev2"}, query.Asc, []string{"c3"}},
		{query.Filter{Cause: "nothing"}, query.Asc, nil},
	} {
		got := collect(t, 1, func(cursor string) (*query.Page, error) {
			return v.e.Records(context.Background(), tc.f, query.PageRequest{Order: tc.order, Limit: 1, Cursor: cursor})
		})
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("%+v order %v: %v, want %v", tc.f, tc.order, ids(got), tc.want)
		}
	}
	// A cursor of one cause does not continue another's list.
	p, err := v.e.Records(context.Background(), query.Filter{Cause: "ev1"}, query.PageRequest{Order: query.Asc, Limit: 1})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q", err, p.NextCursor)
	}
	if _, err := v.e.Records(context.Background(), query.Filter{Cause: "ev2"}, query.PageRequest{Order: query.Asc, Limit: 1, Cursor: p.NextCursor}); !errors.Is(err, query.ErrBadCursor) {
		t.Errorf("ev1's cursor on ev2's list: %v, want ErrBadCursor", err)
	}
}
