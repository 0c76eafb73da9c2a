package mysqltest

import (
	"testing"
	"time"
)

func TestStartRestart(t *testing.T) {
	t0 := time.Now()
	s := Start(t, Options{})
	t.Logf("started in %v", time.Since(t0))
	if got := s.Value(t, "", "SELECT @@binlog_format"); got != "ROW" {
		t.Errorf("binlog_format = %s", got)
	}
	if got := s.Value(t, "", "SELECT @@binlog_row_metadata"); got != "FULL" {
		t.Errorf("binlog_row_metadata = %s", got)
	}
	s.CreateDatabase(t, "d", "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
	t0 = time.Now()
	s.Restart(t)
	t.Logf("restarted in %v", time.Since(t0))
	if got := s.Value(t, "d", "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("count after restart = %s", got)
	}
}

func TestNoLogBin(t *testing.T) {
	s := Start(t, Options{NoLogBin: true, BinlogFormat: "MIXED"})
	if got := s.Value(t, "", "SELECT @@log_bin"); got != "0" {
		t.Errorf("log_bin = %s", got)
	}
}
