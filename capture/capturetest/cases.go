package capturetest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

// startReady starts a source with good credentials and waits until it
// captures.
func (e *env) startReady() *running {
	e.t.Helper()
	r := e.start(e.up.Source(e.t, false))
	e.up.Ready(e.t)
	return r
}

// finish waits for every change of lists, stops r and checks the log.
func (e *env) finish(r *running, loose bool, lists ...[]txPlan) []*record.Record {
	e.t.Helper()
	e.waitFor("holding every change made", waitRecords, e.present(lists...))
	if err := r.stop(); err != nil {
		e.t.Fatalf("stop the source: %v", err)
	}
	recs := e.records()
	e.checkChanges(recs, loose, lists...)
	return recs
}

// testOps: each op, one transaction each, lands once with its images.
func testOps(e *env) {
	r := e.startReady()
	b := newBuilder(e, 1, "o")
	plans := []txPlan{
		plan(nil, b.ins()), // row 1
		plan(nil, b.ins()), // row 2
		plan(nil, b.upd(1)),
		plan(nil, b.del(2)),
		plan(nil, b.upd(1)),
		plan(nil, b.ins()), // row 3
		plan(nil, b.del(1)),
	}
	e.apply(plans)
	e.finish(r, false, plans)
}

// testTypes: the harness's typed row lands with the expected JSON.
func testTypes(e *env) {
	r := e.startReady()
	row, err := e.up.WriteTyped(context.Background())
	if err != nil {
		e.t.Fatalf("write the typed row: %v", err)
	}
	var rec *record.Record
	e.waitFor("holding the typed row", waitRecords, func(recs []*record.Record) bool {
		for _, x := range recs {
			if x.Source.Table == row.Table && string(x.Key) == row.Key {
				rec = x
				return true
			}
		}
		return false
	})
	if err := r.stop(); err != nil {
		e.t.Fatal(err)
	}
	if rec.Op != record.OpInsert || rec.Before != nil {
		e.t.Errorf("typed row: op %s before %s, want an insert without before", rec.Op, rec.Before)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(rec.After, &got); err != nil {
		e.t.Fatalf("typed row after %s: %v", rec.After, err)
	}
	for _, col := range slices.Sorted(maps.Keys(row.Want)) {
		if g, ok := got[col]; !ok {
			e.t.Errorf("column %s missing from after (want %s)", col, row.Want[col])
		} else if string(g) != row.Want[col] {
			e.t.Errorf("column %s = %s, want %s", col, g, row.Want[col])
		}
	}
	for _, col := range sortedKeys(got) {
		if _, ok := row.Want[col]; !ok {
			e.t.Errorf("column %s = %s is in after but the fixture expects nothing of it", col, got[col])
		}
	}
}

// testTransactions: multi-change transactions, one writer of them and
// one of single changes at the same time.
func testTransactions(e *env) {
	r := e.startReady()
	multi, single := newBuilder(e, 1, "m"), newBuilder(e, 1_000_000, "s")
	var mp []txPlan
	for range 6 {
		id := multi.next
		// Insert three rows, change one, delete another: five changes,
		// two of them to a row inserted in the same transaction.
		mp = append(mp, plan(nil, multi.ins(), multi.ins(), multi.ins(), multi.upd(id+1), multi.del(id)))
	}
	sp := single.randoms(12)
	var wg sync.WaitGroup
	for _, plans := range [][]txPlan{mp, sp} {
		wg.Go(func() {
			for _, p := range plans {
				if err := e.up.Apply(context.Background(), p.tx); err != nil {
					e.t.Errorf("apply: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e.t.Failed() {
		return
	}
	e.finish(r, false, mp, sp)
}

// testActor: an actor given with a transaction is on its records, and on
// no other record.
func testActor(e *env) {
	r := e.startReady()
	b := newBuilder(e, 1, "a")
	alice := map[string]string{"id": "alice", "app": "capturetest", "type": "user"}
	bob := map[string]string{"id": "bob"}
	plans := []txPlan{plan(nil, b.ins())}
	if e.supports(Transactions) {
		plans = append(plans, plan(alice, b.ins(), b.ins(), b.upd(1)))
	} else {
		plans = append(plans, plan(alice, b.ins()))
	}
	plans = append(plans, plan(nil, b.upd(2)), plan(bob, b.del(1)), plan(nil, b.ins()))
	e.apply(plans)
	e.finish(r, false, plans)
}

// testTruncate: a truncate is one record, between the changes before and
// after it.
func testTruncate(e *env) {
	r := e.startReady()
	b := newBuilder(e, 1, "t")
	before := []txPlan{plan(nil, b.ins()), plan(nil, b.ins()), plan(nil, b.upd(1))}
	e.apply(before)
	if err := e.up.Truncate(context.Background()); err != nil {
		e.t.Fatalf("truncate: %v", err)
	}
	b.truncated()
	after := []txPlan{plan(nil, b.ins())}
	e.apply(after)
	table := e.up.Table()
	truncates := func(recs []*record.Record) (at []int) {
		for i, x := range recs {
			if x.Op == record.OpTruncate && x.Source.Table == table {
				at = append(at, i)
			}
		}
		return at
	}
	e.waitFor("holding the truncate", waitRecords, func(recs []*record.Record) bool { return len(truncates(recs)) > 0 })
	recs := e.finish(r, false, slices.Concat(before, after))
	at := truncates(recs)
	if len(at) != 1 {
		e.t.Fatalf("%d truncate records (at %v), want 1", len(at), at)
	}
	tr := recs[at[0]]
	if tr.Before != nil || tr.After != nil || len(tr.Key) == 0 || tr.Source.Name != e.up.Name() || tr.Source.Kind != e.h.Kind() {
		e.t.Errorf("truncate record: key %s before %s after %s source %+v", tr.Key, tr.Before, tr.After, tr.Source)
	}
	if n := rowChanges(recs[:at[0]], table); n != 3 {
		e.t.Errorf("%d row changes before the truncate, want the 3 made before it", n)
	}
}

func rowChanges(recs []*record.Record, table string) int {
	n := 0
	for _, r := range recs {
		if recIdentity(r, table) != "" {
			n++
		}
	}
	return n
}

// testDDL: a change of the table's definition is recorded after the
// changes before it, once; the changes after it still land.
func testDDL(e *env) {
	r := e.startReady()
	b := newBuilder(e, 1, "d")
	before := []txPlan{plan(nil, b.ins()), plan(nil, b.ins())}
	e.apply(before)
	if err := e.up.DDL(context.Background()); err != nil {
		e.t.Fatalf("ddl: %v", err)
	}
	after := []txPlan{plan(nil, b.ins()), plan(nil, b.upd(1)), plan(nil, b.del(2))}
	e.apply(after)
	table := e.up.Table()
	ddls := func(recs []*record.Record) (at []int) {
		for i, x := range recs {
			if x.Op == record.OpDDL && x.Source.Table == table {
				at = append(at, i)
			}
		}
		return at
	}
	e.waitFor("holding the ddl record", waitRecords, func(recs []*record.Record) bool { return len(ddls(recs)) > 0 })
	recs := e.finish(r, true, slices.Concat(before, after))
	at := ddls(recs)
	if len(at) == 0 {
		e.t.Fatalf("no ddl record for %s", table)
	}
	// A source may record the statement and, once it sees them, the
	// columns it produced (the binlog has both): each once, neither
	// before the changes made before the statement.
	seen := map[string]bool{}
	for _, i := range at {
		d := recs[i]
		if len(d.Key) == 0 || d.Source.Name != e.up.Name() || d.Source.Kind != e.h.Kind() {
			e.t.Errorf("ddl record: key %s source %+v", d.Key, d.Source)
		}
		if seen[string(d.Key)+string(d.After)] {
			e.t.Errorf("ddl record %s %s stored twice", d.Key, d.After)
		}
		seen[string(d.Key)+string(d.After)] = true
		if n := rowChanges(recs[:i], table); n < 2 {
			e.t.Errorf("%d row changes before ddl record %s, want the 2 made before the statement", n, d.Key)
		}
	}
	if n := rowChanges(recs[:at[0]], table); n != 2 {
		e.t.Errorf("%d row changes before the first ddl record, want the 2 made before it", n)
	}
}

// testExactlyOnce crashes the source in-process at random record counts
// while a writer keeps changing the table, reopens the store from its
// directory and restarts the source, three times; then every change must
// be stored exactly once.
func testExactlyOnce(e *env) {
	const crashes = 3
	b := newBuilder(e, 1, "x")
	plans := b.randoms(60)
	total := 0
	for _, p := range plans {
		total += len(p.wants)
	}
	pauses := make([]time.Duration, len(plans))
	for i := range pauses {
		pauses[i] = time.Duration(e.rng.IntN(10000)) * time.Microsecond
	}
	writerDone := make(chan struct{})
	for cycle := 0; ; cycle++ {
		src := e.up.Source(e.t, false)
		if cycle == crashes {
			r := e.start(src)
			<-writerDone
			if e.t.Failed() {
				return
			}
			e.finish(r, false, plans)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		at := 1 + e.rng.IntN(max(1, total/2))
		lose := e.rng.IntN(3) == 0
		var how string
		fired := e.sink.arm(at, lose, func(appended, batch int) {
			cancel()
			var size uint64
			e.mu.Lock()
			if e.store != nil {
				size = e.store.Size()
			}
			e.mu.Unlock()
			e.closeStore()
			how = fmt.Sprintf("stored %d of the %d records of the append that hit it; %d of %d changes in the log", appended, batch, size, total)
		})
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, e.sink) }()
		if cycle == 0 {
			e.up.Ready(e.t)
			// However the case ends, the writer is done before it does.
			e.t.Cleanup(func() { <-writerDone })
			go func() {
				defer close(writerDone)
				for i, p := range plans {
					if err := e.up.Apply(context.Background(), p.tx); err != nil {
						e.t.Errorf("apply: %v", err)
						return
					}
					time.Sleep(pauses[i])
				}
			}()
		}
		if e.waitCrash(fired, writerDone, plans) {
			e.t.Logf("crash %d after %d records handed over (%s)", cycle+1, at, how)
		} else {
			// Everything is stored, so the records to wait for will not
			// come: crash idle.
			e.sink.disarm()
			cancel()
			e.closeStore()
			e.t.Logf("crash %d while idle (every change stored before %d more records were handed over)", cycle+1, at)
		}
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("crash %d: Run = %v, want nil once its context is canceled", cycle+1, err)
			}
		case <-time.After(waitStop):
			e.t.Fatalf("crash %d: Run did not return %v after its context was canceled", cycle+1, waitStop)
		}
		cancel()
		e.openStore()
	}
}

// waitCrash waits for the armed crash to fire (true) or for the writer to
// be done and every change to be stored (false).
func (e *env) waitCrash(fired, writerDone chan struct{}, plans []txPlan) bool {
	e.t.Helper()
	all := e.present(plans)
	deadline := time.Now().Add(waitRecords)
	for {
		select {
		case <-fired:
			return true
		case <-time.After(20 * time.Millisecond):
		}
		select {
		case <-writerDone:
			if all(e.records()) {
				return false
			}
		default:
		}
		if time.Now().After(deadline) {
			e.checkChanges(e.records(), false, plans)
			e.t.Fatalf("after %v the armed crash has not fired and the log does not hold every change", waitRecords)
		}
	}
}

// testUpstreamRestart restarts the upstream while the source streams.
func testUpstreamRestart(e *env) {
	r := e.startReady()
	b := newBuilder(e, 1, "u")
	first := b.randoms(20)
	e.apply(first)
	e.up.Restart(e.t)
	second := b.randoms(20)
	e.apply(second)
	e.waitFor("holding every change made", waitRecords, e.present(first, second))
	if r.ended() {
		e.t.Fatalf("the source stopped after the upstream restarted: %v", r.err)
	}
	e.finish(r, false, slices.Concat(first, second))
}

// testBadCredentials: a source with bad credentials fails once, clearly,
// while a good one on the same sink keeps capturing.
func testBadCredentials(e *env) {
	good := e.startReady()
	b := newBuilder(e, 1, "c")
	early := []txPlan{plan(nil, b.ins())}
	e.apply(early)
	badSrc := e.up.Source(e.t, true)
	bad := e.start(badSrc)
	bad.failing = true
	select {
	case <-bad.done:
	case <-time.After(waitRecords):
		e.t.Fatalf("the source with bad credentials still runs after %v: a permanent failure must end Run, not retry forever", waitRecords)
	}
	if bad.err == nil {
		e.t.Fatal("the source with bad credentials ended Run without an error")
	}
	e.t.Logf("bad credentials: %v", bad.err)
	e.up.CheckCredentialError(e.t, bad.err)
	if st, ok := badSrc.(interface{ Stats() capture.Stats }); ok {
		if s := st.Stats(); s.State != capture.StateFailed || s.LastError == "" {
			e.t.Errorf("bad source's stats: state %q last error %q, want %q and the error", s.State, s.LastError, capture.StateFailed)
		}
	}
	late := []txPlan{plan(nil, b.ins()), plan(nil, b.upd(1))}
	e.apply(late)
	e.waitFor("holding the changes made after the failure", waitRecords, e.present(early, late))
	if good.ended() {
		e.t.Fatalf("the good source stopped too: %v", good.err)
	}
	e.finish(good, false, slices.Concat(early, late))
}

// testPositionsNeverAhead slows every append down and checks, before and
// after the delay, that the upstream's acknowledged position covers none
// of the records in hand; then that it does cover every record in the end.
func testPositionsNeverAhead(e *env) {
	e.sink.delay = 25 * time.Millisecond
	r := e.startReady()
	b1, b2 := newBuilder(e, 1, "p"), newBuilder(e, 1_000_000, "q")
	lists := [][]txPlan{b1.randoms(15), b2.randoms(15)}
	var wg sync.WaitGroup
	for _, plans := range lists {
		wg.Go(func() {
			for _, p := range plans {
				if err := e.up.Apply(context.Background(), p.tx); err != nil {
					e.t.Errorf("apply: %v", err)
					return
				}
				time.Sleep(time.Duration(e.rngIntN(5)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if e.t.Failed() {
		return
	}
	recs := e.waitFor("holding every change made", waitRecords, e.present(lists...))
	// The acknowledged position reaches every durable record: a source
	// that never acknowledged would pass the check above and pin its
	// upstream forever.
	deadline := time.Now().Add(waitRecords)
	for {
		covers, err := e.up.Acknowledged(context.Background())
		if err == nil {
			missing := 0
			for _, x := range recs {
				if !covers(x) {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("after %v the upstream's acknowledged position still does not cover %d of the %d durable records", waitRecords, missing, len(recs))
			}
		} else if time.Now().After(deadline) {
			e.t.Fatalf("Acknowledged: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.finish(r, false, lists...)
	checks, skipped, lastSkip := e.sink.counts()
	if checks == 0 {
		e.t.Fatalf("the upstream never answered what it holds as acknowledged (%d failures, the last: %v): nothing was checked", skipped, lastSkip)
	}
	e.t.Logf("%d appends checked against the acknowledged position (%d checks skipped)", checks, skipped)
}

// rngIntN is e.rng.IntN for use from several goroutines.
func (e *env) rngIntN(n int) int {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.IntN(n)
}
