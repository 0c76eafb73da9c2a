package mysql

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/internal/mysqltest"
)

// TestNativeRowsMatchGoMySQL reads real MariaDB rows events of every type
// nativeRows reads, with edge values, NULLs, updates and deletes, and
// checks that each value's JSON is byte for byte what appendValue writes
// from go-mysql's decoding of the same event; the events with a value it
// leaves to go-mysql (zero dates) must say so rather than guess.
func TestNativeRowsMatchGoMySQL(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	srv.CreateDatabase(t, "n", `CREATE TABLE v (
		id BIGINT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
		mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bu BIGINT UNSIGNED,
		f FLOAT, d DOUBLE, d1 DECIMAL(12,2), d2 DECIMAL(30,10), d3 DECIMAL(5,5), d4 DECIMAL(20,0), d5 DECIMAL(65,30),
		dt DATE, t0 DATETIME, t3 DATETIME(3), t6 DATETIME(6), ts0 TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, ts6 TIMESTAMP(6) NULL,
		vc VARCHAR(40), vl VARCHAR(300), c CHAR(5), cl CHAR(200) CHARACTER SET utf8mb4, b BINARY(4), vb VARBINARY(20),
		tx TEXT, mt MEDIUMTEXT, bl BLOB, l1 VARCHAR(20) CHARACTER SET latin1,
		e ENUM('a','b','c'), s SET('x','y','z'), y YEAR, bt BIT(10), b1 BIT(1), b64 BIT(64))`)
	from := srv.Value(t, "", "SELECT @@gtid_binlog_pos")
	srv.Exec(t, "n",
		`SET time_zone = '+00:00'`,
		`INSERT INTO v VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, 18446744073709551615,
			3.25, -1.5e300, -1234567890.12, 12345678901234567890.0123456789, -0.00042, 99999999999999999999, -12345678901234567890123456789012345.123456789012345678901234567891,
			'1000-01-01', '1970-01-01 00:00:00', '2038-01-19 03:14:07.999', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01', '2024-02-29 12:00:00.5', '2038-01-19 03:14:07.000001',
			'héllo "q" \\n', REPEAT('x', 300), 'ab', REPEAT('é', 200), 'a', 0x00FF10, 'text ✓', REPEAT('m', 70000), 0xDEADBEEF, 0x636166E9,
			'c', 'x,z', 2155, b'1000000001', b'1', 0xFFFFFFFFFFFFFFFF)`,
		`INSERT INTO v (id) VALUES (2)`,
		`INSERT INTO v VALUES (3, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 0,
			-0, 0, 0, -0.5, 0.00001, -1, 0,
			'2026-12-03', '2026-12-03 15:16:17', '2026-12-03 15:16:17.100', '2026-12-03 15:16:17.000100', '2026-12-03 15:16:17', '2026-12-03 15:16:17.01', '2026-12-03 15:16:17.123456',
			'', '', '', '', '', '', '', '', '', '',
			'a', '', 1901, 0, 0, 0)`,
		`UPDATE v SET vc = 'changed', d1 = d1 + 1, t6 = NULL, y = 0, e = 'b', s = 'x,y,z' WHERE id IN (1, 3)`,
		`DELETE FROM v WHERE id = 2`,
		`SET sql_mode = ''`,
		`INSERT INTO v (id, dt, t0, y) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', 0)`,
	)
	end := srv.Value(t, "", "SELECT @@gtid_binlog_pos")

	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{ServerID: 9002, Flavor: "mariadb", Host: "127.0.0.1", Port: uint16(srv.Port), User: "root",
		DisableRetrySync: true, Logger: slog.New(slog.DiscardHandler), ParseTime: true, TimestampStringLocation: time.UTC, RenderJSONAsMySQLText: true,
		RowsEventDecodeFunc: deferRows})
	defer syncer.Close()
	gs, err := gomysql.ParseMariadbGTIDSet(from)
	if err != nil {
		t.Fatal(err)
	}
	st, err := syncer.StartSyncGTID(gs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tbl *table
	values, fallbacks := 0, 0
	for {
		ev, err := st.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if x, ok := ev.Event.(*replication.XIDEvent); ok && x.GSet != nil && x.GSet.String() == end {
			break
		}
		switch e := ev.Event.(type) {
		case *replication.TableMapEvent:
			if string(e.Table) != "v" {
				continue
			}
			cols, pk, err := buildColumns(e, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tbl, err = newTable("n", "v", cols, pk); err != nil {
				t.Fatal(err)
			}
			for i := range cols {
				if !nativeColumn(&cols[i]) {
					t.Fatalf("column %s (%s) is not read natively", cols[i].name, typeName(&cols[i]))
				}
			}
		case *replication.RowsEvent:
			if tbl == nil || string(e.Table.Table) != "v" {
				continue
			}
			u, ok := undecodedOf(e)
			if !ok {
				t.Fatal("the rows event was decoded by the syncer")
			}
			if !nativeEvent(ev.Header.EventType) {
				t.Fatalf("rows event type %v is not read natively", ev.Header.EventType)
			}
			var imgs rowImages
			nerr := imgs.decode(tbl, e, u.data, u.pos, e.Type() == replication.EnumRowsEventTypeUpdate)
			if err := decodeRows(e); err != nil {
				t.Fatal(err)
			}
			if errors.Is(nerr, errNotNative) {
				fallbacks++
				continue
			}
			if nerr != nil {
				t.Fatal(nerr)
			}
			n := len(tbl.cols)
			if len(imgs.ends) != len(e.Rows)*n {
				t.Fatalf("%d values decoded natively, go-mysql decoded %d images of %d", len(imgs.ends), len(e.Rows), n)
			}
			startAt := 0
			for k, row := range e.Rows {
				for i, v := range row {
					end := imgs.ends[k*n+i]
					want, err := appendValue(nil, &tbl.cols[i], v)
					if err != nil {
						t.Fatal(err)
					}
					if got := string(imgs.buf[startAt:end]); got != string(want) {
						t.Errorf("image %d column %s (%s): native %s, go-mysql's %s", k, tbl.cols[i].name, typeName(&tbl.cols[i]), got, want)
					}
					startAt = end
					values++
				}
			}
		}
	}
	// 3 inserted rows, 2 updated (before and after), 1 deleted.
	if want := 8 * 40; values != want {
		t.Errorf("compared %d values, want %d", values, want)
	}
	if fallbacks != 1 {
		t.Errorf("%d events left to go-mysql, want 1 (the zero dates)", fallbacks)
	}
}
