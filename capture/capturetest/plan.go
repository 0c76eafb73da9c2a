package capturetest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/stele/stele/record"
)

// want is the record one change must become.
type want struct {
	op                 record.Op
	id                 int64
	v                  string // the row's new v (insert, update)
	key, before, after string // canonical JSON, "" for none
	changed            []string
}

// identity names a change by what only it has: each value of v is
// written once, each row deleted once.
func (w *want) identity() string { return identity(w.op, w.key, w.v) }

func identity(op record.Op, key, v string) string { return string(op) + " " + key + " " + v }

// recIdentity is a record's identity, "" for a record that is not a row
// change of the suite's table.
func recIdentity(r *record.Record, table string) string {
	if r.Source.Table != table {
		return ""
	}
	switch r.Op {
	case record.OpInsert, record.OpUpdate:
		return identity(r.Op, string(r.Key), imageV(r.After))
	case record.OpDelete:
		return identity(r.Op, string(r.Key), "")
	}
	return ""
}

func imageV(img json.RawMessage) string {
	var m struct {
		V string `json:"v"`
	}
	_ = json.Unmarshal(img, &m)
	return m.V
}

// txPlan is one upstream transaction and the records it must give.
type txPlan struct {
	tx    Tx
	wants []*want
}

// builder makes changes to the suite's table and keeps the model of the
// rows it made, so it knows each change's images. Builders with different
// bases touch different rows.
type builder struct {
	rng    *rand.Rand
	next   int64
	tag    string
	n      int
	live   []int64
	vals   map[int64]string
	actors bool // give some transactions an actor
	multi  bool // transactions of several changes
}

func newBuilder(e *env, base int64, tag string) *builder {
	return &builder{rng: e.rng, next: base, tag: tag, vals: map[int64]string{},
		actors: e.supports(Actor), multi: e.supports(Transactions)}
}

func image(id int64, v string) string {
	b, _ := json.Marshal(v)
	return fmt.Sprintf(`{"id":%d,"v":%s}`, id, b)
}

func (b *builder) value() string {
	b.n++
	return fmt.Sprintf("%s%d", b.tag, b.n)
}

func (b *builder) insert() (Change, *want) {
	id := b.next
	b.next++
	v := b.value()
	b.live = append(b.live, id)
	b.vals[id] = v
	return Change{Op: record.OpInsert, ID: id, V: v}, &want{op: record.OpInsert, id: id, v: v,
		key: fmt.Sprintf(`{"id":%d}`, id), after: image(id, v), changed: []string{"id", "v"}}
}

func (b *builder) update(id int64) (Change, *want) {
	old, v := b.vals[id], b.value()
	b.vals[id] = v
	return Change{Op: record.OpUpdate, ID: id, V: v}, &want{op: record.OpUpdate, id: id, v: v,
		key: fmt.Sprintf(`{"id":%d}`, id), before: image(id, old), after: image(id, v), changed: []string{"v"}}
}

func (b *builder) delete(id int64) (Change, *want) {
	old := b.vals[id]
	delete(b.vals, id)
	b.live = slices.DeleteFunc(b.live, func(x int64) bool { return x == id })
	return Change{Op: record.OpDelete, ID: id}, &want{op: record.OpDelete, id: id,
		key: fmt.Sprintf(`{"id":%d}`, id), before: image(id, old), changed: []string{"id", "v"}}
}

// truncated forgets every row, as a TRUNCATE does.
func (b *builder) truncated() {
	b.live = nil
	clear(b.vals)
}

// plan is a transaction of the given changes.
func plan(actor map[string]string, parts ...func() (Change, *want)) txPlan {
	p := txPlan{tx: Tx{Actor: actor}}
	for _, f := range parts {
		c, w := f()
		p.tx.Changes = append(p.tx.Changes, c)
		p.wants = append(p.wants, w)
	}
	return p
}

func (b *builder) ins() func() (Change, *want) { return b.insert }
func (b *builder) upd(id int64) func() (Change, *want) {
	return func() (Change, *want) { return b.update(id) }
}
func (b *builder) del(id int64) func() (Change, *want) {
	return func() (Change, *want) { return b.delete(id) }
}

// random is a transaction of random changes: one, or up to four when the
// source has transactions; an actor on about one in four when it has
// actors.
func (b *builder) random() txPlan {
	n := 1
	if b.multi {
		n = 1 + b.rng.IntN(4)
	}
	var actor map[string]string
	if b.actors && b.rng.IntN(4) == 0 {
		actor = map[string]string{"id": fmt.Sprintf("user-%d", b.rng.IntN(1000)), "app": "capturetest"}
	}
	p := txPlan{tx: Tx{Actor: actor}}
	for range n {
		var c Change
		var w *want
		switch r := b.rng.IntN(20); {
		case len(b.live) == 0 || r < 10:
			c, w = b.insert()
		case r < 17:
			c, w = b.update(b.live[b.rng.IntN(len(b.live))])
		default:
			c, w = b.delete(b.live[b.rng.IntN(len(b.live))])
		}
		p.tx.Changes = append(p.tx.Changes, c)
		p.wants = append(p.wants, w)
	}
	return p
}

func (b *builder) randoms(n int) []txPlan {
	out := make([]txPlan, n)
	for i := range out {
		out[i] = b.random()
	}
	return out
}

// present reports whether recs hold every change of plans at least once.
func (e *env) present(plans ...[]txPlan) func([]*record.Record) bool {
	need := map[string]bool{}
	for _, ps := range plans {
		for _, p := range ps {
			for _, w := range p.wants {
				need[w.identity()] = true
			}
		}
	}
	table := e.up.Table()
	return func(recs []*record.Record) bool {
		found := 0
		seen := map[string]bool{}
		for _, r := range recs {
			if id := recIdentity(r, table); need[id] && !seen[id] {
				seen[id] = true
				found++
			}
		}
		return found == len(need)
	}
}

// checkChanges checks the log against the plans: every change stored
// exactly once with the right images, no other row change of the table,
// ids unique, each row's changes in order, each transaction's records
// together and numbered in order, actors where given and nowhere else.
// loose compares images and changed fields on id and v only (after a DDL
// added a column). Each list of plans is one writer's, applied in order;
// the lists are of disjoint rows.
func (e *env) checkChanges(recs []*record.Record, loose bool, lists ...[]txPlan) {
	t := e.t
	t.Helper()
	table := e.up.Table()
	type slot struct {
		w     *want
		list  int
		plan  int
		pos   int
		order int // within its list
		at    []int
	}
	byID := map[string]*slot{}
	var slots []*slot
	actors := map[string]bool{}
	for li, plans := range lists {
		order := 0
		for pi, p := range plans {
			if a := canonicalActor(p.tx.Actor); a != "" {
				actors[a] = true
			}
			for ci, w := range p.wants {
				s := &slot{w: w, list: li, plan: pi, pos: ci, order: order}
				order++
				if byID[w.identity()] != nil {
					t.Fatalf("capturetest bug: change %s planned twice", w.identity())
				}
				byID[w.identity()] = s
				slots = append(slots, s)
			}
		}
	}
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		errs++
		if errs <= 20 {
			t.Errorf(format, args...)
		}
	}
	ids := map[string]int{}
	for i, r := range recs {
		if j, dup := ids[r.ID]; dup {
			fail("records %d and %d have the same id %s", j, i, r.ID)
		}
		ids[r.ID] = i
		id := recIdentity(r, table)
		if id == "" {
			continue
		}
		s := byID[id]
		if s == nil {
			fail("record %d (%s key %s after %s) is no change the suite made", i, r.Op, r.Key, r.After)
			continue
		}
		s.at = append(s.at, i)
		e.checkRecord(r, s.w, loose, fail)
	}
	for _, s := range slots {
		switch len(s.at) {
		case 0:
			fail("change %s %s (v %q) is missing from the log", s.w.op, s.w.key, s.w.v)
		case 1:
		default:
			fail("change %s %s (v %q) is stored %d times (records %v)", s.w.op, s.w.key, s.w.v, len(s.at), s.at)
		}
	}
	if errs > 0 {
		if errs > 20 {
			t.Errorf("… %d errors in all", errs)
		}
		return
	}
	// Each row's changes in the order they were made.
	last := map[int64]*slot{}
	for _, s := range slots {
		if prev := last[s.w.id]; prev != nil && prev.at[0] > s.at[0] {
			fail("row %d: change %q (record %d) is stored before the earlier change %q (record %d)", s.w.id, s.w.v, s.at[0], prev.w.v, prev.at[0])
		}
		last[s.w.id] = s
	}
	// Transactions.
	for li, plans := range lists {
		for pi, p := range plans {
			var at []int
			for _, s := range slots {
				if s.list == li && s.plan == pi {
					at = append(at, s.at[0])
				}
			}
			first := recs[at[0]]
			wantActor := canonicalActor(p.tx.Actor)
			for ci, i := range at {
				r := recs[i]
				if wantActor != "" && string(r.Actor) != wantActor {
					fail("record %d: actor %s, want its transaction's actor %s", i, r.Actor, wantActor)
				}
				if wantActor == "" && actors[string(r.Actor)] {
					fail("record %d: actor %s belongs to another transaction (its own has none)", i, r.Actor)
				}
				if !e.supports(Transactions) {
					continue
				}
				if r.Tx == nil || r.Tx.Position == "" {
					fail("record %d: no tx position (tx %s)", i, txString(r.Tx))
					continue
				}
				if first.Tx == nil || r.Tx.ID != first.Tx.ID || r.Tx.Position != first.Tx.Position {
					fail("record %d: tx %s, want its transaction's %s", i, txString(r.Tx), txString(first.Tx))
				}
				if r.Tx.Index == nil || *r.Tx.Index != int64(ci) {
					fail("record %d: tx %s, want index %d (its place in the transaction)", i, txString(r.Tx), ci)
				}
				if i != at[0]+ci {
					fail("transaction %s: its records are at %v, not together and in order", txString(first.Tx), at)
					break
				}
			}
		}
	}
	if e.supports(Transactions) {
		pos := map[string]string{}
		for li, plans := range lists {
			for pi := range plans {
				for _, s := range slots {
					if s.list != li || s.plan != pi {
						continue
					}
					r := recs[s.at[0]]
					if r.Tx == nil {
						continue
					}
					tag := fmt.Sprintf("%d/%d", li, pi)
					if other, ok := pos[r.Tx.Position]; ok && other != tag {
						fail("transactions %s and %s share the tx position %s", other, tag, r.Tx.Position)
					}
					pos[r.Tx.Position] = tag
				}
			}
		}
	}
}

// checkRecord compares one record with the change it stores.
func (e *env) checkRecord(r *record.Record, w *want, loose bool, fail func(string, ...any)) {
	where := fmt.Sprintf("%s %s (v %q)", w.op, w.key, w.v)
	if r.Source.Name != e.up.Name() || r.Source.Kind != e.h.Kind() || r.Source.Table != e.up.Table() {
		fail("%s: source %+v, want name %s kind %s table %s", where, r.Source, e.up.Name(), e.h.Kind(), e.up.Table())
	}
	if string(r.Key) != w.key {
		fail("%s: key %s, want %s", where, r.Key, w.key)
	}
	if r.OccurredAt.IsZero() {
		fail("%s: no occurred_at", where)
	}
	before, after, changed := string(r.Before), string(r.After), r.Changed
	if loose {
		before, after = onlyIDV(r.Before), onlyIDV(r.After)
		changed = slices.DeleteFunc(slices.Clone(changed), func(f string) bool { return f != "id" && f != "v" })
	}
	if before != w.before {
		fail("%s: before %s, want %s", where, r.Before, orNone(w.before))
	}
	if after != w.after {
		fail("%s: after %s, want %s", where, r.After, orNone(w.after))
	}
	if !slices.Equal(changed, w.changed) {
		fail("%s: changed %v, want %v", where, r.Changed, w.changed)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// onlyIDV is an image reduced to its id and v.
func onlyIDV(img json.RawMessage) string {
	if len(img) == 0 {
		return ""
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(img, &m); err != nil {
		return "unparsable: " + string(img)
	}
	var b strings.Builder
	b.WriteString(`{"id":`)
	b.Write(m["id"])
	b.WriteString(`,"v":`)
	b.Write(m["v"])
	b.WriteString("}")
	return b.String()
}
