package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
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

// snapTypedTable has a column of every kind the decoder knows; its rows
// are read by the snapshot and then updated, so each row's snapshot image
// can be compared with the binlog's before image.
const snapTypedTable = `CREATE TABLE typed (
	id INT UNSIGNED PRIMARY KEY,
	ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
	i INT, bi BIGINT, biu BIGINT UNSIGNED,
	de DECIMAL(30,10), de0 DECIMAL(5,0), f FLOAT, d DOUBLE, bt BIT(10), bt64 BIT(64),
	dt DATE, tm TIME(2), tm0 TIME, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(3) NULL, y YEAR,
	c CHAR(5), c300 CHAR(100) CHARACTER SET utf8mb4, vc VARCHAR(20), tx TEXT, mt MEDIUMTEXT, l1 VARCHAR(10) CHARACTER SET latin1,
	u2 VARCHAR(10) CHARACTER SET ucs2,
	bn BINARY(4), vb VARBINARY(10), bl BLOB, lb LONGBLOB,
	e ENUM('small','large'), st SET('x','y','z'), j JSON, g GEOMETRY, p POINT,
	nul VARCHAR(5), upd INT)`

var snapTypedRows = []string{
	`(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, -9223372036854775808, 18446744073709551615,
	-12345678901234567890.0123456789, 99999, 1.1, 2.718281828459045, b'1010000001', b'1111111111111111111111111111111111111111111111111111111111111111',
	'2026-01-02', '-838:59:59.99', '12:00:00', '2026-01-02 03:04:05.123456', '1999-12-31 23:59:59', '2026-01-02 03:04:05.120', 2026,
	'ab', 'wide ✓ chars', 'héllo "q"', 'text ✓', 'medium', 'café', 'ñ',
	'ab', x'00ff10', 'blob\0', x'00',
	'large', 'x,z', '{"b": 2, "a": [1, "x"]}', ST_GeomFromText('LINESTRING(0 0, 1 1.5)', 4326), POINT(1, 2),
	NULL, 0)`,
	`(2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 3.4e38, -1e-300, b'0', 0,
	'1000-01-01', '00:00:00.01', '-00:00:01', '1000-01-01 00:00:00.000001', '9999-12-31 23:59:59', '1970-01-01 00:00:01.000', 1901,
	'', '', '', '', '', 'Ÿ€', '',
	'', '', '', '',
	'small', '', '[]', POINT(0, 0), POINT(-1.5, 2.25),
	'x', 0)`,
	`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, 0)`,
}

func TestSnapshot(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})

	t.Run("ImagesMatchBinlog", func(t *testing.T) {
		stmts := []string{snapTypedTable, `INSERT INTO typed VALUES ` + snapTypedRows[0] + `, ` + snapTypedRows[1] + `, ` + snapTypedRows[2],
			// A composite key of text and a number, read in chunks of 3.
			`CREATE TABLE ck (name VARCHAR(10) CHARACTER SET latin1, n INT, v INT, PRIMARY KEY (name, n))`,
			`CREATE TABLE nokey (a INT, b VARCHAR(5))`,
			`INSERT INTO nokey VALUES (2, 'y'), (1, 'x')`,
		}
		for i := range 10 {
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO ck VALUES ('k%d', %d, 0), ('ké%d', 1, 0)`, i%3, i, i))
		}
		url := newDB(t, srv, "snaptypes", stmts...)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{URL: url, Snapshot: SnapshotInitial, BatchSize: 3}, ts)
		srv.Exec(t, "snaptypes", `UPDATE typed SET upd = 1`, `UPDATE ck SET v = 1`)
		const snapRows = 3 + 20 + 2
		recs := ts.records(t, snapRows+1+3+20)
		if len(recs) != snapRows+1+3+20 {
			t.Fatalf("got %d records:\n%s", len(recs), ops(recs))
		}
		snaps := map[string]*record.Record{}
		for i, r := range recs[:snapRows] {
			if r.Op != record.OpSnapshot || r.Before != nil || r.Tx == nil || r.Tx.Index == nil || *r.Tx.Index != int64(i) || r.ID != record.DeriveID(r) {
				t.Fatalf("record %d: %s tx %+v\n%s", i, r.Op, r.Tx, ops(recs))
			}
			if r.Tx.Position != recs[0].Tx.Position || string(r.Actor) != `{"id":"unknown","type":"unknown"}` {
				t.Errorf("record %d: tx %+v actor %s", i, r.Tx, r.Actor)
			}
			k := r.Source.Table + string(r.Key)
			if snaps[k] != nil {
				t.Errorf("%s snapshotted twice", k)
			}
			snaps[k] = r
		}
		if m := recs[snapRows]; m.Op != record.OpSnapshot || m.Source.Table != "$snapshot" || string(m.Key) != `{"$snapshot":"complete"}` {
			t.Fatalf("marker: %s %s %s", m.Op, m.Source.Table, m.Key)
		}
		if got := fields(t, recs[snapRows].After)["rows"]; got != strconv.Itoa(snapRows) {
			t.Errorf("marker rows = %s", got)
		}
		for _, u := range recs[snapRows+1:] {
			if u.Op != record.OpUpdate {
				t.Fatalf("after the marker: %s %s %s\n%s", u.Op, u.Source.Table, u.Key, ops(recs))
			}
			s := snaps[u.Source.Table+string(u.Key)]
			if s == nil {
				t.Fatalf("update of %s %s has no snapshot record", u.Source.Table, u.Key)
			}
			if string(s.After) != string(u.Before) {
				sf, bf := fields(t, s.After), fields(t, u.Before)
				for k, v := range bf {
					if sf[k] != v {
						t.Errorf("%s %s column %s: snapshot %s, binlog before %s", u.Source.Table, u.Key, k, sf[k], v)
					}
				}
				if len(sf) != len(bf) {
					t.Errorf("%s %s: snapshot image %s, binlog before %s", u.Source.Table, u.Key, s.After, u.Before)
				}
			}
			if s.Schema == nil || u.Schema == nil || *s.Schema != *u.Schema {
				t.Errorf("%s: snapshot schema %+v, binlog %+v", u.Source.Table, s.Schema, u.Schema)
			}
			if len(s.Changed) != len(fields(t, s.After)) {
				t.Errorf("%s %s: changed %v", u.Source.Table, u.Key, s.Changed)
			}
		}
		if k := snaps[`nokey{"a":1,"b":"x"}`]; k == nil {
			t.Errorf("table without a key: snapshot records %v", ops(recs[:snapRows]))
		}
	})

	t.Run("ConcurrentWrites", func(t *testing.T) {
		const initial = 3000
		url := newDB(t, srv, "snapconc", `CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL)`,
			`INSERT INTO c SELECT seq, 0 FROM seq_1_to_3000`)
		ts := openStore(t, t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		var writes atomic.Int64
		var werr error
		wg.Go(func() {
			werr = churn(openSQL(t, srv, "snapconc"), initial+1, func() bool { return ctx.Err() != nil }, &writes)
		})
		for writes.Load() < 20 {
			if werr != nil {
				t.Fatal(werr)
			}
			time.Sleep(time.Millisecond)
		}
		startReady(t, Config{URL: url, Snapshot: SnapshotInitial, BatchSize: 100}, ts)
		for n := writes.Load(); writes.Load() < n+200 && werr == nil; {
			time.Sleep(time.Millisecond)
		}
		cancel()
		wg.Wait()
		if werr != nil {
			t.Fatalf("writer: %v", werr)
		}
		checkAgainstTable(t, srv, "snapconc", ts.settle(t))
	})

	t.Run("ResumeAfterFailedAppend", func(t *testing.T) {
		url := newDB(t, srv, "snapresume", `CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL)`,
			`INSERT INTO c SELECT seq, 0 FROM seq_1_to_500`)
		ts := openStore(t, t.TempDir())
		sink := &failingSink{dupCounter: dupCounter{Sink: ts}, failAt: 3}
		state := t.TempDir()
		r := startReady(t, Config{URL: url, Snapshot: SnapshotInitial, BatchSize: 50, StateDir: state}, sink)
		srv.Exec(t, "snapresume", `UPDATE c SET v = 1 WHERE id = 7`)
		recs := checkAgainstTable(t, srv, "snapresume", ts.settle(t))
		if sink.dups.Load() == 0 {
			t.Errorf("no duplicates reported: the snapshot was not resumed from its file")
		}
		if len(recs) != 500+1+1 {
			t.Errorf("%d records, want 502", len(recs))
		}
		if _, err := os.Stat(filepath.Join(state, snapshotDirName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("snapshot files left behind: %v", err)
		}
		// A finished snapshot is never redone.
		r.stop()
		n := ts.Size()
		r2 := startReady(t, Config{URL: url, Snapshot: SnapshotInitial, BatchSize: 50, StateDir: state}, ts)
		srv.Exec(t, "snapresume", `UPDATE c SET v = 2 WHERE id = 8`)
		if recs := ts.records(t, n+1); len(recs) != int(n)+1 || recs[n].Op != record.OpUpdate {
			t.Fatalf("after a restart: %d records, want %d, last %s", len(recs), n+1, recs[len(recs)-1].Op)
		}
		r2.stop()
	})
}

// TestSnapshotDamagedFile: a snapshot file that cannot be read back
// stops the source with an error saying how to redo the snapshot, rather
// than reconnecting to read the same bytes again.
func TestSnapshotDamagedFile(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "snapdamaged", `CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL)`)
	state := t.TempDir()
	dir := filepath.Join(state, snapshotDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapshotRowsFile), []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapshotDoneFile), []byte(`{"gtid_mode":true,"gtid":"0-1-1","file":"binlog.000001","offset":4,"rows":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := openStore(t, t.TempDir())
	r := start(t, Config{URL: url, Snapshot: SnapshotInitial, StateDir: state}, ts)
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "remove "+dir+" to redo the snapshot") {
		t.Fatalf("Run = %v, want a permanent error naming %s", err, dir)
	}
	if ts.Size() != 0 {
		t.Errorf("%d records appended from a damaged snapshot", ts.Size())
	}
}

// failingSink fails its failAt-th append once, as a crash between two
// appends of the snapshot would stop it.
type failingSink struct {
	dupCounter
	failAt int
	calls  atomic.Int64
}

func (f *failingSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	if f.calls.Add(1) == int64(f.failAt) {
		return nil, errors.New("injected append failure")
	}
	return f.dupCounter.Append(ctx, recs)
}

var _ capture.Sink = (*failingSink)(nil)

// checkAgainstTable folds the records of table c (id, v) into rows and
// checks them against the table: every row snapshotted or inserted exactly
// once, each update applied once (v counts them), nothing else.
func checkAgainstTable(t *testing.T, srv *mysqltest.Server, db string, recs []*record.Record) []*record.Record {
	t.Helper()
	truth := map[int]int{}
	for _, row := range srv.Query(t, db, `SELECT id, v FROM c`) {
		id, _ := strconv.Atoi(*row["id"])
		v, _ := strconv.Atoi(*row["v"])
		truth[id] = v
	}
	got := map[int]int{}
	born := map[int]int{}
	ids := map[string]bool{}
	markers := 0
	for _, r := range recs {
		if ids[r.ID] {
			t.Fatalf("id %s stored twice", r.ID)
		}
		ids[r.ID] = true
		if r.Source.Table == "$snapshot" {
			markers++
			continue
		}
		var id int
		if _, err := fmt.Sscanf(string(r.Key), `{"id":%d}`, &id); err != nil {
			t.Fatalf("key %s: %v", r.Key, err)
		}
		v, _ := strconv.Atoi(fields(t, r.After)["v"])
		switch r.Op {
		case record.OpSnapshot, record.OpInsert:
			born[id]++
			got[id] = v
		case record.OpUpdate:
			if _, ok := got[id]; !ok {
				t.Errorf("row %d updated before it was snapshotted or inserted", id)
			}
			if b, _ := strconv.Atoi(fields(t, r.Before)["v"]); b != got[id] {
				t.Errorf("row %d: update from v=%d, the log had v=%d (a double or a gap)", id, b, got[id])
			}
			got[id] = v
		default:
			t.Fatalf("unexpected op %s", r.Op)
		}
	}
	if markers != 1 {
		t.Errorf("%d snapshot markers, want 1", markers)
	}
	for id, v := range truth {
		if born[id] != 1 || got[id] != v {
			t.Errorf("row %d: snapshotted or inserted %d times, v=%d in the log, want once and %d", id, born[id], got[id], v)
		}
	}
	if len(got) != len(truth) {
		t.Errorf("log has %d rows, table %d", len(got), len(truth))
	}
	return recs
}

// churn inserts rows into table c from id next on, and increments v of
// random earlier rows, one statement at a time, until stop says so;
// writes counts the statements.
func churn(db *sql.DB, next int, stop func() bool, writes *atomic.Int64) error {
	rnd := rand.New(rand.NewPCG(1, uint64(next)))
	for !stop() {
		var err error
		if rnd.IntN(2) == 0 {
			_, err = db.Exec(`INSERT INTO c (id, v) VALUES (?, 0)`, next)
			next++
		} else {
			_, err = db.Exec(`UPDATE c SET v = v + 1 WHERE id = ?`, 1+rnd.IntN(next-1))
		}
		if err != nil {
			return err
		}
		writes.Add(1)
	}
	return nil
}
