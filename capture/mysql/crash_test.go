package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele/capture/mysqlctx"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/internal/stelebin"
	"github.com/stele/stele/logstore"
)

// TestCrashExactlyOnce runs the real stele binary against a throwaway
// MariaDB under a continuous write workload, kill -9s it three times, and
// checks that the log holds every committed change exactly once, row by
// row against the table (each transaction inserts a row and increments v
// of an earlier one, so the table is its own ground truth), and verifies.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "crash", `CREATE TABLE items (id BIGINT PRIMARY KEY, v INT NOT NULL DEFAULT 0)`, mysqlctx.TableDDL)
	// A second, broken source (wrong password) must not stop the first.
	bin := stelebin.Build(t)
	stele := stelebin.New(t, bin, "--source", url, "--source", srv.PasswordURL("", "wrong-pw-xyz"))
	stele.Start()
	waitPositions(t, filepath.Join(stele.Data, "sources", "crash", "positions"))

	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	wg.Go(func() {
		db, err := sql.Open("mysql", "root@"+srv.Addr()+"/crash")
		if err != nil {
			workErr = err
			return
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		ctx := context.Background()
		for n := int64(1); !stop.Load(); n++ {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				workErr = err
				return
			}
			if n%3 == 0 {
				if err := mysqlctx.SetContext(ctx, tx, map[string]any{"id": "worker"}, nil); err != nil {
					workErr = err
					return
				}
			}
			if _, err := tx.Exec(`INSERT INTO items (id) VALUES (?)`, n); err != nil {
				workErr = err
				return
			}
			if _, err := tx.Exec(`UPDATE items SET v = v + 1 WHERE id = ?`, 1+rand.Int64N(n)); err != nil {
				workErr = err
				return
			}
			if err := tx.Commit(); err != nil {
				workErr = err
				return
			}
		}
	})
	for range 3 {
		time.Sleep(time.Duration(300+rand.IntN(400)) * time.Millisecond)
		stele.Restart()
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if workErr != nil {
		t.Fatalf("workload: %v", workErr)
	}
	truth := map[int]int{}
	for _, row := range srv.Query(t, "crash", `SELECT id, v FROM items`) {
		id, _ := strconv.Atoi(*row["id"])
		v, _ := strconv.Atoi(*row["v"])
		truth[id] = v
	}
	want := uint64(0)
	for _, v := range truth {
		want += 1 + uint64(v)
	}
	deadline := time.Now().Add(60 * time.Second)
	for size := uint64(0); size < want; size = stele.CheckpointSize() {
		if time.Now().After(deadline) {
			t.Fatalf("log reached %d records, want %d", size, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkHealthReported(t, bin, stele)
	if err := stele.Stop(); err != nil {
		t.Fatalf("stele exit: %v", err)
	}
	logs := stele.Logs()
	if !strings.Contains(logs, "capture source stopped") || !strings.Contains(logs, "authentication failed") {
		t.Errorf("the broken source's permanent failure was not logged")
	}
	if strings.Contains(logs, "wrong-pw-xyz") {
		t.Errorf("a password appears in the logs")
	}
	if _, err := logstore.VerifyDir(context.Background(), stele.Data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}

	ts := openStore(t, stele.Data)
	recs := ts.records(t, want)
	if uint64(len(recs)) != want {
		t.Fatalf("log holds %d records, want %d (one per committed change)", len(recs), want)
	}
	inserts, updates := map[int]int{}, map[int]int{}
	ids := map[string]bool{}
	workerTx := map[string]bool{}
	for _, r := range recs {
		if ids[r.ID] {
			t.Fatalf("id %s stored twice", r.ID)
		}
		ids[r.ID] = true
		var id int
		if _, err := fmt.Sscanf(string(r.Key), `{"id":%d}`, &id); err != nil {
			t.Fatalf("key %s: %v", r.Key, err)
		}
		switch r.Op {
		case "insert":
			inserts[id]++
			if id%3 == 0 && string(r.Actor) != `{"id":"worker"}` {
				t.Errorf("row %d: actor %s, want the context table's", id, r.Actor)
			}
			if string(r.Actor) == `{"id":"worker"}` {
				workerTx[r.Tx.ID] = true
			}
		case "update":
			updates[id]++
		default:
			t.Fatalf("unexpected op %s", r.Op)
		}
	}
	for id, v := range truth {
		if inserts[id] != 1 || updates[id] != v {
			t.Errorf("row %d: %d inserts and %d updates in the log, want 1 and %d", id, inserts[id], updates[id], v)
		}
	}
	if len(inserts) != len(truth) {
		t.Errorf("log has inserts of %d rows, table has %d", len(inserts), len(truth))
	}
	t.Logf("%d transactions, %d records, 3 kills", len(truth), len(recs))
}

// waitPositions waits for a source's position store to exist: the source
// has stored its start position and streams from there.
func waitPositions(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "positions.*")); len(m) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no position store in %s after 30s", dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSnapshotCrashExactlyOnce runs the real stele binary with snapshot:
// initial on a table that already holds rows, under a continuous write
// workload, kill -9s it several times while the snapshot is read and
// appended, and checks row by row against the table that every row was
// snapshotted or inserted exactly once and every later update applied
// once (no gap, no double), and that the log verifies.
func TestSnapshotCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "snapcrash", `CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(200) NOT NULL DEFAULT '')`,
		`INSERT INTO c SELECT seq, 0, REPEAT('x', 200) FROM seq_1_to_20000`)
	cfg := filepath.Join(t.TempDir(), "stele.yaml")
	if err := os.WriteFile(cfg, []byte("sources:\n  - name: snapcrash\n    mysql:\n      url: "+url+"\n      snapshot: initial\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stele := stelebin.New(t, stelebin.Build(t), "--config", cfg)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	wg.Go(func() {
		db, err := sql.Open("mysql", "root@"+srv.Addr()+"/snapcrash")
		if err != nil {
			workErr = err
			return
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		var writes atomic.Int64
		workErr = churn(db, 20001, stop.Load, &writes)
	})
	stele.Start()
	for range 4 {
		time.Sleep(time.Duration(150+rand.IntN(600)) * time.Millisecond)
		stele.Restart()
	}
	waitPositions(t, filepath.Join(stele.Data, "sources", "snapcrash", "positions"))
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if workErr != nil {
		t.Fatalf("workload: %v", workErr)
	}
	rowsNow, _ := strconv.Atoi(srv.Value(t, "snapcrash", `SELECT COUNT(*) FROM c`))
	// The log is complete once its size stops moving past every row.
	deadline := time.Now().Add(90 * time.Second)
	last, since := uint64(0), time.Now()
	for {
		size := stele.CheckpointSize()
		if size != last {
			last, since = size, time.Now()
		}
		if size > uint64(rowsNow) && time.Since(since) > 3*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log at %d records, table has %d rows", size, rowsNow)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stele.Stop(); err != nil {
		t.Fatalf("stele exit: %v", err)
	}
	if _, err := logstore.VerifyDir(context.Background(), stele.Data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	ts := openStore(t, stele.Data)
	recs := checkAgainstTable(t, srv, "snapcrash", ts.records(t, ts.Size()))
	logs := stele.Logs()
	t.Logf("%d rows, %d records, 4 kills; snapshot attempts: %d, resumed appends: %d",
		rowsNow, len(recs), strings.Count(logs, "consistent snapshot open"), strings.Count(logs, "resuming the appending"))
}

// checkHealthReported checks that the running binary reports the MariaDB
// source's health and lag on /metrics and in `stele status`, and the
// broken source as failed.
func checkHealthReported(t *testing.T, bin string, stele *stelebin.Server) {
	t.Helper()
	addr, err := os.ReadFile(stele.AddrFile)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + strings.TrimSpace(string(addr))
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`stele_source_up{source="crash",state="streaming"} 1`, `stele_source_lag_bytes{source="crash"} `,
		`stele_source_lag_seconds{source="crash"} `, `stele_source_records_total{source="crash"} `, `state="failed"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	out, err := exec.Command(bin, "status", "--url", base).CombinedOutput()
	if err != nil {
		t.Fatalf("stele status: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^crash +streaming +\d+ +[\d.]+ +\d+`).Match(out) || !regexp.MustCompile(`(?m) failed `).Match(out) {
		t.Errorf("stele status does not show the sources' state and lag:\n%s", out)
	}
}
