package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/pgctx"
	"github.com/stele/stele/index"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// testStore is a real log store with its index (which recognises
// duplicate ids across commits).
type testStore struct {
	*logstore.Store
	ix *index.Index
}

func openStore(t *testing.T, dir string) *testStore {
	t.Helper()
	ix, err := index.Open(filepath.Join(dir, "index"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	st, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		ix.Close()
		t.Fatalf("open log: %v", err)
	}
	ts := &testStore{Store: st, ix: ix}
	t.Cleanup(ts.close)
	return ts
}

func (ts *testStore) close() {
	if ts.Store != nil {
		ts.Store.Close()
		ts.ix.Close()
		ts.Store = nil
	}
}

// records waits until the store holds at least n records and returns all.
func (ts *testStore) records(t *testing.T, n uint64) []*record.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ts.Size() < n {
		if time.Now().After(deadline) {
			t.Fatalf("log holds %d records, want at least %d", ts.Size(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out []*record.Record
	for seq := range ts.Size() {
		r, err := ts.Read(seq)
		if err != nil {
			t.Fatalf("read %d: %v", seq, err)
		}
		out = append(out, r)
	}
	return out
}

// dupCounter passes appends to the real store and counts the duplicates
// it reports.
type dupCounter struct {
	capture.Sink
	dups atomic.Int64
}

func (d *dupCounter) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	res, err := d.Sink.Append(ctx, recs)
	for _, a := range res {
		if a.Duplicate {
			d.dups.Add(1)
		}
	}
	return res, err
}

// logBuffer collects log output so tests can assert warnings.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is a source running in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	logs   *logBuffer
}

func start(t *testing.T, cfg Config, sink capture.Sink) *running {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- src.Run(ctx, sink) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("source %s logs:\n%s", src.Name(), logs)
		}
	})
	return r
}

// startReady starts a source and waits until it streams from its slot, so
// changes made afterwards are certainly captured.
func startReady(t *testing.T, cfg Config, sink capture.Sink) *running {
	t.Helper()
	r := start(t, cfg, sink)
	src, _ := New(cfg)
	waitSlot(t, cfg.ConnString, src.Config().Slot)
	return r
}

func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err // stop and wait may be called again
	return err
}

// wait returns Run's error once it ends by itself.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("source did not stop; logs:\n%s", r.logs)
		return nil
	}
}

// newDB creates a database and returns its URL.
func newDB(t *testing.T, srv *pgtest.Server, name string, stmts ...string) string {
	t.Helper()
	srv.Exec(t, "CREATE DATABASE "+name)
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", srv.Port, name)
	execIn(t, url, stmts...)
	return url
}

func execIn(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

func fields(t *testing.T, raw json.RawMessage) map[string]string {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("image %s: %v", raw, err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func TestCapture(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})

	t.Run("OpsAndTypes", func(t *testing.T) {
		url := newDB(t, srv, "ops", `CREATE TABLE typed (
			id int PRIMARY KEY, i2 int2, i8 int8, n numeric, b bool, t text, ts timestamptz, d date,
			j json, jb jsonb, ia int[], ta text[], by bytea, u uuid, nul text)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url}, ts)
		execIn(t, url,
			`INSERT INTO typed VALUES (1, -5, 9223372036854775807, 12345678901234567890.123456789012345678901234567890,
				true, 'héllo "q" <x>', '2026-01-02 03:04:05.123456+02', '2026-01-02',
				'{"b": 2, "a": [1, "x"]}', '{"b": 2, "a": [1, "x"]}', '{1,2,NULL}', '{"a","b c"}',
				'\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL)`,
			`UPDATE typed SET b = false, t = 'bye' WHERE id = 1`,
			`DELETE FROM typed WHERE id = 1`,
			`TRUNCATE typed`)
		recs := ts.records(t, 4)
		if len(recs) != 4 {
			t.Fatalf("got %d records, want 4", len(recs))
		}
		ops := []record.Op{recs[0].Op, recs[1].Op, recs[2].Op, recs[3].Op}
		if !slices.Equal(ops, []record.Op{record.OpInsert, record.OpUpdate, record.OpDelete, record.OpTruncate}) {
			t.Fatalf("ops = %v", ops)
		}
		ins := recs[0]
		want := map[string]string{
			"id": "1", "i2": "-5", "i8": "9223372036854775807",
			"n": "12345678901234567890.123456789012345678901234567890",
			"b": "true", "t": `"héllo \"q\" <x>"`, "ts": `"2026-01-02T01:04:05.123456Z"`, "d": `"2026-01-02"`,
			"j": `{"a":[1,"x"],"b":2}`, "jb": `{"a":[1,"x"],"b":2}`, "ia": "[1,2,null]", "ta": `["a","b c"]`,
			"by": `"3q2+7w=="`, "u": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "nul": "null",
		}
		got := fields(t, ins.After)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("after.%s = %s, want %s", k, got[k], v)
			}
		}
		if string(ins.Key) != `{"id":1}` || ins.Before != nil {
			t.Errorf("insert key %s before %s", ins.Key, ins.Before)
		}
		if ins.Source != (record.Source{Name: "ops", Kind: "postgres", Database: "ops", Schema: "public", Table: "typed"}) {
			t.Errorf("source = %+v", ins.Source)
		}
		if string(ins.Actor) != `{"id":"unknown","type":"unknown"}` {
			t.Errorf("actor = %s", ins.Actor)
		}
		if ins.Tx == nil || ins.Tx.ID == "" || !strings.Contains(ins.Tx.Position, "/") || *ins.Tx.Index != 0 || !ins.Tx.CommitTime.Equal(ins.OccurredAt) {
			t.Errorf("tx = %+v", ins.Tx)
		}
		if ins.ID != record.DeriveChangeID(ins) {
			t.Errorf("id %s is not derived from the position and key", ins.ID)
		}
		upd := recs[1]
		if fields(t, upd.After)["t"] != `"bye"` || string(upd.Before) != `{"id":1}` {
			t.Errorf("update before %s after %s", upd.Before, upd.After)
		}
		del := recs[2]
		if string(del.Before) != `{"id":1}` || del.After != nil || string(del.Key) != `{"id":1}` {
			t.Errorf("delete before %s after %s key %s", del.Before, del.After, del.Key)
		}
		if string(recs[3].Key) != `{"table":"public.typed"}` {
			t.Errorf("truncate key %s", recs[3].Key)
		}
	})

	t.Run("FullIdentityAndToast", func(t *testing.T) {
		url := newDB(t, srv, "toast", `CREATE TABLE docs (id int PRIMARY KEY, title text, body text)`,
			`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`)
		ts := openStore(t, t.TempDir())
		r := startReady(t, Config{ConnString: url}, ts)
		big := strings.Repeat("0123456789abcdef", 512) // 8 kB, stored out of line
		execIn(t, url,
			fmt.Sprintf(`INSERT INTO docs VALUES (1, 'a', '%s')`, big),
			`UPDATE docs SET title = 'b' WHERE id = 1`)
		recs := ts.records(t, 2)
		if got := fields(t, recs[1].After)["body"]; got != `"`+big+`"` {
			t.Fatalf("unchanged TOAST value not filled: body = %.80s…", got)
		}
		if !slices.Equal(recs[1].Changed, []string{"body", "title"}) {
			// before holds only the key under the default identity
			t.Errorf("changed = %v", recs[1].Changed)
		}
		if !strings.Contains(r.logs.String(), "before images of updates and deletes hold only the key") {
			t.Errorf("no replica identity warning in logs:\n%s", r.logs)
		}
		// A fresh source has no last image: the value is marked, not dropped.
		r.stop()
		ts2 := openStore(t, t.TempDir())
		r2 := start(t, Config{ConnString: url, Slot: "other", Publication: "stele_toast"}, ts2)
		waitSlot(t, url, "other")
		execIn(t, url, `UPDATE docs SET title = 'c' WHERE id = 1`)
		recs2 := ts2.records(t, 1)
		if got := fields(t, recs2[0].After)["body"]; got != `{"$unchanged_toast":true}` {
			t.Errorf("body = %.80s, want the unchanged-toast marker", got)
		}
		if !strings.Contains(r2.logs.String(), "unchanged TOAST value") {
			t.Errorf("no TOAST warning in logs")
		}
		r2.stop()
		// With REPLICA IDENTITY FULL the before image is complete.
		ts3 := openStore(t, t.TempDir())
		start(t, Config{ConnString: url, Slot: "full", Publication: "stele_toast", ReplicaIdentityFull: true}, ts3)
		waitSlot(t, url, "full")
		execIn(t, url, `UPDATE docs SET title = 'd' WHERE id = 1`)
		recs3 := ts3.records(t, 1)
		b, a := fields(t, recs3[0].Before), fields(t, recs3[0].After)
		if b["title"] != `"c"` || b["body"] != `"`+big+`"` || a["body"] != `"`+big+`"` || !slices.Equal(recs3[0].Changed, []string{"title"}) {
			t.Errorf("full identity: before.title %s changed %v", b["title"], recs3[0].Changed)
		}
	})

	t.Run("ToastNearThreshold", func(t *testing.T) {
		// Rows around TOAST_TUPLE_THRESHOLD, stored uncompressed: those
		// PostgreSQL moves out of line come back as unchanged TOAST values
		// in the next update, and must be filled from the image cache,
		// which keeps only rows that may have been toasted (toast.go). A
		// low toast_tuple_target does not make smaller rows toast.
		url := newDB(t, srv, "toastedge",
			`CREATE TABLE edge (id int PRIMARY KEY, n int, a text, b text)`,
			`ALTER TABLE edge ALTER COLUMN a SET STORAGE EXTERNAL, ALTER COLUMN b SET STORAGE EXTERNAL`,
			`CREATE TABLE lowtarget (id int PRIMARY KEY, n int, a text, b text) WITH (toast_tuple_target = 128)`,
			`ALTER TABLE lowtarget ALTER COLUMN a SET STORAGE EXTERNAL, ALTER COLUMN b SET STORAGE EXTERNAL`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url}, ts)
		var stmts []string
		want := map[string][2]string{}
		for i, size := 0, 1700; size <= 2400; i, size = i+1, size+25 {
			a, b := strings.Repeat("a", size/2), strings.Repeat("b", size-size/2)
			for _, table := range []string{"edge", "lowtarget"} {
				stmts = append(stmts, fmt.Sprintf(`INSERT INTO %s VALUES (%d, 0, '%s', '%s')`, table, i, a, b))
				want[fmt.Sprintf("%s/%d", table, i)] = [2]string{`"` + a + `"`, `"` + b + `"`}
			}
		}
		stmts = append(stmts, `UPDATE edge SET n = 1`, `UPDATE lowtarget SET n = 1`)
		execIn(t, url, stmts...)
		recs := ts.records(t, uint64(2*len(want)))
		toasted := 0
		for _, r := range recs[len(want):] {
			f := fields(t, r.After)
			id := fmt.Sprintf("%s/%s", r.Source.Table, f["id"])
			if f["a"] != want[id][0] || f["b"] != want[id][1] {
				t.Errorf("%s: update after image a=%.40s b=%.40s, want the full values", id, f["a"], f["b"])
			}
			if r.Source.Table == "edge" && len(want[id][0])+len(want[id][1]) > 2100 {
				toasted++
			}
		}
		if toasted == 0 {
			t.Fatal("no row large enough to be toasted: the test proves nothing")
		}
	})

	t.Run("TransactionsAndContext", func(t *testing.T) {
		url := newDB(t, srv, "txs", `CREATE TABLE a (id int PRIMARY KEY, v text)`, `CREATE TABLE b (k text PRIMARY KEY, n int)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url}, ts)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tx := func(f func(tx pgx.Tx) error, commit bool) {
			t.Helper()
			txn, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := f(txn); err != nil {
				t.Fatal(err)
			}
			if commit {
				err = txn.Commit(ctx)
			} else {
				err = txn.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		exec := func(txn pgx.Tx, qs ...string) error {
			for _, q := range qs {
				if _, err := txn.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		}
		// Multi-row, multi-table.
		tx(func(txn pgx.Tx) error {
			return exec(txn, `INSERT INTO a VALUES (1,'x'),(2,'y')`, `INSERT INTO b VALUES ('k1', 1)`, `UPDATE a SET v = 'z' WHERE id = 1`)
		}, true)
		// Rolled back.
		tx(func(txn pgx.Tx) error { return exec(txn, `INSERT INTO a VALUES (99,'rolled back')`) }, false)
		// Context before the rows.
		tx(func(txn pgx.Tx) error {
			if err := pgctx.SetContext(ctx, txn, map[string]any{"id": "alice", "app": "crm"}, map[string]any{"type": "ticket", "description": "T-1"}); err != nil {
				return err
			}
			return exec(txn, `INSERT INTO a VALUES (3,'alice')`, `INSERT INTO b VALUES ('k2', 2)`)
		}, true)
		// Context after the rows.
		tx(func(txn pgx.Tx) error {
			if err := exec(txn, `INSERT INTO a VALUES (4,'bob')`, `DELETE FROM b WHERE k = 'k1'`); err != nil {
				return err
			}
			return pgctx.SetContext(ctx, txn, map[string]any{"id": "bob"}, nil)
		}, true)
		recs := ts.records(t, 8)
		if len(recs) != 8 {
			t.Fatalf("got %d records, want 8", len(recs))
		}
		first := recs[:4]
		for i, r := range first {
			p0, _ := parseLSN(first[0].Tx.Position)
			p, _ := parseLSN(r.Tx.Position)
			if r.Tx.ID != first[0].Tx.ID || p < p0 || *r.Tx.Index != int64(i) {
				t.Errorf("record %d tx = %+v, want the first transaction's with index %d", i, r.Tx, i)
			}
		}
		if first[2].Source.Table != "b" || first[0].Source.Table != "a" {
			t.Errorf("tables %s %s", first[0].Source.Table, first[2].Source.Table)
		}
		for _, r := range recs {
			if strings.Contains(string(r.After), "rolled back") {
				t.Errorf("rolled-back row captured: %s", r.After)
			}
		}
		for _, r := range recs[4:6] {
			if string(r.Actor) != `{"app":"crm","id":"alice"}` || string(r.Cause) != `{"description":"T-1","type":"ticket"}` {
				t.Errorf("context before rows: actor %s cause %s", r.Actor, r.Cause)
			}
		}
		for _, r := range recs[6:8] {
			if string(r.Actor) != `{"id":"bob"}` || r.Cause != nil {
				t.Errorf("context after rows: actor %s cause %s", r.Actor, r.Cause)
			}
		}
		if string(recs[7].Before) != `{"k":"k1"}` || recs[7].Op != record.OpDelete {
			t.Errorf("delete before = %s", recs[7].Before)
		}
	})

	t.Run("NoPrimaryKey", func(t *testing.T) {
		url := newDB(t, srv, "nopk", `CREATE TABLE events (a int, b text)`)
		ts := openStore(t, t.TempDir())
		r := start(t, Config{ConnString: url, ReplicaIdentityFull: true}, ts)
		waitSlot(t, url, "stele_nopk")
		execIn(t, url, `INSERT INTO events VALUES (1, 'x')`, `UPDATE events SET b = 'y'`, `DELETE FROM events`)
		recs := ts.records(t, 3)
		wantKeys := []string{`{"a":1,"b":"x"}`, `{"a":1,"b":"y"}`, `{"a":1,"b":"y"}`}
		for i, r := range recs {
			if string(r.Key) != wantKeys[i] {
				t.Errorf("record %d (%s) key = %s, want %s", i, r.Op, r.Key, wantKeys[i])
			}
		}
		if !strings.Contains(r.logs.String(), "has no primary key") {
			t.Errorf("no warning for a table without primary key:\n%s", r.logs)
		}
	})

	t.Run("RestartNoDuplicatesNoLoss", func(t *testing.T) {
		url := newDB(t, srv, "restart", `CREATE TABLE r (id int PRIMARY KEY, v int)`)
		dir := t.TempDir()
		ts := openStore(t, dir)
		cfg := Config{ConnString: url}
		r := startReady(t, cfg, ts)
		// A copy of the slot at its starting point replays everything later.
		execIn(t, url, `SELECT pg_copy_logical_replication_slot('stele_restart', 'replay')`)
		execIn(t, url, `INSERT INTO r SELECT g, 0 FROM generate_series(1, 50) g`)
		ts.records(t, 50)
		if err := r.stop(); err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		// Changes while stopped, then a restart on the same slot and a
		// reopened store: the slot may replay what was already stored.
		execIn(t, url, `UPDATE r SET v = 1 WHERE id <= 25`, `INSERT INTO r SELECT g, 2 FROM generate_series(51, 60) g`)
		ts.close()
		ts = openStore(t, dir)
		r = startReady(t, cfg, ts)
		ts.records(t, 85)
		execIn(t, url, `UPDATE r SET v = 3 WHERE id = 60`) // a marker after everything
		recs := ts.records(t, 86)
		r.stop()
		// Replaying every transaction from the start (same source name,
		// the copied slot) stores nothing new: the ids are the same.
		var walEnd string
		if err := srv.Connect(t).QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&walEnd); err != nil {
			t.Fatal(err)
		}
		counting := &dupCounter{Sink: ts}
		replay := startReady(t, Config{ConnString: url, Slot: "replay"}, counting)
		waitConfirmed(t, url, "replay", walEnd)
		if err := replay.stop(); err != nil {
			t.Fatal(err)
		}
		if ts.Size() != 86 || counting.dups.Load() != 86 {
			t.Fatalf("after a full replay the log holds %d records (want still 86), %d appends were duplicates (want 86)", ts.Size(), counting.dups.Load())
		}
		if len(recs) != 86 {
			t.Fatalf("log holds %d records, want 86 (50 inserts, 25 updates, 10 inserts, 1 update)", len(recs))
		}
		seen := map[string]bool{}
		for _, rec := range recs {
			if seen[rec.ID] {
				t.Fatalf("duplicate id %s", rec.ID)
			}
			seen[rec.ID] = true
		}
		// Ground truth: replaying the log's after images gives the table.
		state := map[string]string{}
		for _, rec := range recs {
			state[string(rec.Key)] = fields(t, rec.After)["v"]
		}
		rows, err := pgxQuery(url, `SELECT id, v FROM r`)
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range rows {
			if state[fmt.Sprintf(`{"id":%d}`, id)] != fmt.Sprint(v) {
				t.Errorf("row %d: table has v=%d, log says %s", id, v, state[fmt.Sprintf(`{"id":%d}`, id)])
			}
		}
	})

	t.Run("LargeTransactionSpills", func(t *testing.T) {
		url := newDB(t, srv, "spill", `CREATE TABLE s (id int PRIMARY KEY, pad text)`)
		ts := openStore(t, t.TempDir())
		spillDir := t.TempDir()
		r := startReady(t, Config{ConnString: url, SpillBytes: 4096, SpillDir: spillDir, BatchSize: 64}, ts)
		execIn(t, url, `BEGIN`+
			`; INSERT INTO s SELECT g, repeat('x', 100) FROM generate_series(1, 500) g`+
			`; SELECT pg_logical_emit_message(true, 'stele', '{"actor":{"id":"batch-job"}}')`+
			`; COMMIT`)
		recs := ts.records(t, 500)
		if len(recs) != 500 {
			t.Fatalf("got %d records, want 500", len(recs))
		}
		for i, rec := range recs {
			if *rec.Tx.Index != int64(i) || rec.Tx.ID != recs[0].Tx.ID || string(rec.Actor) != `{"id":"batch-job"}` ||
				string(rec.Key) != fmt.Sprintf(`{"id":%d}`, i+1) || fields(t, rec.After)["pad"] != `"`+strings.Repeat("x", 100)+`"` {
				t.Fatalf("record %d: key %s tx %+v actor %s", i, rec.Key, rec.Tx, rec.Actor)
			}
		}
		if !strings.Contains(r.logs.String(), "spilling its records to disk") {
			t.Errorf("the transaction was not spilled:\n%s", r.logs)
		}
		if left, _ := filepath.Glob(filepath.Join(spillDir, "*")); len(left) != 0 {
			t.Errorf("spill files left behind: %v", left)
		}
	})

	t.Run("TooLargeValue", func(t *testing.T) {
		url := newDB(t, srv, "huge", `CREATE TABLE h (id int PRIMARY KEY, pad text)`)
		ts := openStore(t, t.TempDir())
		r := startReady(t, Config{ConnString: url, MaxValueBytes: 1000}, ts)
		execIn(t, url, `INSERT INTO h VALUES (1, repeat('z', 5000))`)
		rec := ts.records(t, 1)[0]
		sum := sha256.Sum256([]byte(`"` + strings.Repeat("z", 5000) + `"`))
		if got, want := fields(t, rec.After)["pad"], fmt.Sprintf(`{"$too_large":{"bytes":5002,"sha256":"%x"}}`, sum); got != want {
			t.Errorf("pad = %s, want %s", got, want)
		}
		if !strings.Contains(r.logs.String(), "value too large") {
			t.Errorf("no warning for the capped value")
		}
	})

	t.Run("SlotInUse", func(t *testing.T) {
		url := newDB(t, srv, "busy", `CREATE TABLE x (id int PRIMARY KEY)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url}, ts)
		execIn(t, url, `INSERT INTO x VALUES (1)`)
		ts.records(t, 1)
		other := start(t, Config{ConnString: url, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, openStore(t, t.TempDir()))
		err := other.wait(t)
		if !errors.Is(err, ErrSlotInUse) || !strings.Contains(err.Error(), "stop the other consumer") {
			t.Fatalf("second consumer: err = %v, want ErrSlotInUse naming the fix", err)
		}
	})

	t.Run("SkipSetup", func(t *testing.T) {
		url := newDB(t, srv, "manual", `CREATE TABLE m (id int PRIMARY KEY)`)
		ts := openStore(t, t.TempDir())
		err := start(t, Config{ConnString: url, SkipSetup: true}, ts).wait(t)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "CREATE PUBLICATION stele_manual") {
			t.Fatalf("missing publication with set-up skipped: err = %v", err)
		}
		execIn(t, url, `CREATE PUBLICATION stele_manual FOR ALL TABLES`)
		err = start(t, Config{ConnString: url, SkipSetup: true}, ts).wait(t)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "pg_create_logical_replication_slot('stele_manual'") {
			t.Fatalf("missing slot with set-up skipped: err = %v", err)
		}
		execIn(t, url, `SELECT pg_create_logical_replication_slot('stele_manual', 'pgoutput')`)
		startReady(t, Config{ConnString: url, SkipSetup: true}, ts)
		execIn(t, url, `INSERT INTO m VALUES (7)`)
		if rec := ts.records(t, 1)[0]; string(rec.Key) != `{"id":7}` {
			t.Errorf("key %s", rec.Key)
		}
	})

	t.Run("BadCredentialsAndDatabase", func(t *testing.T) {
		ts := openStore(t, t.TempDir())
		err := start(t, Config{ConnString: srv.PasswordURL("postgres", "wrong-password")}, ts).wait(t)
		if !errors.Is(err, ErrAuth) {
			t.Errorf("wrong password: err = %v, want ErrAuth", err)
		}
		if err != nil && strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("error reveals the password: %v", err)
		}
		err = start(t, Config{ConnString: srv.URL("no_such_db")}, ts).wait(t)
		if !errors.Is(err, ErrNoDatabase) || !strings.Contains(err.Error(), "create the database") {
			t.Errorf("missing database: err = %v, want ErrNoDatabase", err)
		}
	})
}

func TestWALLevelReplica(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{WALLevel: "replica"})
	ts := openStore(t, t.TempDir())
	err := start(t, Config{ConnString: srv.URL("postgres")}, ts).wait(t)
	if !errors.Is(err, ErrWALLevel) || !strings.Contains(err.Error(), "set wal_level = logical in postgresql.conf and restart") {
		t.Fatalf("err = %v, want ErrWALLevel with the fix", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {ConnString: "postgres://u@h/db", Slot: "Bad-Slot"}, {ConnString: "::not a url"}} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	src, err := New(Config{ConnString: "postgres://alice:s3cret@db.example:5433/shop"})
	if err != nil {
		t.Fatal(err)
	}
	c := src.Config()
	if c.Name != "shop" || c.Slot != "stele_shop" || c.Publication != "stele_shop" || strings.Contains(src.Redacted(), "s3cret") {
		t.Errorf("defaults: %+v, redacted %s", c, src.Redacted())
	}
}

// waitSlot waits until the source has created its slot.
func waitSlot(t *testing.T, url, slot string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := pgxQuery(url, fmt.Sprintf(`SELECT 1, 1 FROM pg_replication_slots WHERE slot_name = '%s' AND active`, slot))
		if err == nil && len(rows) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s never became active (%v)", slot, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgxQuery runs a two-int-column query and returns first → second.
func pgxQuery(url, q string) (map[int]int, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for rows.Next() {
		var a, b int
		if err := rows.Scan(&a, &b); err != nil {
			return nil, err
		}
		out[a] = b
	}
	return out, rows.Err()
}

func TestPostgresRestart(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "bounce", `CREATE TABLE r (id int PRIMARY KEY)`)
	ts := openStore(t, t.TempDir())
	r := startReady(t, Config{ConnString: url, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, ts)
	execIn(t, url, `INSERT INTO r SELECT generate_series(1, 10)`)
	ts.records(t, 10)
	srv.Restart(t)
	execIn(t, url, `INSERT INTO r SELECT generate_series(11, 20)`)
	recs := ts.records(t, 20)
	if len(recs) != 20 {
		t.Fatalf("log holds %d records, want 20", len(recs))
	}
	for i, rec := range recs {
		if want := fmt.Sprintf(`{"id":%d}`, i+1); string(rec.Key) != want {
			t.Errorf("record %d key %s, want %s", i, rec.Key, want)
		}
	}
	if !strings.Contains(r.logs.String(), "reconnecting") {
		t.Errorf("no reconnection logged:\n%s", r.logs)
	}
	// The flush position reached the server: the slot's confirmed position
	// gets past everything written so far (an idle source pins no WAL).
	var walEnd string
	conn := srv.Connect(t)
	if err := conn.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&walEnd); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, url, "stele_bounce", walEnd)
}

// waitConfirmed waits until slot's confirmed_flush_lsn reaches lsn.
func waitConfirmed(t *testing.T, url, slot, lsn string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := pgxQuery(url, `SELECT 1, (confirmed_flush_lsn >= '`+lsn+`'::pg_lsn)::int FROM pg_replication_slots WHERE slot_name = '`+slot+`'`)
		if err == nil && rows[1] == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s: confirmed_flush_lsn never reached %s (%v, %v)", slot, lsn, rows, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
