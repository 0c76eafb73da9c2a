package dynamodb

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// logDir is a real store (logstore with its index) in a folder.
type logDir struct {
	t   testing.TB
	dir string
	st  *logstore.Store
	ix  *index.Index
}

func openLog(t testing.TB, dir string) *logDir {
	t.Helper()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	l := &logDir{t: t, dir: dir, st: st, ix: ix}
	t.Cleanup(l.close)
	return l
}

func (l *logDir) close() {
	if l.st != nil {
		_ = l.st.Close()
		_ = l.ix.Close()
		l.st, l.ix = nil, nil
	}
}

func (l *logDir) records() []*record.Record {
	l.t.Helper()
	n := l.st.Size()
	out := make([]*record.Record, 0, n)
	for seq := range n {
		r, err := l.st.Read(seq)
		if err != nil {
			l.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// waitRecords waits until the log holds n records of kind dynamodb.
func (l *logDir) waitRecords(n int, what string) []*record.Record {
	l.t.Helper()
	// A hang guard, not a timing check: under -race on a loaded 2-core
	// machine a few thousand shards take tens of seconds.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		recs := l.records()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("after 3 minutes the log holds %d records, want %d (%s)", len(recs), n, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runDouble runs a source on the double into l until the returned stop is
// called.
func runDouble(t *testing.T, d *streamsDouble, l *logDir, stateDir string, tune func(*Config)) (*Source, func()) {
	t.Helper()
	cfg := Config{
		Name: "orders", Tables: []string{doubleARN}, Endpoint: d.srv.URL, Region: "us-east-1",
		Credentials: localCreds(localKey), StateDir: stateDir,
		PollMin: time.Millisecond, PollMax: 20 * time.Millisecond, DescribeInterval: time.Microsecond,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, PositionInterval: 10 * time.Millisecond,
		ListInterval: time.Hour, Concurrency: 8, Logger: testLogger(t),
	}
	if tune != nil {
		tune(&cfg)
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, l.st) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return 30s after cancel")
		}
	}
	t.Cleanup(stop)
	return src, stop
}

// rowChange is a record of the double's items as (key, v, op).
type rowChange struct {
	key int
	v   string
	op  record.Op
}

func rowChanges(t *testing.T, recs []*record.Record) []rowChange {
	t.Helper()
	var out []rowChange
	for _, r := range recs {
		if r.Op == record.OpEvent {
			continue
		}
		var k struct{ ID int }
		if err := json.Unmarshal(r.Key, &k); err != nil {
			t.Fatalf("key %s: %v", r.Key, err)
		}
		img := r.After
		if r.Op == record.OpDelete {
			img = r.Before
		}
		var v struct{ V string }
		_ = json.Unmarshal(img, &v)
		out = append(out, rowChange{k.ID, v.V, r.Op})
	}
	return out
}

// writer keeps a model of the double's items: each key's value carries
// its version, so order per key can be checked from the log alone.
type writer struct {
	d       *streamsDouble
	root    string
	version map[int]int
	live    map[int]bool
	made    int
}

func newWriter(d *streamsDouble, root string) *writer {
	return &writer{d: d, root: root, version: map[int]int{}, live: map[int]bool{}}
}

func (w *writer) write(k int) {
	sh := w.d.leaf(w.root, k)
	old := ""
	if w.live[k] {
		old = fmt.Sprintf("k%d-v%d", k, w.version[k])
	}
	w.version[k]++
	w.made++
	switch {
	case !w.live[k]:
		w.live[k] = true
		w.d.put(sh, "INSERT", k, "", fmt.Sprintf("k%d-v%d", k, w.version[k]), false)
	case w.version[k]%5 == 0:
		w.live[k] = false
		w.d.put(sh, "REMOVE", k, old, "", w.version[k]%10 == 0)
	default:
		w.d.put(sh, "MODIFY", k, old, fmt.Sprintf("k%d-v%d", k, w.version[k]), false)
	}
}

// checkPerKeyOrder checks that every change is stored once and each key's
// changes are in version order.
func checkPerKeyOrder(t *testing.T, changes []rowChange, w *writer) {
	t.Helper()
	if len(changes) != w.made {
		t.Errorf("%d row changes in the log, %d made", len(changes), w.made)
	}
	last := map[int]int{}
	for i, c := range changes {
		var k, v int
		if c.op == record.OpDelete {
			// A delete's before image is the version it removed.
			if _, err := fmt.Sscanf(c.v, "k%d-v%d", &k, &v); err != nil {
				t.Fatalf("change %d: v %q", i, c.v)
			}
			v++
		} else if _, err := fmt.Sscanf(c.v, "k%d-v%d", &k, &v); err != nil {
			t.Fatalf("change %d: v %q", i, c.v)
		}
		if k != c.key {
			t.Fatalf("change %d: key %d holds v %q", i, c.key, c.v)
		}
		if v != last[k]+1 {
			t.Errorf("change %d: key %d version %d follows version %d: lost, doubled or reordered", i, k, v, last[k])
		}
		last[k] = v
	}
}

// TestSplitsParentsFirst: shards split twice while a writer changes
// items; every change lands once and in order per key, a child's first
// iterator comes only after its parent's last page, and TTL deletions
// carry DynamoDB's own actor.
func TestSplitsParentsFirst(t *testing.T) {
	d := newStreamsDouble(t)
	d.addShard("shard-0", "")
	l := openLog(t, t.TempDir())
	w := newWriter(d, "shard-0")
	src, stop := runDouble(t, d, l, t.TempDir(), func(c *Config) { c.ListInterval = 50 * time.Millisecond })
	for i := range 60 {
		w.write(i % 12)
	}
	d.split("shard-0", "shard-1", "shard-2")
	for i := range 60 {
		w.write(i % 12)
	}
	d.split("shard-1", "shard-3", "shard-4")
	d.split("shard-2", "shard-5")
	for i := range 90 {
		w.write(i % 12)
	}
	state := src.cfg.StateDir
	l.waitRecords(w.made, "every change")
	// The positions settle: shard-0 is done and so are both its children,
	// so it is forgotten; shard-1 and shard-2 are done but their children
	// are open, so they stay.
	waitFor(t, "shard-0 forgotten", func() bool {
		p, err := capture.OpenPositions(filepath.Join(state, "positions"))
		if err != nil {
			return false
		}
		_, has0 := p.Get(shardKey(doublePrefix, "shard-0"))
		v1, _ := p.Get(shardKey(doublePrefix, "shard-1"))
		return !has0 && strings.HasPrefix(v1, "done ")
	})
	stop()
	p, err := capture.OpenPositions(filepath.Join(state, "positions"))
	if err != nil {
		t.Fatal(err)
	}
	// shard-4 got no record: it has no position, and a restart reads it
	// from its trim horizon, which loses nothing.
	for _, id := range []string{"shard-3", "shard-5"} {
		if v, ok := p.Get(shardKey(doublePrefix, id)); !ok || !strings.HasPrefix(v, "open ") {
			t.Errorf("position of open shard %s = %q, %v", id, v, ok)
		}
	}
	// A restart knows shard-0 is done from its stored descendants and
	// reads none of the done shards again.
	iters := d.callsOf("GetShardIterator")
	_, stop = runDouble(t, d, l, state, nil)
	w.write(3)
	w.write(4)
	recs := l.waitRecords(w.made, "the changes after the restart")
	stop()
	if n := d.callsOf("GetShardIterator") - iters; n != 3 {
		t.Errorf("%d GetShardIterator calls after the restart, want 3 (the open shards only)", n)
	}
	changes := rowChanges(t, recs)
	checkPerKeyOrder(t, changes, w)
	ttl := 0
	for _, r := range recs {
		if r.Op == record.OpDelete && string(r.Actor) == ttlActor {
			ttl++
			if string(r.Cause) != ttlCause {
				t.Errorf("TTL delete cause %s, want %s", r.Cause, ttlCause)
			}
		}
	}
	if ttl == 0 {
		t.Error("no TTL deletion carries the dynamodb.amazonaws.com actor")
	}
	ev := d.eventLog()
	at := func(e string) int { return slices.Index(ev, e) }
	for child, parent := range map[string]string{"shard-1": "shard-0", "shard-2": "shard-0", "shard-3": "shard-1", "shard-4": "shard-1", "shard-5": "shard-2"} {
		if at("iter "+child) < 0 || at("end "+parent) < 0 || at("iter "+child) < at("end "+parent) {
			t.Errorf("shard %s read before its parent %s was drained: events %v", child, parent, ev)
		}
	}
	if iters != 6 {
		t.Errorf("%d GetShardIterator calls for 6 shards, want one each", iters)
	}
	t.Logf("API calls: %+v; source counted %+v", d.calls, src.APICalls())
}

// TestThousandsOfShards: a stream of 2,000 shards (200 partitions, each a
// chain of 10 generations, the last open), records in a few; the listing
// pages past 100 shards, every shard is drained parents first, and once
// caught up a closed shard is never called again: a poll cycle costs one
// GetRecords per open shard.
func TestThousandsOfShards(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 shards; skipped with -short")
	}
	const partitions, generations = 200, 10
	d := newStreamsDouble(t)
	w := newWriter(d, "")
	for p := range partitions {
		parent := ""
		for g := range generations {
			id := fmt.Sprintf("shard-%03d-%02d", p, g)
			d.addShard(id, parent)
			if p%20 == 0 {
				// A few shards hold records: one item per such partition.
				w.root = id
				for range 3 {
					w.write(p)
				}
			}
			if g < generations-1 {
				d.mu.Lock()
				d.byID[id].closed, d.byID[id].closedAt = true, d.now
				d.mu.Unlock()
			}
			parent = id
		}
	}
	l := openLog(t, t.TempDir())
	src, stop := runDouble(t, d, l, t.TempDir(), func(c *Config) { c.Concurrency = 16; c.PollMax = 5 * time.Millisecond })
	recs := l.waitRecords(w.made, "every change")
	// Wait until every shard is done or polled, then for three more
	// polls of every open shard.
	waitFor(t, "every open shard polled", func() bool {
		calls := d.shardCalls()
		for p := range partitions {
			if calls[fmt.Sprintf("shard-%03d-%02d", p, generations-1)] < 2 {
				return false
			}
		}
		return true
	})
	before := d.shardCalls()
	describeBefore := d.callsOf("DescribeStream")
	waitFor(t, "three more polls of every open shard", func() bool {
		calls := d.shardCalls()
		for p := range partitions {
			id := fmt.Sprintf("shard-%03d-%02d", p, generations-1)
			if calls[id] < before[id]+3 {
				return false
			}
		}
		return true
	})
	after := d.shardCalls()
	stop()
	checkPerKeyOrder(t, rowChanges(t, recs), w)
	closedCalls, openCalls := 0, 0
	for id, n := range after {
		if strings.HasSuffix(id, fmt.Sprintf("-%02d", generations-1)) {
			openCalls += n - before[id]
		} else {
			closedCalls += n - before[id]
		}
	}
	if closedCalls != 0 {
		t.Errorf("%d calls to closed, drained shards after catching up, want 0", closedCalls)
	}
	if n := d.callsOf("DescribeStream") - describeBefore; n != 0 {
		t.Errorf("%d DescribeStream calls while polling, want 0 until the next listing", n)
	}
	initialList := (partitions*generations + 99) / 100
	t.Logf("%d shards: %d DescribeStream pages for the first listing (ceil(shards/100) = %d), %d GetShardIterator, %d GetRecords; steady polling: %d calls per cycle of %d open shards (%.2f per open shard, 0 per closed shard); source counted %+v",
		partitions*generations, describeBefore, initialList, d.callsOf("GetShardIterator"), d.callsOf("GetRecords"), openCalls/3, partitions, float64(openCalls)/3/partitions, src.APICalls())
	if describeBefore < initialList {
		t.Errorf("%d DescribeStream calls, fewer than the %d pages of the listing: not every page was read", describeBefore, initialList)
	}
	if n := d.callsOf("GetShardIterator"); n != partitions*generations {
		t.Errorf("%d GetShardIterator calls for %d shards, want one each", n, partitions*generations)
	}
	if s := src.Stats(); !strings.Contains(s.Position, fmt.Sprintf("%d shards", partitions*generations)) {
		t.Errorf("Stats position %q does not count %d shards", s.Position, partitions*generations)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes still not %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIteratorExpiry: the source holds iterators past their 15 minutes;
// it carries on AFTER_SEQUENCE_NUMBER its last record, nothing lost or
// doubled.
func TestIteratorExpiry(t *testing.T) {
	d := newStreamsDouble(t)
	d.addShard("shard-0", "")
	l := openLog(t, t.TempDir())
	w := newWriter(d, "shard-0")
	_, stop := runDouble(t, d, l, t.TempDir(), nil)
	for i := range 20 {
		w.write(i % 4)
	}
	l.waitRecords(w.made, "the first changes")
	d.advance(16 * time.Minute)
	for i := range 20 {
		w.write(i % 4)
	}
	recs := l.waitRecords(w.made, "the changes after the expiry")
	stop()
	checkPerKeyOrder(t, rowChanges(t, recs), w)
	if n := d.errorsOf("ExpiredIteratorException"); n == 0 {
		t.Error("no iterator expired: the test did not test expiry")
	}
	if n := d.callsOf("GetShardIterator"); n < 2 {
		t.Errorf("%d GetShardIterator calls, want a new iterator after the expiry", n)
	}
}

// TestTrimmedGap: Stele is away past the 24 h retention; on return the
// records it missed are gone, and the log says so with a gap record
// naming the shard and the last sequence number it held, then capture
// resumes at the trim horizon. A stored shard that left the stream
// altogether gets a gap record too.
func TestTrimmedGap(t *testing.T) {
	d := newStreamsDouble(t)
	d.addShard("shard-0", "")
	d.addShard("shard-x", "")
	l := openLog(t, t.TempDir())
	state := t.TempDir()
	w := newWriter(d, "shard-0")
	wx := newWriter(d, "shard-x")
	for i := range 10 {
		w.write(i % 3)
	}
	wx.write(100)
	src, stop := runDouble(t, d, l, state, nil)
	l.waitRecords(w.made+wx.made, "the first changes")
	time.Sleep(50 * time.Millisecond) // several position saves
	stop()
	if src.Gaps() != 0 {
		t.Fatalf("%d gaps before anything was trimmed", src.Gaps())
	}
	var lastSeq string
	for i := range 10 {
		lastSeq = d.put("shard-0", "INSERT", 1000+i, "", fmt.Sprintf("lost%d", i), false)
	}
	_ = lastSeq
	d.put("shard-x", "MODIFY", 100, "k100-v1", "lost-x", false)
	d.split("shard-x")
	d.advance(25 * time.Hour)
	for i := range 5 {
		d.put("shard-0", "INSERT", 2000+i, "", fmt.Sprintf("kept%d", i), false)
	}
	stored := len(l.records())
	src, stop = runDouble(t, d, l, state, nil)
	recs := l.waitRecords(stored+5+2, "the kept changes and two gap records")
	stop()
	if src.Gaps() != 2 {
		t.Errorf("Gaps() = %d, want 2", src.Gaps())
	}
	var gaps []map[string]any
	for _, r := range recs[stored:] {
		if r.Op == record.OpEvent {
			var g map[string]any
			if err := json.Unmarshal(r.After, &g); err != nil {
				t.Fatal(err)
			}
			gaps = append(gaps, g)
			if string(r.Actor) != `{"id":"stele","type":"system"}` || r.Source.Table != doubleTable {
				t.Errorf("gap record actor %s table %s", r.Actor, r.Source.Table)
			}
			continue
		}
		var v struct{ V string }
		_ = json.Unmarshal(r.After, &v)
		if strings.HasPrefix(v.V, "lost") {
			t.Errorf("a trimmed record is in the log: %s", r.After)
		}
	}
	byShard := map[string]map[string]any{}
	for _, g := range gaps {
		byShard[fmt.Sprint(g["shard"])] = g
	}
	if g := byShard["shard-0"]; g == nil || g["event"] != "gap" || g["after_sequence_number"] == nil || g["resumed_at_sequence_number"] == nil {
		t.Errorf("gap of shard-0: %v, want event gap with after_ and resumed_at_sequence_number", g)
	}
	if g := byShard["shard-x"]; g == nil || g["after_sequence_number"] == nil {
		t.Errorf("gap of shard-x (no longer in the stream): %v", g)
	}
	if d.errorsOf("TrimmedDataAccessException") == 0 {
		t.Error("the double never answered TrimmedDataAccessException")
	}
}

// TestThrottling: every third call is throttled (LimitExceededException);
// the source backs off that shard and every change still lands once.
func TestThrottling(t *testing.T) {
	d := newStreamsDouble(t)
	d.throttleEvery = 3
	d.addShard("shard-0", "")
	l := openLog(t, t.TempDir())
	w := newWriter(d, "shard-0")
	src, stop := runDouble(t, d, l, t.TempDir(), func(c *Config) { c.PageLimit = 7 })
	for i := range 100 {
		w.write(i % 9)
	}
	d.split("shard-0", "shard-1")
	for i := range 50 {
		w.write(i % 9)
	}
	recs := l.waitRecords(w.made, "every change")
	stop()
	checkPerKeyOrder(t, rowChanges(t, recs), w)
	if n := d.errorsOf("LimitExceededException"); n < 5 {
		t.Errorf("%d throttled calls: the test did not throttle", n)
	}
	if st := src.Stats(); st.State == "failed" {
		t.Errorf("source failed: %s", st.LastError)
	}
}

// TestStreamReenabled: the table's stream is disabled and enabled again
// (a new ARN), once while the source runs and once while it is stopped;
// each time the previous stream is drained before any shard of the new
// one is read, and no change is lost or reordered per key.
func TestStreamReenabled(t *testing.T) {
	const arnB = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/2026-01-02T00:00:00.000"
	const arnC = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/2026-01-03T00:00:00.000"
	d := newStreamsDouble(t)
	d.addShard("a-0", "")
	l := openLog(t, t.TempDir())
	state := t.TempDir()
	w := newWriter(d, "a-0")
	byName := func(c *Config) { c.Tables = []string{doubleTable}; c.ListInterval = 20 * time.Millisecond }
	_, stop := runDouble(t, d, l, state, byName)
	for i := range 30 {
		w.write(i % 6)
	}
	l.waitRecords(w.made, "the first stream's changes")
	for i := range 12 {
		w.write(i % 6) // not read yet, most likely, when the stream is re-enabled
	}
	d.reenable(arnB)
	d.addShard("b-0", "")
	w.root = "b-0"
	for i := range 30 {
		w.write(i % 6)
	}
	l.waitRecords(w.made, "the second stream's changes")
	stop()
	// Stopped: more changes to B, then C replaces B.
	for i := range 12 {
		w.write(i % 6)
	}
	d.reenable(arnC)
	d.addShard("c-0", "")
	w.root = "c-0"
	for i := range 12 {
		w.write(i % 6)
	}
	_, stop = runDouble(t, d, l, state, byName)
	recs := l.waitRecords(w.made, "the third stream's changes")
	stop()
	checkPerKeyOrder(t, rowChanges(t, recs), w)
	ev := d.eventLog()
	at := func(e string) int { return slices.Index(ev, e) }
	if at("iter b-0") < at("end a-0") || at("end a-0") < 0 {
		t.Errorf("stream B read before stream A was drained: %v", ev)
	}
	if at("iter c-0") < at("end b-0") || at("end b-0") < 0 {
		t.Errorf("stream C read before stream B was drained: %v", ev)
	}
	// The positions left are stream C's: the drained streams' are
	// forgotten.
	p, err := capture.OpenPositions(filepath.Join(state, "positions"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range p.All() {
		if strings.Contains(k, "2026-01-01") || strings.Contains(k, "2026-01-02") {
			t.Errorf("position %s of a drained stream is still stored", k)
		}
	}
	if v, _ := p.Get("stream/" + doubleTable); v != arnC {
		t.Errorf("stream/%s = %q, want %s", doubleTable, v, arnC)
	}
}
