package mysql

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/internal/mysqltest"
)

// TestCaptureBenchmark measures, in one run over the same binlog: (a)
// captured changes/s end to end, MariaDB binlog to a durable, indexed log,
// for single-row INSERTs in transactions of 100; (b) go-mysql's
// BinlogSyncer reading and decoding the same events to nothing, and the
// ratio of the two. Skipped unless STELE_BENCH_CAPTURE=1.
func TestCaptureBenchmark(t *testing.T) {
	if os.Getenv("STELE_BENCH_CAPTURE") == "" {
		t.Skip("set STELE_BENCH_CAPTURE=1 to run the capture benchmark")
	}
	const txs, perTx = 500, 100
	srv := mysqltest.Start(t, mysqltest.Options{})
	srv.CreateDatabase(t, "bench", `CREATE TABLE e (id BIGINT PRIMARY KEY, account INT, amount DECIMAL(12,2), note VARCHAR(40), at DATETIME(6))`)
	from := srv.Value(t, "", "SELECT @@gtid_binlog_pos")
	c := srv.Connect(t, "bench")
	for i := range txs {
		var q strings.Builder
		if _, err := c.Execute("BEGIN"); err != nil {
			t.Fatal(err)
		}
		for j := range perTx {
			q.Reset()
			n := i*perTx + j
			fmt.Fprintf(&q, "INSERT INTO e VALUES (%d, %d, %d.25, 'payment %d', NOW(6))", n, n%97, n, n)
			if _, err := c.Execute(q.String()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Execute("COMMIT"); err != nil {
			t.Fatal(err)
		}
	}
	end := srv.Value(t, "", "SELECT @@gtid_binlog_pos")
	total := txs * perTx

	// (b) the raw reader.
	rawStart := time.Now()
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{ServerID: 9001, Flavor: "mariadb", Host: "127.0.0.1", Port: uint16(srv.Port), User: "root", DisableRetrySync: true})
	gs, _ := gomysql.ParseMariadbGTIDSet(from)
	st, err := syncer.StartSyncGTID(gs)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for {
		ev, err := st.GetEvent(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if re, ok := ev.Event.(*replication.RowsEvent); ok {
			rows += len(re.Rows)
		}
		if x, ok := ev.Event.(*replication.XIDEvent); ok && x.GSet != nil && x.GSet.String() == end {
			break
		}
	}
	raw := time.Since(rawStart)
	syncer.Close()

	// (a) end to end, from the same start.
	ts := openStore(t, t.TempDir())
	state := t.TempDir()
	src, _ := New(testConfig(t, Config{URL: srv.URL("bench"), StateDir: state}))
	stState, err := src.openState()
	if err != nil {
		t.Fatal(err)
	}
	stState.setDurable(binlogPos{GTIDMode: true, GTID: from})
	if err := stState.save(context.Background()); err != nil {
		t.Fatal(err)
	}
	capStart := time.Now()
	r := start(t, Config{URL: srv.URL("bench"), StateDir: state}, ts)
	var first time.Duration
	for ts.Size() < uint64(total) {
		if first == 0 && ts.Size() > 0 {
			first = time.Since(capStart)
		}
		time.Sleep(time.Millisecond)
	}
	captured := time.Since(capStart)
	t.Logf("first record durable %v after the source started (connect, set-up checks)", first)
	r.stop()
	rawRate := float64(rows) / raw.Seconds()
	capRate := float64(total) / captured.Seconds()
	t.Logf("raw BinlogSyncer decode: %d rows in %v = %.0f rows/s", rows, raw, rawRate)
	t.Logf("captured end to end: %d changes in %v = %.0f changes/s (ratio %.2f)", total, captured, capRate, capRate/rawRate)
}
