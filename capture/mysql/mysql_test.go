package mysql

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-mysql-org/go-mysql/driver"

	"github.com/stele/stele/capture/mysqlctx"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/record"
)

// Only MariaDB runs here (Debian ships no MySQL server): these tests start
// their own mariadbd with mysqltest; the MySQL flavor's paths are covered by
// the unit tests on recorded events in events_test.go.

func TestCapture(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})

	t.Run("OpsAndTypes", func(t *testing.T) {
		url := newDB(t, srv, "ops", `CREATE TABLE typed (
			id INT UNSIGNED PRIMARY KEY,
			ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
			i INT, bi BIGINT, biu BIGINT UNSIGNED,
			de DECIMAL(30,10), f FLOAT, d DOUBLE, bt BIT(10), bt64 BIT(64),
			dt DATE, tm TIME(2), dtm DATETIME(6), ts TIMESTAMP(3) NULL, y YEAR,
			c CHAR(5), vc VARCHAR(20), tx TEXT, l1 VARCHAR(10) CHARACTER SET latin1, u2 VARCHAR(10) CHARACTER SET ucs2,
			bn BINARY(4), vb VARBINARY(10), bl BLOB,
			e ENUM('small','large'), st SET('x','y','z'), j JSON, g GEOMETRY, p POINT,
			nul VARCHAR(5))`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{URL: url}, ts)
		srv.Exec(t, "ops",
			`SET time_zone = '+02:00'`,
			`INSERT INTO typed VALUES (1,
				-128, 255, -32768, 65535, -8388608, 16777215,
				-2147483648, -9223372036854775808, 18446744073709551615,
				-12345678901234567890.0123456789, 1.1, 2.718281828459045, b'1010000001', b'1111111111111111111111111111111111111111111111111111111111111111',
				'2026-01-02', '-838:59:59.99', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05.120', 2026,
				'ab', 'héllo "q"', 'text ✓', 'café', 'ñ',
				'ab', x'00ff10', 'blob\0',
				'large', 'x,z', '{"b": 2, "a": [1, "x"]}', ST_GeomFromText('LINESTRING(0 0, 1 1.5)', 4326), POINT(1, 2),
				NULL)`,
			`UPDATE typed SET vc = 'bye', i = 7 WHERE id = 1`,
			`DELETE FROM typed WHERE id = 1`,
			`TRUNCATE typed`,
			`ALTER TABLE typed ADD COLUMN extra INT`)
		recs := ts.records(t, 5)
		if len(recs) != 5 {
			t.Fatalf("got %d records, want 5:\n%s", len(recs), ops(recs))
		}
		gotOps := []record.Op{recs[0].Op, recs[1].Op, recs[2].Op, recs[3].Op, recs[4].Op}
		if !slices.Equal(gotOps, []record.Op{record.OpInsert, record.OpUpdate, record.OpDelete, record.OpTruncate, record.OpDDL}) {
			t.Fatalf("ops:\n%s", ops(recs))
		}
		ins := recs[0]
		want := map[string]string{
			"id": "1", "ti": "-128", "tiu": "255", "si": "-32768", "siu": "65535", "mi": "-8388608", "miu": "16777215",
			"i": "-2147483648", "bi": "-9223372036854775808", "biu": "18446744073709551615",
			"de": "-12345678901234567890.0123456789", "f": "1.1", "d": "2.718281828459045", "bt": "641", "bt64": "18446744073709551615",
			"dt": `"2026-01-02"`, "tm": `"-838:59:59.99"`, "dtm": `"2026-01-02T03:04:05.123456Z"`, "ts": `"2026-01-02T01:04:05.12Z"`, "y": "2026",
			"c": `"ab"`, "vc": `"héllo \"q\""`, "tx": `"text ✓"`, "l1": `"café"`, "u2": `"ñ"`,
			"bn": `"` + base64.StdEncoding.EncodeToString([]byte("ab\x00\x00")) + `"`,
			"vb": `"` + base64.StdEncoding.EncodeToString([]byte{0, 0xff, 0x10}) + `"`,
			"bl": `"` + base64.StdEncoding.EncodeToString([]byte("blob\x00")) + `"`,
			"e":  `"large"`, "st": `["x","z"]`, "j": `{"a":[1,"x"],"b":2}`,
			"g":   `{"coordinates":[[0,0],[1,1.5]],"srid":4326,"type":"LineString"}`,
			"p":   `{"coordinates":[1,2],"type":"Point"}`,
			"nul": "null",
		}
		got := fields(t, ins.After)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("after.%s = %s, want %s", k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("after has %d columns, want %d: %s", len(got), len(want), ins.After)
		}
		if string(ins.Key) != `{"id":1}` || ins.Before != nil {
			t.Errorf("insert key %s before %s", ins.Key, ins.Before)
		}
		if ins.Source != (record.Source{Name: "ops", Kind: "mysql", Database: "ops", Table: "typed"}) {
			t.Errorf("source = %+v", ins.Source)
		}
		if string(ins.Actor) != `{"id":"unknown","type":"unknown"}` {
			t.Errorf("actor = %s", ins.Actor)
		}
		if ins.Tx == nil || !strings.HasPrefix(ins.Tx.ID, "0-1-") || ins.Tx.Position != ins.Tx.ID || *ins.Tx.Index != 0 || !ins.Tx.CommitTime.Equal(ins.OccurredAt) {
			t.Errorf("tx = %+v", ins.Tx)
		}
		if time.Since(ins.OccurredAt) > time.Minute || ins.OccurredAt.After(time.Now().Add(time.Second)) {
			t.Errorf("occurred_at = %v", ins.OccurredAt)
		}
		if ins.ID != record.DeriveID(ins) {
			t.Errorf("id %s is not derived from the position", ins.ID)
		}
		if ins.Schema == nil || ins.Schema.Subject != "ops.ops.typed" || ins.Schema.Version != 1 {
			t.Errorf("schema = %+v", ins.Schema)
		}
		if len(ins.Changed) != len(want) {
			t.Errorf("insert changed = %v", ins.Changed)
		}
		upd := recs[1]
		if b, a := fields(t, upd.Before), fields(t, upd.After); b["vc"] != want["vc"] || a["vc"] != `"bye"` || a["i"] != "7" || a["j"] != want["j"] {
			t.Errorf("update before %s after %s", upd.Before, upd.After)
		}
		if !slices.Equal(upd.Changed, []string{"i", "vc"}) {
			t.Errorf("update changed = %v", upd.Changed)
		}
		if nextIndex(upd.Tx.ID) != nextIndex(ins.Tx.ID)+1 {
			t.Errorf("update tx %s right after insert tx %s", upd.Tx.ID, ins.Tx.ID)
		}
		del := recs[2]
		if fields(t, del.Before)["vc"] != `"bye"` || del.After != nil || string(del.Key) != `{"id":1}` {
			t.Errorf("delete before %s after %s key %s", del.Before, del.After, del.Key)
		}
		if tr := recs[3]; string(tr.Key) != `{"table":"ops.typed"}` || tr.Source.Table != "typed" {
			t.Errorf("truncate key %s source %+v", tr.Key, tr.Source)
		}
		ddl := recs[4]
		if string(ddl.Key) != `{"object":"ops.typed"}` || fields(t, ddl.After)["statement"] != `"ALTER TABLE typed ADD COLUMN extra INT"` {
			t.Errorf("ddl key %s after %s", ddl.Key, ddl.After)
		}
	})

	t.Run("TypesMatchSQL", func(t *testing.T) {
		// Every value as the binlog decodes it equals the value SQL reads
		// back, row by row, for values drawn across each type's range.
		url := newDB(t, srv, "sqltypes", `CREATE TABLE v (
			id INT PRIMARY KEY, i8 TINYINT, u64 BIGINT UNSIGNED, de DECIMAL(12,4), f FLOAT, d DOUBLE,
			dt DATE, tm TIME(6), dtm DATETIME(3), ts TIMESTAMP(6) NULL, y YEAR, vc VARCHAR(30), l1 TEXT CHARACTER SET latin1,
			vb VARBINARY(8), e ENUM('a','b','c'), s SET('p','q','r'), bt BIT(8), j JSON)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{URL: url}, ts)
		rows := []string{
			`(1, 0, 0, 0, 0, 0, '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901, '', '', '', 'a', '', b'0', 'null')`,
			`(2, 127, 9223372036854775808, 12345678.1234, -3.4e38, 1.7976931348623157e308, '9999-12-31', '838:59:59', '9999-12-31 23:59:59.999', '2038-01-19 03:14:07.999999', 2155, 'ünïcødé 😀', 'Ærø', x'0001', 'c', 'p,q,r', b'11111111', '[1, 2.5, "x", {"k": null}]')`,
			`(3, -1, 1, -0.0001, 1e-30, -2.2250738585072014e-308, '2000-02-29', '-00:00:01.5', '2000-02-29 12:30:00.5', '2000-02-29 12:30:00', 2000, 'tab\there', '½', x'ff', 'b', 'q', b'10', '{"a": {"b": [true, false]}}')`,
			`(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		}
		srv.Exec(t, "sqltypes", "SET time_zone = '+00:00'", "INSERT INTO v VALUES "+strings.Join(rows, ","))
		recs := ts.records(t, uint64(len(rows)))
		byID := map[string]map[string]string{}
		for _, r := range recs {
			f := fields(t, r.After)
			byID[f["id"]] = f
		}
		sqlRows := srv.Query(t, "sqltypes", `SELECT id, i8, u64, de, f, d, dt, tm, dtm, ts, y, vc, l1, HEX(vb) AS vb, e, s, bt+0 AS bt, j FROM v`)
		for _, row := range sqlRows {
			id := *row["id"]
			got := byID[id]
			for col, v := range row {
				checkAgainstSQL(t, id, col, got[col], v)
			}
		}
	})
}

// nextIndex is the sequence number of a MariaDB GTID.
func nextIndex(gtid string) int {
	n, _ := strconv.Atoi(gtid[strings.LastIndexByte(gtid, '-')+1:])
	return n
}

// checkAgainstSQL compares a captured JSON value with the text SQL reads
// back for the same column.
func checkAgainstSQL(t *testing.T, id, col, got string, sql *string) {
	t.Helper()
	if sql == nil {
		if got != "null" {
			t.Errorf("row %s: %s = %s, SQL says NULL", id, col, got)
		}
		return
	}
	want := *sql
	str := func() string {
		var s string
		if err := json.Unmarshal([]byte(got), &s); err != nil {
			t.Errorf("row %s: %s = %s, want a string", id, col, got)
		}
		return s
	}
	switch col {
	case "id", "i8", "u64", "de", "y", "bt":
		if col == "de" {
			// DECIMAL keeps its scale exactly.
			if got != want {
				t.Errorf("row %s: %s = %s, SQL %s", id, col, got, want)
			}
			return
		}
		if got != want {
			t.Errorf("row %s: %s = %s, SQL %s", id, col, got, want)
		}
	case "f", "d":
		g, err1 := strconv.ParseFloat(got, 64)
		w, err2 := strconv.ParseFloat(want, 64)
		bits := 64
		if col == "f" {
			bits = 32
			g, w = float64(float32(g)), float64(float32(w))
		}
		if err1 != nil || err2 != nil || (g != w && math.Abs(g-w) > math.Abs(w)*1e-6) {
			t.Errorf("row %s: %s = %s, SQL %s (float%d)", id, col, got, want, bits)
		}
	case "dtm", "ts":
		tg, err1 := time.Parse(time.RFC3339Nano, str())
		tw, err2 := time.ParseInLocation("2006-01-02 15:04:05.999999", want, time.UTC)
		if err1 != nil || err2 != nil || !tg.Equal(tw) {
			t.Errorf("row %s: %s = %s, SQL %s", id, col, got, want)
		}
	case "vb":
		b, err := base64.StdEncoding.DecodeString(str())
		if err != nil || strings.ToUpper(hexString(b)) != want {
			t.Errorf("row %s: %s = %s, SQL hex %s", id, col, got, want)
		}
	case "s":
		var labels []string
		if err := json.Unmarshal([]byte(got), &labels); err != nil || strings.Join(labels, ",") != want {
			t.Errorf("row %s: %s = %s, SQL %s", id, col, got, want)
		}
	case "j":
		canon, err := record.Canonical([]byte(want))
		if err != nil || string(canon) != got {
			t.Errorf("row %s: %s = %s, SQL %s", id, col, got, want)
		}
	default:
		if s := str(); s != want {
			t.Errorf("row %s: %s = %q, SQL %q", id, col, s, want)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestTransactions(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})

	t.Run("GroupingAndActors", func(t *testing.T) {
		url := newDB(t, srv, "shop",
			`CREATE TABLE orders (id INT PRIMARY KEY, total INT)`,
			`CREATE TABLE items (order_id INT, sku VARCHAR(10), PRIMARY KEY (order_id, sku))`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{URL: url, CreateContextTable: true}, ts)
		db := openSQL(t, srv, "shop")
		ctx := context.Background()

		// A multi-statement, multi-table transaction with a context row
		// written in the middle and a commented statement.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, tx, `INSERT INTO orders VALUES (1, 10)`)
		if err := mysqlctx.SetContext(ctx, tx, map[string]any{"id": "bob", "app": "crm"}, map[string]any{"type": "ticket", "id": "T-1"}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, tx, `INSERT INTO items VALUES (1, 'a'), (1, 'b')`)
		comment, _ := mysqlctx.Comment(map[string]any{"id": "alice"}, nil)
		mustExec(t, tx, comment+`UPDATE orders SET total = 20 WHERE id = 1`)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		// Rolled back: absent.
		tx, _ = db.BeginTx(ctx, nil)
		mustExec(t, tx, `INSERT INTO orders VALUES (2, 99)`)
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		// Autocommit with a comment only.
		mustExec(t, db, `/* stele {"actor":{"id":"carol"},"cause":{"type":"cron"}} */ DELETE FROM items WHERE sku = 'b'`)
		// Context of an earlier transaction on the same connection does
		// not leak into the next.
		mustExec(t, db, `INSERT INTO orders VALUES (3, 30)`)

		recs := ts.settle(t)
		if len(recs) != 6 {
			t.Fatalf("got %d records, want 6:\n%s", len(recs), ops(recs))
		}
		first := recs[0].Tx
		for i, r := range recs[:4] {
			if r.Tx.ID != first.ID || r.Tx.Position != first.ID || *r.Tx.Index != int64(i) || !r.Tx.CommitTime.Equal(*first.CommitTime) {
				t.Errorf("record %d tx = %+v, want id %s index %d", i, r.Tx, first.ID, i)
			}
		}
		for i, want := range []string{`{"app":"crm","id":"bob"}`, `{"app":"crm","id":"bob"}`, `{"app":"crm","id":"bob"}`, `{"id":"alice"}`} {
			if string(recs[i].Actor) != want {
				t.Errorf("record %d (%s %s) actor = %s, want %s", i, recs[i].Op, recs[i].Key, recs[i].Actor, want)
			}
		}
		if string(recs[0].Cause) != `{"id":"T-1","type":"ticket"}` || string(recs[3].Cause) != `{"id":"T-1","type":"ticket"}` {
			t.Errorf("cause = %s / %s", recs[0].Cause, recs[3].Cause)
		}
		if recs[1].Source.Table != "items" || string(recs[1].Key) != `{"order_id":1,"sku":"a"}` {
			t.Errorf("record 1 = %s %s", recs[1].Source.Table, recs[1].Key)
		}
		del := recs[4]
		if del.Op != record.OpDelete || string(del.Actor) != `{"id":"carol"}` || string(del.Cause) != `{"type":"cron"}` || del.Tx.ID == first.ID {
			t.Errorf("delete: op %s actor %s cause %s tx %+v", del.Op, del.Actor, del.Cause, del.Tx)
		}
		last := recs[5]
		if string(last.Key) != `{"id":3}` || string(last.Actor) != `{"id":"unknown","type":"unknown"}` || last.Cause != nil {
			t.Errorf("last: key %s actor %s cause %s", last.Key, last.Actor, last.Cause)
		}
		for _, r := range recs {
			if r.Source.Table == "stele_context" || strings.Contains(string(r.Key), "99") {
				t.Errorf("unexpected record %s %s %s", r.Op, r.Source.Table, r.Key)
			}
		}
	})

	t.Run("AlterWhileStopped", func(t *testing.T) {
		url := newDB(t, srv, "alter", `CREATE TABLE p (id INT PRIMARY KEY, a INT, b INT, c INT)`)
		ts := openStore(t, t.TempDir())
		state := t.TempDir()
		r := startReady(t, Config{URL: url, StateDir: state}, ts)
		srv.Exec(t, "alter", `INSERT INTO p VALUES (1, 1, 1, 1)`)
		ts.records(t, 1)
		r.stop()
		// While Stele is stopped: old-shape rows, then add, drop and
		// rename columns, then new-shape rows.
		srv.Exec(t, "alter",
			`INSERT INTO p VALUES (2, 2, 2, 2)`,
			`UPDATE p SET a = 20 WHERE id = 2`,
			`ALTER TABLE p ADD COLUMN d VARCHAR(5) DEFAULT 'x'`,
			`ALTER TABLE p DROP COLUMN b`,
			`ALTER TABLE p RENAME COLUMN c TO c2`,
			`INSERT INTO p VALUES (3, 3, 3, 'y')`,
			`UPDATE p SET a = 30 WHERE id = 2`)
		startReady(t, Config{URL: url, StateDir: state}, ts)
		recs := ts.settle(t)
		var got []string
		for _, r := range recs {
			switch r.Op {
			case record.OpDDL:
				if strings.Contains(string(r.Key), "relation") {
					got = append(got, "relation v"+fields(t, r.After)["version"])
				} else {
					got = append(got, "ddl")
				}
			default:
				img := r.After
				names := slices.Sorted(maps.Keys(fields(t, img)))
				got = append(got, fmt.Sprintf("%s %s v%d %s", r.Op, r.Key, r.Schema.Version, strings.Join(names, ",")))
			}
		}
		want := []string{
			`insert {"id":1} v1 a,b,c,id`,
			`insert {"id":2} v1 a,b,c,id`,
			`update {"id":2} v1 a,b,c,id`,
			"ddl", "ddl", "ddl",
			`insert {"id":3} v2 a,c2,d,id`,
			"relation v2",
			`update {"id":2} v2 a,c2,d,id`,
		}
		if !slices.Equal(got, want) {
			t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		upd := recs[len(recs)-1]
		if b := fields(t, upd.Before); b["c2"] != "2" || b["a"] != "20" {
			t.Errorf("new-shape update before = %s", upd.Before)
		}
		if b := fields(t, recs[2].Before); b["b"] != "2" || b["c"] != "2" {
			t.Errorf("old-shape update before = %s", recs[2].Before)
		}
		// The versions survive in the state directory.
		h, err := openHistory(state)
		if err != nil || len(h.Tables["alter.p"]) != 2 {
			t.Errorf("schema history: %v %+v", err, h)
		}
	})

	t.Run("RestartNoDuplicatesNoLoss", func(t *testing.T) {
		url := newDB(t, srv, "restart", `CREATE TABLE n (id INT PRIMARY KEY, v INT)`)
		store := openStore(t, t.TempDir())
		ts := &dupCounter{Sink: store}
		state := t.TempDir()
		cfg := Config{URL: url, StateDir: state}
		r := startReady(t, cfg, ts)
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				n++
				srv.Exec(t, "restart", fmt.Sprintf("INSERT INTO n VALUES (%d, %d)", n, n))
			}
		}()
		for range 3 {
			time.Sleep(150 * time.Millisecond)
			r.stop()
			r = startReady(t, cfg, ts)
		}
		close(stop)
		n := <-done
		store.records(t, uint64(n))
		time.Sleep(200 * time.Millisecond) // any duplicate would land now
		recs := store.records(t, store.Size())
		seen := map[string]int{}
		for _, rec := range recs {
			seen[string(rec.Key)]++
		}
		for i := 1; i <= n; i++ {
			if c := seen[fmt.Sprintf(`{"id":%d}`, i)]; c != 1 {
				t.Errorf("row %d recorded %d times", i, c)
			}
		}
		if len(recs) != n {
			t.Errorf("log holds %d records, want %d", len(recs), n)
		}
		t.Logf("%d transactions, %d duplicates refused across 3 restarts", n, ts.dups.Load())
	})
}

func openSQL(t *testing.T, srv *mysqltest.Server, db string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", "root@"+srv.Addr()+"/"+db)
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	return d
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func mustExec(t *testing.T, e execer, q string, args ...any) {
	t.Helper()
	if _, err := e.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
