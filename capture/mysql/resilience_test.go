package mysql

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// heartbeats keep the read timeout of three heartbeats from firing), and
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
