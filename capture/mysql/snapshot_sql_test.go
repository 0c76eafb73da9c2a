package mysql

import (
	"errors"
	"slices"
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// scriptedSQL answers statements from a script and records what was
// issued: no MySQL server runs here, so the MySQL flavor's snapshot
// position is tested on the SQL it sends.
type scriptedSQL struct {
	issued  []string
	answers map[string]*gomysql.Result
	fail    map[string]error
}

func (s *scriptedSQL) Execute(q string, _ ...any) (*gomysql.Result, error) {
	s.issued = append(s.issued, q)
	if err := s.fail[q]; err != nil {
		return nil, err
	}
	if r := s.answers[q]; r != nil {
		return r, nil
	}
	return &gomysql.Result{}, nil
}

func rows(t *testing.T, names []string, vals ...[]any) *gomysql.Result {
	t.Helper()
	// Built by hand, not with gomysql.BuildSimpleTextResultset: that takes
	// a Resultset from go-mysql's pool and expects its Fields to be nil,
	// but one the code under test closed goes back to the pool with its
	// Fields still set, and the build then fails now and then with "row
	// types aren't consistent".
	rs := &gomysql.Resultset{FieldNames: make(map[string]int, len(names))}
	for i, n := range names {
		rs.Fields = append(rs.Fields, &gomysql.Field{Name: []byte(n), Type: gomysql.MYSQL_TYPE_VAR_STRING})
		rs.FieldNames[n] = i
	}
	for _, row := range vals {
		if len(row) != len(names) {
			t.Fatalf("row %v has %d values for %d columns", row, len(row), len(names))
		}
		out := make([]gomysql.FieldValue, len(row))
		for j, v := range row {
			switch v := v.(type) {
			case string:
				out[j] = gomysql.NewFieldValue(gomysql.FieldValueTypeString, 0, []byte(v))
			case uint64:
				out[j] = gomysql.NewFieldValue(gomysql.FieldValueTypeUnsigned, v, nil)
			case nil:
				out[j] = gomysql.NewFieldValue(gomysql.FieldValueTypeNull, 0, nil)
			default:
				t.Fatalf("rows: no case for %T", v)
			}
		}
		rs.Values = append(rs.Values, out)
	}
	return &gomysql.Result{Resultset: rs}
}

func TestSnapshotPositionSQL(t *testing.T) {
	src, err := New(Config{URL: "mysql://stele@db.example:3306/shop", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	master := func(t *testing.T) *gomysql.Result {
		return rows(t, []string{"File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set"},
			[]any{"binlog.000007", uint64(1234), "", "", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77"})
	}

	t.Run("MySQLReadLock", func(t *testing.T) {
		db := &scriptedSQL{answers: map[string]*gomysql.Result{
			"SHOW STATUS LIKE 'binlog_snapshot_%'": rows(t, []string{"Variable_name", "Value"}),
			"SHOW MASTER STATUS":                   master(t),
			"SELECT @@GLOBAL.gtid_executed":        rows(t, []string{"v"}, []any{"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77"}),
		}}
		p, err := src.snapshotPosition(db, &serverInfo{flavor: FlavorMySQL, gtidMode: true})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"START TRANSACTION WITH CONSISTENT SNAPSHOT",
			"SHOW STATUS LIKE 'binlog_snapshot_%'",
			"ROLLBACK",
			"SET SESSION lock_wait_timeout = 10",
			"FLUSH TABLES WITH READ LOCK",
			"START TRANSACTION WITH CONSISTENT SNAPSHOT",
			"SHOW MASTER STATUS",
			"SELECT @@GLOBAL.gtid_executed",
			"UNLOCK TABLES",
		}
		if !slices.Equal(db.issued, want) {
			t.Errorf("issued:\n%s\nwant:\n%s", strings.Join(db.issued, "\n"), strings.Join(want, "\n"))
		}
		if p != (binlogPos{GTIDMode: true, GTID: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77", File: "binlog.000007", Offset: 1234}) {
			t.Errorf("position %+v", p)
		}
	})

	t.Run("MySQLWithoutGTIDs", func(t *testing.T) {
		db := &scriptedSQL{answers: map[string]*gomysql.Result{
			"SHOW STATUS LIKE 'binlog_snapshot_%'": rows(t, []string{"Variable_name", "Value"}),
			"SHOW MASTER STATUS":                   master(t),
		}}
		p, err := src.snapshotPosition(db, &serverInfo{flavor: FlavorMySQL})
		if err != nil {
			t.Fatal(err)
		}
		if p != (binlogPos{File: "binlog.000007", Offset: 1234}) || slices.Contains(db.issued, "SELECT @@GLOBAL.gtid_executed") {
			t.Errorf("position %+v, issued %q", p, db.issued)
		}
		if db.issued[len(db.issued)-1] != "UNLOCK TABLES" {
			t.Errorf("the read lock is not released last: %q", db.issued)
		}
	})

	t.Run("PerconaNoLock", func(t *testing.T) {
		db := &scriptedSQL{answers: map[string]*gomysql.Result{
			"SHOW STATUS LIKE 'binlog_snapshot_%'": rows(t, []string{"Variable_name", "Value"},
				[]any{"Binlog_snapshot_file", "binlog.000003"}, []any{"Binlog_snapshot_position", "99"}),
		}}
		p, err := src.snapshotPosition(db, &serverInfo{flavor: FlavorMySQL})
		if err != nil {
			t.Fatal(err)
		}
		if p != (binlogPos{File: "binlog.000003", Offset: 99}) || slices.Contains(db.issued, "FLUSH TABLES WITH READ LOCK") {
			t.Errorf("position %+v, issued %q", p, db.issued)
		}
	})

	t.Run("NoReloadGrant", func(t *testing.T) {
		denied := &gomysql.MyError{Code: gomysql.ER_SPECIFIC_ACCESS_DENIED_ERROR, Message: "Access denied; you need (at least one of) the RELOAD privilege(s) for this operation"}
		db := &scriptedSQL{
			answers: map[string]*gomysql.Result{"SHOW STATUS LIKE 'binlog_snapshot_%'": rows(t, []string{"Variable_name", "Value"})},
			fail:    map[string]error{"FLUSH TABLES WITH READ LOCK": denied},
		}
		_, err := src.snapshotPosition(db, &serverInfo{flavor: FlavorMySQL})
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "GRANT RELOAD ON *.* TO 'stele'") {
			t.Errorf("err = %v, want ErrPermission naming the RELOAD grant", err)
		}
		var me *gomysql.MyError
		if !errors.As(err, &me) {
			t.Errorf("the server's error is not wrapped: %v", err)
		}
	})

	t.Run("MariaDB", func(t *testing.T) {
		db := &scriptedSQL{answers: map[string]*gomysql.Result{
			"SHOW STATUS LIKE 'binlog_snapshot_%'": rows(t, []string{"Variable_name", "Value"},
				[]any{"binlog_snapshot_file", "mariadb-bin.000002"}, []any{"binlog_snapshot_position", "4711"}),
			"SELECT BINLOG_GTID_POS(?, ?)": rows(t, []string{"p"}, []any{"0-1-42"}),
		}}
		p, err := src.snapshotPosition(db, &serverInfo{flavor: FlavorMariaDB})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"START TRANSACTION WITH CONSISTENT SNAPSHOT", "SHOW STATUS LIKE 'binlog_snapshot_%'", "SELECT BINLOG_GTID_POS(?, ?)"}
		if !slices.Equal(db.issued, want) {
			t.Errorf("issued %q, want %q (no lock on MariaDB)", db.issued, want)
		}
		if p != (binlogPos{GTIDMode: true, GTID: "0-1-42", File: "mariadb-bin.000002", Offset: 4711}) {
			t.Errorf("position %+v", p)
		}
	})
}

func TestKeysetAfter(t *testing.T) {
	got := keysetAfter([]string{"`a`", "`b`", "`c`"}, []string{"1", "'x'", "2"})
	want := "((`a` > 1) OR (`a` = 1 AND `b` > 'x') OR (`a` = 1 AND `b` = 'x' AND `c` > 2))"
	if got != want {
		t.Errorf("keysetAfter = %s\nwant %s", got, want)
	}
}
