package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// t0 is the base of the occurred_at timeline of TestIngestQueryProveRestart.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// rec is a record as a client sends it. Empty fields are left out; Key,
// Before, After, Actor and Tx are raw JSON.
type rec struct {
	ID                                string
	Source, Kind, Database, Table, Op string
	Key, Before, After, Actor, Tx     string
	At                                time.Duration // occurred_at = t0 + At

	// Filled in from the server's answer.
	seq uint64
	id  string
}

func (r *rec) json() string {
	var parts []string
	add := func(name, raw string) {
		if raw != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", name, raw))
		}
	}
	quoted := func(s string) string {
		if s == "" {
			return ""
		}
		return fmt.Sprintf("%q", s)
	}
	// Members deliberately not in the canonical order.
	add("op", quoted(r.Op))
	add("key", r.Key)
	src := []string{fmt.Sprintf(`"table":%q`, r.Table), fmt.Sprintf(`"name":%q`, r.Source)}
	if r.Kind != "" {
		src = append(src, fmt.Sprintf(`"kind":%q`, r.Kind))
	}
	if r.Database != "" {
		src = append(src, fmt.Sprintf(`"database":%q`, r.Database))
	}
	add("source", "{"+strings.Join(src, ",")+"}")
	add("id", quoted(r.ID))
	add("after", r.After)
	add("before", r.Before)
	add("actor", r.Actor)
	add("tx", r.Tx)
	add("occurred_at", quoted(r.occurredAt().Format(time.RFC3339Nano)))
	return "{" + strings.Join(parts, ",") + "}"
}

func (r *rec) occurredAt() time.Time { return t0.Add(r.At) }

func (r *rec) actorID() string {
	var a struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(r.Actor), &a)
	return a.ID
}

// keyString is the canonical key string of a key object (docs/api.md).
func keyString(raw string) string {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		panic(err)
	}
	esc := strings.NewReplacer("%", "%25", ",", "%2C", "=", "%3D")
	var names, vals []string
	for dec.More() {
		name, _ := dec.Token()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		val := string(v)
		var s string
		if json.Unmarshal(v, &s) == nil {
			val = s
		}
		names, vals = append(names, name.(string)), append(vals, val)
	}
	if len(names) == 1 {
		return vals[0]
	}
	pairs := make([]string, len(names))
	for i := range names {
		pairs[i] = esc.Replace(names[i]) + "=" + esc.Replace(vals[i])
	}
	return strings.Join(pairs, ",")
}

// decodeAny decodes JSON keeping numbers as their literal text.
func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// changedFields is an independent implementation of "changed": top-level
// names whose value differs between the images (or is in only one).
func changedFields(t *testing.T, before, after string) []string {
	obj := func(s string) map[string]any {
		if s == "" {
			return nil
		}
		return decodeAny(t, []byte(s)).(map[string]any)
	}
	b, a := obj(before), obj(after)
	var out []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || !reflect.DeepEqual(av, bv) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// checkServedRecord compares a record as served with what was posted.
func checkServedRecord(t *testing.T, r *rec, served []byte) {
	t.Helper()
	got := decodeAny(t, served).(map[string]any)
	want := decodeAny(t, []byte(r.json())).(map[string]any)
	want["seq"] = json.Number(fmt.Sprint(r.seq))
	want["id"] = r.id
	switch {
	case r.ID != "":
		if r.id != r.ID {
			t.Errorf("seq %d: id %q, want the client's %q", r.seq, r.id, r.ID)
		}
	case strings.Contains(r.Tx, `"position"`):
		if !strings.HasPrefix(r.id, "p") {
			t.Errorf("seq %d: id %q derived from tx.position should start with p", r.seq, r.id)
		}
	default:
		if !strings.HasPrefix(r.id, "r") {
			t.Errorf("seq %d: random id %q should start with r", r.seq, r.id)
		}
	}
	src := want["source"].(map[string]any)
	if _, ok := src["kind"]; !ok {
		src["kind"] = "http"
	}
	if ch := changedFields(t, r.Before, r.After); len(ch) > 0 {
		l := make([]any, len(ch))
		for i, c := range ch {
			l[i] = c
		}
		want["changed"] = l
	}
	ra, ok := got["recorded_at"].(string)
	if _, err := time.Parse(time.RFC3339Nano, ra); !ok || err != nil || !strings.HasSuffix(ra, "Z") {
		t.Errorf("seq %d: recorded_at %v is not an RFC 3339 UTC timestamp", r.seq, got["recorded_at"])
	}
	delete(got, "recorded_at")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("seq %d: served record\n%s\ndiffers from the posted\n%s\n(want %v)", r.seq, served, r.json(), want)
	}
	// The key keeps its primary-key column order.
	var k struct {
		Key json.RawMessage `json:"key"`
	}
	if err := json.Unmarshal(served, &k); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(r.Key)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Key, compact.Bytes()) {
		t.Errorf("seq %d: key %s, want %s in the order sent", r.seq, k.Key, compact.Bytes())
	}
}

// page is a GET /v1/records or history answer.
type page struct {
	Records    []json.RawMessage `json:"records"`
	NextCursor string            `json:"next_cursor"`
}

// seqOf reads the seq of a served record.
func seqOf(t *testing.T, raw []byte) uint64 {
	t.Helper()
	var r struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Seq == nil {
		t.Fatalf("record %q has no seq: %v", raw, err)
	}
	return *r.Seq
}

// listAll pages through path (which has a query string) with cursors and
// returns every record.
func (s *server) listAll(path string) []json.RawMessage {
	s.t.Helper()
	var all []json.RawMessage
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			s.t.Fatalf("GET %s: no end to the pages", path)
		}
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg page
		s.getJSON(p, &pg)
		all = append(all, pg.Records...)
		if pg.NextCursor == "" {
			return all
		}
		if pg.NextCursor == cursor {
			s.t.Fatalf("GET %s: the same cursor twice", p)
		}
		cursor = pg.NextCursor
	}
}

func (s *server) listSeqs(path string) []uint64 {
	s.t.Helper()
	var out []uint64
	for _, r := range s.listAll(path) {
		out = append(out, seqOf(s.t, r))
	}
	return out
}

func TestIngestQueryProveRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	vkey := s.verifierKey()
	if got := s.size(); got != 0 {
		t.Fatalf("fresh log has size %d", got)
	}

	c1 := &rec{ID: "cust-1-insert", Source: "crm", Kind: "postgres", Table: "customers", Op: "insert",
		Key: `{"id":1}`, After: `{"id":1,"name":"Ada","city":"London","balance":12345678901234567890.10}`,
		Actor: `{"id":"alice","app":"crm-web"}`, Tx: `{"id":"100","position":"0/100","index":0}`, At: 1 * time.Hour}
	c2 := &rec{Source: "crm", Kind: "postgres", Table: "customers", Op: "insert",
		Key: `{"id":2}`, After: `{"id":2,"name":"Bob","city":"Leeds"}`,
		Actor: `{"id":"bob","app":"crm-web"}`, Tx: `{"position":"0/200"}`, At: 2 * time.Hour}
	c1u := &rec{Source: "crm", Kind: "postgres", Table: "customers", Op: "update",
		Key:    `{"id":1}`,
		Before: `{"id":1,"name":"Ada","city":"London","balance":12345678901234567890.10}`,
		After:  `{"id":1,"name":"Ada","city":"Paris","balance":12345678901234567890.10}`,
		Actor:  `{"id":"bob","app":"support"}`, Tx: `{"id":"300","position":"0/300","index":0}`, At: 3 * time.Hour}
	ol := &rec{Source: "erp", Kind: "mysql", Database: "shop", Table: "order_lines", Op: "insert",
		Key: `{"order_id":12,"line":3}`, After: `{"order_id":12,"line":3,"qty":1,"sku":"a,b=c%d"}`,
		Actor: `{"id":"loader","type":"service"}`, At: 4 * time.Hour}
	c2u := &rec{Source: "crm", Kind: "postgres", Table: "customers", Op: "update",
		Key: `{"id":2}`, Before: `{"id":2,"name":"Bob","city":"Leeds"}`, After: `{"id":2,"name":"Robert","city":"Leeds"}`,
		Actor: `{"id":"alice","app":"crm-web"}`, Tx: `{"position":"0/500"}`, At: 5 * time.Hour}
	c1d := &rec{Source: "crm", Kind: "postgres", Table: "customers", Op: "delete",
		Key: `{"id":1}`, Before: `{"id":1,"name":"Ada","city":"Paris","balance":12345678901234567890.10}`,
		Actor: `{"id":"alice","app":"gdpr-tool"}`, Tx: `{"position":"0/600"}`, At: 6 * time.Hour}
	olu := &rec{ID: "ol-12-3-update", Source: "erp", Kind: "mysql", Database: "shop", Table: "order_lines", Op: "update",
		Key: `{"order_id":12,"line":3}`, Before: `{"order_id":12,"line":3,"qty":1,"sku":"a,b=c%d"}`,
		After: `{"order_id":12,"line":3,"qty":5,"sku":"a,b=c%d"}`,
		Actor: `{"id":"loader","type":"service"}`, At: 7 * time.Hour}
	c3 := &rec{Source: "crm", Table: "customers", Op: "insert", // kind defaults to http
		Key: `{"id":3}`, After: `{"id":3,"name":"Cy"}`, Actor: `{"id":"carol"}`, Tx: `{"position":"0/800"}`, At: 8 * time.Hour}

	var all []*rec
	ack := func(recs []*rec, got []appended) {
		t.Helper()
		if len(got) != len(recs) {
			t.Fatalf("POST of %d records answered %d entries: %+v", len(recs), len(got), got)
		}
		for i, r := range recs {
			if got[i].Duplicate {
				t.Fatalf("record %d of the batch reported as duplicate: %+v", i, got[i])
			}
			if want := uint64(len(all)); got[i].Seq != want {
				t.Fatalf("record %d of the batch got seq %d, want %d (seqs follow request order)", i, got[i].Seq, want)
			}
			r.seq, r.id = got[i].Seq, got[i].ID
			all = append(all, r)
		}
	}
	// One object, a JSON array, NDJSON.
	ack([]*rec{c1}, s.post("application/json", []byte(c1.json())))
	ack([]*rec{c2, c1u, ol}, s.post("application/json", []byte("[\n"+c2.json()+",\n"+c1u.json()+","+ol.json()+"]")))
	nd := func(recs ...*rec) []byte {
		var b bytes.Buffer
		for _, r := range recs {
			b.WriteString(r.json() + "\n\n")
		}
		return b.Bytes()
	}
	batchC := []*rec{c2u, c1d, olu, c3}
	ack(batchC, s.post("application/x-ndjson", nd(batchC...)))
	cp1 := s.checkpoint(vkey)
	if cp1.size != uint64(len(all)) {
		t.Fatalf("checkpoint after %d records has size %d", len(all), cp1.size)
	}
	// A larger batch for pagination.
	var accounts []*rec
	var arr []string
	for i := range 25 {
		r := &rec{ID: fmt.Sprintf("acct-%d", 100+i), Source: "crm", Kind: "postgres", Table: "accounts", Op: "insert",
			Key: fmt.Sprintf(`{"id":%d}`, 100+i), After: fmt.Sprintf(`{"id":%d,"n":%d}`, 100+i, i),
			Actor: `{"id":"bulk"}`, At: 10*time.Hour + time.Duration(i)*time.Minute}
		accounts = append(accounts, r)
		arr = append(arr, r.json())
	}
	ack(accounts, s.post("", []byte("["+strings.Join(arr, ",")+"]")))
	cp2 := s.checkpoint(vkey)
	if cp2.size != uint64(len(all)) {
		t.Fatalf("checkpoint after %d records has size %d", len(all), cp2.size)
	}
	if got := s.size(); got != uint64(len(all)) {
		t.Fatalf("healthz size %d after %d records", got, len(all))
	}

	t.Run("search", func(t *testing.T) {
		s := s.with(t)
		type filter struct {
			query string
			keep  func(r *rec) bool
		}
		since, until := t0.Add(3*time.Hour), t0.Add(7*time.Hour)
		filters := []filter{
			{"", func(*rec) bool { return true }},
			{"source=crm", func(r *rec) bool { return r.Source == "crm" }},
			// table alone is refused (400 "table: needs source"), unlike
			// what docs/api.md says; see the report.
			{"source=crm&table=customers", func(r *rec) bool { return r.Table == "customers" }},
			{"source=crm&table=accounts&op=insert", func(r *rec) bool { return r.Table == "accounts" }},
			{"source=erp&table=order_lines", func(r *rec) bool { return r.Table == "order_lines" }},
			{"source=crm&table=customers&key=1", func(r *rec) bool { return r.Table == "customers" && r.Key == `{"id":1}` }},
			{"source=erp&table=order_lines&key=" + url.QueryEscape(keyString(ol.Key)), func(r *rec) bool { return r.Table == "order_lines" }},
			{"actor=alice", func(r *rec) bool { return r.actorID() == "alice" }},
			{"actor=nobody", func(*rec) bool { return false }},
			{"op=delete", func(r *rec) bool { return r.Op == "delete" }},
			{"op=update&source=crm", func(r *rec) bool { return r.Op == "update" && r.Source == "crm" }},
			{"since=" + since.Format(time.RFC3339) + "&until=" + until.Format(time.RFC3339), func(r *rec) bool {
				return !r.occurredAt().Before(since) && r.occurredAt().Before(until)
			}},
			{"since=" + t0.Add(10*time.Hour+20*time.Minute).Format(time.RFC3339), func(r *rec) bool {
				return !r.occurredAt().Before(t0.Add(10*time.Hour + 20*time.Minute))
			}},
			{"until=" + t0.Add(2*time.Hour).Format(time.RFC3339) + "&actor=alice", func(r *rec) bool {
				return r.occurredAt().Before(t0.Add(2*time.Hour)) && r.actorID() == "alice"
			}},
		}
		for _, f := range filters {
			var want []uint64
			for _, r := range all {
				if f.keep(r) {
					want = append(want, r.seq)
				}
			}
			for _, limit := range []int{1000, 3} {
				asc := s.listSeqs(fmt.Sprintf("/v1/records?%s&order=asc&limit=%d", f.query, limit))
				if !slices.Equal(asc, want) && !(len(asc) == 0 && len(want) == 0) {
					t.Errorf("?%s&order=asc&limit=%d: seqs %v, want %v", f.query, limit, asc, want)
				}
				desc := s.listSeqs(fmt.Sprintf("/v1/records?%s&limit=%d", f.query, limit))
				rev := slices.Clone(want)
				slices.Reverse(rev)
				if !slices.Equal(desc, rev) && !(len(desc) == 0 && len(rev) == 0) {
					t.Errorf("?%s&limit=%d (newest first): seqs %v, want %v", f.query, limit, desc, rev)
				}
			}
		}
		// Every served record is the one posted.
		for _, raw := range s.listAll("/v1/records?order=asc&limit=7") {
			checkServedRecord(t, all[seqOf(t, raw)], raw)
		}
		// A bad filter names the parameter.
		for q, field := range map[string]string{"key=1": "key", "op=upsert": "op", "limit=0": "limit", "since=yesterday": "since", "sorce=crm": "sorce"} {
			var e struct{ Error, Field string }
			if err := json.Unmarshal(s.get("/v1/records?"+q, http.StatusBadRequest), &e); err != nil || e.Field != field {
				t.Errorf("?%s: error %+v (%v), want field %q", q, e, err, field)
			}
		}
	})

	t.Run("history and state", func(t *testing.T) {
		s := s.with(t)
		hist := func(source, table, key string) []uint64 {
			return s.listSeqs("/v1/entities/" + url.PathEscape(source) + "/" + url.PathEscape(table) + "/" + url.PathEscape(key) + "/history?limit=2")
		}
		if got, want := hist("crm", "customers", "1"), []uint64{c1.seq, c1u.seq, c1d.seq}; !slices.Equal(got, want) {
			t.Errorf("history of crm/customers/1: %v, want %v", got, want)
		}
		if got, want := hist("erp", "order_lines", keyString(ol.Key)), []uint64{ol.seq, olu.seq}; !slices.Equal(got, want) {
			t.Errorf("history of erp/order_lines/%s: %v, want %v", keyString(ol.Key), got, want)
		}
		if got := hist("crm", "customers", "99"); len(got) != 0 {
			t.Errorf("history of a unit never seen: %v", got)
		}
		var accts []uint64
		for _, r := range accounts[:3] {
			accts = append(accts, hist("crm", "accounts", keyString(r.Key))...)
		}
		if want := []uint64{accounts[0].seq, accounts[1].seq, accounts[2].seq}; !slices.Equal(accts, want) {
			t.Errorf("histories of three accounts: %v, want %v", accts, want)
		}

		type stateResp struct {
			Source, Table, Key string
			State              json.RawMessage
			Seq                uint64
			OccurredAt         time.Time `json:"occurred_at"`
		}
		state := func(source, table, key string, at time.Time, want *rec) {
			t.Helper()
			path := "/v1/entities/" + url.PathEscape(source) + "/" + url.PathEscape(table) + "/" + url.PathEscape(key) +
				"/state?at=" + url.QueryEscape(at.Format(time.RFC3339Nano))
			if want == nil {
				s.get(path, http.StatusNotFound)
				return
			}
			var st stateResp
			s.getJSON(path, &st)
			if st.Seq != want.seq || !st.OccurredAt.Equal(want.occurredAt()) || st.Source != source || st.Table != table || st.Key != key {
				t.Errorf("%s: %+v, want seq %d occurred_at %v", path, st, want.seq, want.occurredAt())
			}
			if !reflect.DeepEqual(decodeAny(t, st.State), decodeAny(t, []byte(want.After))) {
				t.Errorf("%s: state %s, want %s", path, st.State, want.After)
			}
		}
		state("crm", "customers", "1", t0, nil)                     // before the insert
		state("crm", "customers", "1", t0.Add(time.Hour), c1)       // at the insert (occurred_at <= at)
		state("crm", "customers", "1", t0.Add(150*time.Minute), c1) // between insert and update
		state("crm", "customers", "1", t0.Add(3*time.Hour), c1u)    // at the update
		state("crm", "customers", "1", t0.Add(5*time.Hour+59*time.Minute), c1u)
		state("crm", "customers", "1", t0.Add(6*time.Hour), nil) // deleted
		state("crm", "customers", "1", time.Now(), nil)          // still deleted
		state("crm", "customers", "2", t0.Add(4*time.Hour), c2)  // before its update
		state("crm", "customers", "2", time.Now(), c2u)          // after it
		state("erp", "order_lines", keyString(ol.Key), t0.Add(8*time.Hour), olu)
		state("crm", "customers", "99", time.Now(), nil)
	})

	t.Run("proofs", func(t *testing.T) {
		s := s.with(t)
		if !strings.HasPrefix(vkey, cp1.origin+"+") {
			t.Errorf("verifier key %q does not name the origin %q", vkey, cp1.origin)
		}
		// Against the latest checkpoint, sent along.
		for _, r := range all {
			var rr recordResponse
			s.getJSON(fmt.Sprintf("/v1/records/%d", r.seq), &rr)
			cp, err := openCheckpoint([]byte(rr.Checkpoint), vkey)
			if err != nil {
				t.Fatalf("seq %d: %v", r.seq, err)
			}
			if cp.size <= r.seq {
				t.Fatalf("seq %d: checkpoint of size %d does not cover it", r.seq, cp.size)
			}
			if err := checkRecordResponse(rr, r.seq, cp.size, cp.root); err != nil {
				t.Error(err)
			}
			checkServedRecord(t, r, rr.Record)
		}
		// Against an older tree the client already holds.
		for _, r := range all[:cp1.size] {
			var rr recordResponse
			s.getJSON(fmt.Sprintf("/v1/records/%d?tree_size=%d", r.seq, cp1.size), &rr)
			if rr.Checkpoint != "" {
				t.Errorf("seq %d with tree_size: a checkpoint was sent along", r.seq)
			}
			if err := checkRecordResponse(rr, r.seq, cp1.size, cp1.root); err != nil {
				t.Error(err)
			}
		}
		s.get(fmt.Sprintf("/v1/records/%d", len(all)), http.StatusNotFound)
		s.get("/v1/records/5?tree_size=5", http.StatusBadRequest)
		s.get(fmt.Sprintf("/v1/records/0?tree_size=%d", len(all)+1), http.StatusBadRequest)
		if err := fetchConsistency(s.URL(), cp1, cp2); err != nil {
			t.Error(err)
		}
		if err := fetchConsistency(s.URL(), checkpoint{size: 0}, cp2); err != nil {
			t.Error(err)
		}
		if err := fetchConsistency(s.URL(), cp2, cp2); err != nil {
			t.Error(err)
		}
		// A proof must not verify against a wrong old root.
		bad := cp1
		bad.root = bytes.Clone(cp1.root)
		bad.root[0] ^= 1
		if err := fetchConsistency(s.URL(), bad, cp2); err == nil {
			t.Error("consistency proof verified against a wrong root")
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// Resubmitting is safe: same ids, first seqs, nothing appended.
	dupCheck := func(recs []*rec, got []appended) {
		t.Helper()
		if len(got) != len(recs) {
			t.Fatalf("resubmission of %d records answered %d entries", len(recs), len(got))
		}
		for i, r := range recs {
			if !got[i].Duplicate || got[i].Seq != r.seq || got[i].ID != r.id {
				t.Errorf("resubmitted seq %d (id %s): answered %+v, want the first seq with duplicate:true", r.seq, r.id, got[i])
			}
		}
	}
	size := s.size()
	dupCheck([]*rec{c1}, s.post("application/json", []byte(c1.json())))
	dupCheck([]*rec{c2, c1u}, s.post("application/json", []byte("["+c2.json()+","+c1u.json()+"]")))
	dupCheck(batchC, s.post("application/x-ndjson", nd(batchC...)))
	if got := s.size(); got != size {
		t.Fatalf("log grew from %d to %d on resubmission", size, got)
	}
	// A batch mixing a new record and a resubmitted one.
	extra := &rec{ID: "extra-1", Source: "crm", Table: "customers", Op: "update", Key: `{"id":3}`,
		Before: `{"id":3,"name":"Cy"}`, After: `{"id":3,"name":"Cyrus"}`, Actor: `{"id":"carol"}`, At: 9 * time.Hour}
	got := s.post("application/json", []byte("["+extra.json()+","+accounts[4].json()+"]"))
	if len(got) != 2 || got[0].Duplicate || got[0].Seq != uint64(len(all)) || !got[1].Duplicate || got[1].Seq != accounts[4].seq {
		t.Fatalf("mixed batch: %+v, want a new seq %d then duplicate seq %d", got, len(all), accounts[4].seq)
	}
	extra.seq, extra.id = got[0].Seq, got[0].ID
	all = append(all, extra)
	if got := s.size(); got != uint64(len(all)) {
		t.Fatalf("size %d, want %d", got, len(all))
	}
	cp3 := s.checkpoint(vkey)
	before := s.listAll("/v1/records?order=asc&limit=1000")

	// Restart: same size, same records, checkpoints consistent.
	s.restart()
	if got := s.size(); got != uint64(len(all)) {
		t.Fatalf("after restart: size %d, want %d", got, len(all))
	}
	if k := s.verifierKey(); k != vkey {
		t.Fatalf("after restart the verifier key is %q, was %q", k, vkey)
	}
	after := s.listAll("/v1/records?order=asc&limit=1000")
	if len(after) != len(before) {
		t.Fatalf("after restart %d records, before %d", len(after), len(before))
	}
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("record %d changed across the restart:\n%s\n%s", i, before[i], after[i])
		}
	}
	cp4 := s.checkpoint(vkey)
	if cp4.size != cp3.size || !bytes.Equal(cp4.root, cp3.root) {
		t.Fatalf("after restart the checkpoint is size %d root %x, before size %d root %x", cp4.size, cp4.root, cp3.size, cp3.root)
	}
	dupCheck([]*rec{c1, extra}, s.post("application/json", []byte("["+c1.json()+","+extra.json()+"]")))
	last := &rec{ID: "after-restart", Source: "crm", Table: "customers", Op: "event", Key: `{"id":2}`, Actor: `{"id":"dave"}`, At: 11 * time.Hour}
	got = s.post("application/json", []byte(last.json()))
	if len(got) != 1 || got[0].Seq != uint64(len(all)) || got[0].Duplicate {
		t.Fatalf("append after restart: %+v, want seq %d", got, len(all))
	}
	last.seq, last.id = got[0].Seq, got[0].ID
	all = append(all, last)
	cp5 := s.checkpoint(vkey)
	for _, old := range []checkpoint{cp1, cp2, cp3} {
		if err := fetchConsistency(s.URL(), old, cp5); err != nil {
			t.Error(err)
		}
	}
	var rr recordResponse
	s.getJSON(fmt.Sprintf("/v1/records/%d?tree_size=%d", c1u.seq, cp2.size), &rr)
	if err := checkRecordResponse(rr, c1u.seq, cp2.size, cp2.root); err != nil {
		t.Error(err)
	}
	s.getJSON(fmt.Sprintf("/v1/records/%d", last.seq), &rr)
	checkServedRecord(t, last, rr.Record)

	// The outside auditor, twice with the same state (the second run checks
	// consistency with the first).
	state := filepath.Join(t.TempDir(), "audit.json")
	out1 := mustStele(t, "verify", "--url", s.URL(), "--key", vkey, "--state", state)
	extra2 := &rec{ID: "between-audits", Source: "crm", Table: "customers", Op: "event", Key: `{"id":2}`, At: 12 * time.Hour}
	s.post("application/json", []byte(extra2.json()))
	out2 := mustStele(t, "verify", "--url", s.URL(), "--key", vkey, "--state", state)
	t.Logf("stele verify --url, first run:\n%s\nsecond run:\n%s", out1, out2)
	if !strings.Contains(out2, "consistent with") {
		t.Errorf("second audit did not report a consistency check:\n%s", out2)
	}

	s.stop()
	out := mustStele(t, "verify", "--data", dir)
	if !strings.Contains(out, "OK") {
		t.Errorf("stele verify --data: no OK in\n%s", out)
	}
	mustStele(t, "verify", "--data", dir, "--key", vkey)
}
