package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/capture/pgctx"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/internal/stelebin"
	"github.com/stele/stele/logstore"
)

// TestCrashExactlyOnce runs the real stele binary against a throwaway
// PostgreSQL under a continuous write workload, kill -9s it three times,
// and checks that the log holds every committed change exactly once, row
// by row against the table (each transaction inserts a row and increments
// v of an earlier one, so the table is its own ground truth), and verifies.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "crash", `CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0)`)
	// A second, broken source (wrong password) must not stop the first.
	stele := stelebin.New(t, stelebin.Build(t), "--source", url, "--source", srv.PasswordURL("postgres", "wrong-pw-xyz"))
	stele.Start()
	waitSlot(t, url, "stele_crash")

	// The workload: one transaction after another until stopped.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	wg.Go(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			workErr = err
			return
		}
		defer conn.Close(ctx)
		for n := int64(1); !stop.Load(); n++ {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if n%3 == 0 {
					if err := pgctx.SetContext(ctx, tx, map[string]any{"id": "worker"}, nil); err != nil {
						return err
					}
				}
				if _, err := tx.Exec(ctx, `INSERT INTO items (id) VALUES ($1)`, n); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = $1`, 1+rand.Int64N(n))
				return err
			})
			if err != nil {
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
	truth, err := pgxQuery(url, `SELECT id, v FROM items`)
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(0)
	for _, v := range truth {
		want += 1 + uint64(v)
	}

	// Wait for the log to catch up, as its signed checkpoint says.
	deadline := time.Now().Add(60 * time.Second)
	for size := uint64(0); size < want; size = stele.CheckpointSize() {
		if time.Now().After(deadline) {
			t.Fatalf("log reached %d records, want %d", size, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	inserts := map[int]int{}
	updates := map[int]int{}
	ids := map[string]bool{}
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
