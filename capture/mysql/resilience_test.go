package mysql

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/record"
)

// TestServerRestart: mariadbd restarts mid-stream under a write workload;
// the source reconnects with backoff from its durable position and every
// committed row is recorded exactly once.
func TestServerRestart(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "rs", `CREATE TABLE w (id INT PRIMARY KEY)`)
	store := openStore(t, t.TempDir())
	ts := &dupCounter{Sink: store}
	r := startReady(t, Config{URL: url}, ts)

	var committed sync.Map
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 1; !stop.Load(); n++ {
			if err := srv.ExecIn(t.Context(), "rs", fmt.Sprintf("INSERT INTO w VALUES (%d)", n)); err != nil {
				// The server went down around this insert: whether it
				// committed is known once the server is back.
				for {
					time.Sleep(20 * time.Millisecond)
					c, err := srv.QueryIn("rs", fmt.Sprintf("SELECT COUNT(*) AS c FROM w WHERE id = %d", n))
					if err == nil {
						if *c[0]["c"] == "1" {
							committed.Store(n, true)
						}
						break
					}
				}
				continue
			}
			committed.Store(n, true)
		}
	})
	time.Sleep(200 * time.Millisecond)
	srv.Restart(t)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	want := 0
	committed.Range(func(_, _ any) bool { want++; return true })
	store.records(t, uint64(want))
	time.Sleep(200 * time.Millisecond) // any duplicate would land now
	recs := store.records(t, store.Size())
	seen := map[string]int{}
	for _, rec := range recs {
		seen[string(rec.Key)]++
	}
	committed.Range(func(k, _ any) bool {
		if c := seen[fmt.Sprintf(`{"id":%d}`, k)]; c != 1 {
			t.Errorf("row %d recorded %d times", k, c)
		}
		return true
	})
	if len(recs) != want {
		t.Errorf("log holds %d records, %d rows committed", len(recs), want)
	}
	if !strings.Contains(r.logs.String(), "source session failed; reconnecting") {
		t.Errorf("no reconnection in the logs:\n%s", r.logs)
	}
	if st := r.src.Stats(); st.State != capture.StateStreaming || st.RecordsTotal < uint64(want) {
		t.Errorf("stats after the restart: %+v", st)
	}
	t.Logf("%d rows, %d duplicates refused", want, ts.dups.Load())
}

func TestLargeTransactionSpills(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "big", `CREATE TABLE b (id INT PRIMARY KEY, pad VARCHAR(200))`, `CREATE TABLE s (id INT PRIMARY KEY)`)
	ts := openStore(t, t.TempDir())
	spill := t.TempDir()
	r := startReady(t, Config{URL: url, SpillBytes: 64 << 10, SpillDir: spill, BatchSize: 100}, ts)
	srv.Exec(t, "big", "INSERT INTO s VALUES (1)")
	var q strings.Builder
	q.WriteString("INSERT INTO b VALUES ")
	for i := range 3000 {
		if i > 0 {
			q.WriteByte(',')
		}
		fmt.Fprintf(&q, "(%d, '%s')", i, strings.Repeat("p", 100))
	}
	srv.Exec(t, "big", "BEGIN", q.String(), "UPDATE b SET pad = 'x' WHERE id < 10", "COMMIT", "INSERT INTO s VALUES (2)")
	recs := ts.records(t, 3012)
	if len(recs) != 3012 {
		t.Fatalf("got %d records, want 3012", len(recs))
	}
	if string(recs[0].Key) != `{"id":1}` || recs[0].Source.Table != "s" || string(recs[3011].Key) != `{"id":2}` {
		t.Errorf("order around the spilled transaction: first %s %s, last %s", recs[0].Source.Table, recs[0].Key, recs[3011].Key)
	}
	for i, rec := range recs[1:3011] {
		if *rec.Tx.Index != int64(i) || rec.Tx.ID != recs[1].Tx.ID {
			t.Fatalf("record %d of the transaction: tx %+v", i, rec.Tx)
		}
	}
	if recs[3010].Op != record.OpUpdate {
		t.Errorf("last of the transaction: %s", recs[3010].Op)
	}
	if !strings.Contains(r.logs.String(), "spilling its records to disk") {
		t.Errorf("no spill in the logs")
	}
}

func TestTableFilters(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "app", `CREATE TABLE a (id INT PRIMARY KEY)`, `CREATE TABLE b (id INT PRIMARY KEY)`,
		`CREATE TABLE nokey (x INT, y VARCHAR(3))`)
	srv.CreateDatabase(t, "other", `CREATE TABLE o (id INT PRIMARY KEY)`)
	all := openStore(t, t.TempDir())
	startReady(t, Config{URL: srv.URL(""), Name: "all", ExcludeTables: []string{"app.b"}}, all)
	one := openStore(t, t.TempDir())
	startReady(t, Config{URL: url, Tables: []string{"b"}}, one)
	srv.Exec(t, "app", "INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1)", "INSERT INTO nokey VALUES (1, 'x'), (1, 'x')", "DELETE FROM nokey LIMIT 1")
	srv.Exec(t, "other", "INSERT INTO o VALUES (1)", "CREATE TABLE o2 (id INT)")
	got := func(ts *testStore) string {
		var out []string
		for _, r := range ts.settle(t) {
			out = append(out, fmt.Sprintf("%s %s.%s %s", r.Op, r.Source.Database, r.Source.Table, r.Key))
		}
		return strings.Join(out, "\n")
	}
	wantAll := strings.Join([]string{
		`insert app.a {"id":1}`,
		`insert app.nokey {"x":1,"y":"x"}`,
		`insert app.nokey {"x":1,"y":"x"}`,
		`delete app.nokey {"x":1,"y":"x"}`,
		`insert other.o {"id":1}`,
		`ddl other.o2 {"object":"other.o2"}`,
	}, "\n")
	if g := got(all); g != wantAll {
		t.Errorf("every database but app.b:\n%s\nwant:\n%s", g, wantAll)
	}
	if g := got(one); g != `insert app.b {"id":1}` {
		t.Errorf("tables [b]:\n%s", g)
	}
}

// TestIdleHeartbeats: an idle stream stays connected (the server's
// heartbeats end each wait before the silence bound of three heartbeats
// and some slack), and
// lag is measured in binlog bytes past the durable position.
func TestIdleHeartbeats(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "idle", `CREATE TABLE i (id INT PRIMARY KEY)`)
	ts := openStore(t, t.TempDir())
	r := startReady(t, Config{URL: url, Heartbeat: 300 * time.Millisecond}, ts)
	time.Sleep(7 * time.Second) // longer than the read timeout (3 heartbeats + 5 s = 5.9 s): only heartbeats keep it open
	srv.Exec(t, "idle", "INSERT INTO i VALUES (1)")
	ts.records(t, 1)
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(r.logs.String(), "reconnecting") {
		t.Errorf("the idle stream reconnected:\n%s", r.logs)
	}
	st := r.src.Stats()
	if st.State != capture.StateStreaming || st.LagBytes != 0 || st.Position == "" || st.RecordsTotal != 1 {
		t.Errorf("stats when caught up: %+v", st)
	}
}

// TestLargeTransactionMemoryBounded: while a transaction many times the
// spill limit is captured, the heap the source keeps live (measured after
// a collection, at every append of the transaction, into a sink that keeps
// nothing) stays bounded by what it holds by design — the spill limit, the
// event cache and one batch — not by the transaction.
func TestLargeTransactionMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 24 MiB transaction; skipped with -short")
	}
	const rows, rowBytes = 24 << 10, 1 << 10 // 24 MiB
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "bigmem", `CREATE TABLE big (id BIGINT PRIMARY KEY, pad TEXT)`)
	sink := &heapSink{}
	startReady(t, Config{URL: url, SpillBytes: 256 << 10, BatchSize: 500}, sink)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	srv.Exec(t, "bigmem", fmt.Sprintf("INSERT INTO big SELECT seq, REPEAT(MD5(seq), %d) FROM seq_1_to_%d", rowBytes/32, rows))
	deadline := time.Now().Add(2 * time.Minute)
	for sink.n.Load() < rows {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rows captured", sink.n.Load(), rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
	growth := int64(sink.peak.Load()) - int64(base)
	// Held by design: 256 KiB of records before the spill (about twice
	// that in memory), 3 × 256 events of up to 8 KiB and their decoding,
	// a batch of 500 records: well under 16 MiB, while the transaction's
	// records are over 24 MiB.
	if growth > 16<<20 {
		t.Errorf("live heap grew by %d MiB while a %d MiB transaction was captured", growth>>20, rows*rowBytes>>20)
	}
	t.Logf("live heap growth at most %.1f MiB for a %d MiB transaction", float64(growth)/(1<<20), rows*rowBytes>>20)
}

// heapSink counts records and, at each append, records the live heap
// after a collection.
type heapSink struct {
	n    atomic.Int64
	peak atomic.Uint64
}

func (h *heapSink) Append(_ context.Context, recs []*record.Record) ([]stele.Appended, error) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > h.peak.Load() {
		h.peak.Store(ms.HeapAlloc)
	}
	h.n.Add(int64(len(recs)))
	return make([]stele.Appended, len(recs)), nil
}

// TestSilentConnectionReconnects: a binlog connection that goes silent
// without closing (a dead peer, a dropped route: no FIN, no heartbeat) is
// given up after three heartbeats and some slack, and the source
// reconnects from its durable position and captures what followed.
func TestSilentConnectionReconnects(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "silent", `CREATE TABLE s (id INT PRIMARY KEY)`)
	p := newFreezer(t, srv.Addr())
	url = strings.Replace(url, srv.Addr(), p.addr(), 1)
	ts := openStore(t, t.TempDir())
	r := startReady(t, Config{URL: url, Heartbeat: 300 * time.Millisecond}, ts)
	srv.Exec(t, "silent", "INSERT INTO s VALUES (1)")
	ts.records(t, 1)
	p.freeze() // every open connection stops passing bytes, both ways
	srv.Exec(t, "silent", "INSERT INTO s VALUES (2)")
	// Not a timing threshold: the deadline only stops a hung test.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(r.logs.String(), "went silent") {
		if time.Now().After(deadline) {
			t.Fatalf("the silent connection was never given up:\n%s", r.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recs := ts.records(t, 2)
	if len(recs) != 2 || string(recs[1].Key) != `{"id":2}` {
		t.Fatalf("after reconnecting: %d records, last key %s", len(recs), recs[len(recs)-1].Key)
	}
}

// freezer is a TCP proxy whose open connections can be frozen: they stay
// open and pass nothing, as a connection to a vanished peer does.
// Connections made after a freeze pass bytes as usual.
type freezer struct {
	ln    net.Listener
	epoch atomic.Int64
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			born := f.epoch.Load()
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if f.epoch.Load() != born {
						<-stop // frozen: hold both ends open, pass nothing
						return
					}
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }
func (f *freezer) freeze()      { f.epoch.Add(1) }
