package mysql

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/internal/mysqltest"
)

// TestSetupChecks: each misconfiguration stops the source with one error
// that names the fix; warnings are logged and capture goes on.
func TestSetupChecks(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "chk", `CREATE TABLE t (id INT PRIMARY KEY)`)
	ts := openStore(t, t.TempDir())
	fails := func(t *testing.T, cfg Config, sentinel error, fix ...string) {
		t.Helper()
		r := start(t, cfg, ts)
		err := r.wait(t)
		if !errors.Is(err, sentinel) {
			t.Fatalf("Run = %v, want %v", err, sentinel)
		}
		t.Log(err)
		for _, f := range fix {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error %q does not say %q", err, f)
			}
		}
		if st := r.src.Stats(); st.State != capture.StateFailed || st.LastError == "" {
			t.Errorf("stats after a permanent failure: %+v", st)
		}
	}
	global := func(t *testing.T, set, reset string) {
		t.Helper()
		srv.Exec(t, "", "SET GLOBAL "+set)
		t.Cleanup(func() { srv.Exec(t, "", "SET GLOBAL "+reset) })
	}

	t.Run("BinlogFormatMixed", func(t *testing.T) {
		global(t, "binlog_format = 'MIXED'", "binlog_format = 'ROW'")
		fails(t, Config{URL: url}, ErrSetup, "binlog_format is MIXED", "SET GLOBAL binlog_format = 'ROW'", "binlog_format = ROW to")
	})
	t.Run("BinlogFormatStatement", func(t *testing.T) {
		global(t, "binlog_format = 'STATEMENT'", "binlog_format = 'ROW'")
		fails(t, Config{URL: url}, ErrSetup, "binlog_format is STATEMENT", "SET GLOBAL binlog_format = 'ROW'")
	})
	t.Run("RowMetadataMinimal", func(t *testing.T) {
		global(t, "binlog_row_metadata = 'MINIMAL'", "binlog_row_metadata = 'FULL'")
		fails(t, Config{URL: url}, ErrSetup, "binlog_row_metadata is MINIMAL", "SET GLOBAL binlog_row_metadata = 'FULL'")
	})
	t.Run("Retention", func(t *testing.T) {
		global(t, "binlog_expire_logs_seconds = 3600", "binlog_expire_logs_seconds = 0")
		fails(t, Config{URL: url}, ErrSetup, "purges binlogs after 1h0m0s", "SET GLOBAL binlog_expire_logs_seconds = 86400", "lower max_lag")
		// A max_lag within the retention passes.
		r := startReady(t, Config{URL: url, MaxLag: 30 * time.Minute}, ts)
		r.stop()
	})
	t.Run("ServerIDCollision", func(t *testing.T) {
		fails(t, Config{URL: url + "?server_id=1"}, ErrConfig, "server id 1 is the server's own server_id", "server_id=n")
	})
	t.Run("MissingGrants", func(t *testing.T) {
		srv.Exec(t, "", "CREATE USER 'weak'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON *.* TO 'weak'@'%'")
		fails(t, Config{URL: strings.Replace(url, "root@", "weak:pw@", 1)}, ErrPermission,
			"lacks REPLICATION SLAVE and REPLICATION CLIENT", "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'weak'@'%'")
	})
	t.Run("GrantedUserCaptures", func(t *testing.T) {
		r := startReady(t, Config{URL: srv.PasswordURL("chk", mysqltest.Password)}, ts)
		r.stop()
	})
	t.Run("BadPassword", func(t *testing.T) {
		fails(t, Config{URL: srv.PasswordURL("chk", "wrong-pw-xyz")}, ErrAuth, "check the user and password")
		r := start(t, Config{URL: srv.PasswordURL("chk", "wrong-pw-xyz")}, ts)
		r.wait(t)
		if strings.Contains(r.src.Stats().LastError, "wrong-pw-xyz") || strings.Contains(r.logs.String(), "wrong-pw-xyz") {
			t.Errorf("the password leaks into stats or logs")
		}
	})
	t.Run("NoDatabase", func(t *testing.T) {
		fails(t, Config{URL: srv.URL("missing")}, ErrNoDatabase, "create the database or fix its name")
	})
	t.Run("RowImageMinimalWarns", func(t *testing.T) {
		global(t, "binlog_row_image = 'MINIMAL'", "binlog_row_image = 'FULL'")
		r := startReady(t, Config{URL: url}, ts)
		if !strings.Contains(r.logs.String(), "SET GLOBAL binlog_row_image = 'FULL'") {
			t.Errorf("no row image warning:\n%s", r.logs)
		}
		r.stop()
	})
	t.Run("FlavorMismatch", func(t *testing.T) {
		fails(t, Config{URL: url, Flavor: FlavorMySQL}, ErrConfig, "the server is mariadb", "flavor: mariadb")
	})
}

func TestLogBinOff(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{NoLogBin: true})
	url := newDB(t, srv, "nolog")
	r := start(t, Config{URL: url}, openStore(t, t.TempDir()))
	err := r.wait(t)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "the binary log is off") || !strings.Contains(err.Error(), "add log_bin = binlog, binlog_format = ROW and server_id = 1") {
		t.Fatalf("Run = %v", err)
	}
}

// TestBinlogPurged: a stored position the server no longer holds is one
// clear error naming the gap and how to start again, never a silent skip.
func TestBinlogPurged(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "purge", `CREATE TABLE t (id INT PRIMARY KEY)`)
	ts := openStore(t, t.TempDir())
	state := t.TempDir()
	r := startReady(t, Config{URL: url, StateDir: state}, ts)
	srv.Exec(t, "purge", "INSERT INTO t VALUES (1)")
	ts.records(t, 1)
	r.stop()
	srv.Exec(t, "purge", "INSERT INTO t VALUES (2)", "FLUSH BINARY LOGS", "INSERT INTO t VALUES (3)")
	newest := srv.PurgeBinlogs(t)
	r = start(t, Config{URL: url, StateDir: state}, ts)
	err := r.wait(t)
	if !errors.Is(err, ErrBinlogPurged) {
		t.Fatalf("Run = %v, want ErrBinlogPurged", err)
	}
	t.Log(err)
	for _, want := range []string{"oldest binlog is now " + newest, "purged before this source read them", filepath.Join(state, "positions"), "snapshot: initial"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := ts.Size(); got != 1 {
		t.Errorf("log holds %d records after the refused start, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(state, "positions")); err != nil {
		t.Errorf("positions: %v", err)
	}
	// The advice works: without the positions and with snapshot: initial
	// the source records the rows as they are now, then streams.
	if err := os.RemoveAll(filepath.Join(state, "positions")); err != nil {
		t.Fatal(err)
	}
	startReady(t, Config{URL: url, StateDir: state, Snapshot: SnapshotInitial}, ts)
	srv.Exec(t, "purge", "INSERT INTO t VALUES (4)")
	recs := ts.records(t, 1+3+1+1)
	var got []string
	for _, r := range recs[1:] {
		got = append(got, string(r.Op)+" "+string(r.Key))
	}
	if want := []string{`snapshot {"id":1}`, `snapshot {"id":2}`, `snapshot {"id":3}`, `snapshot {"$snapshot":"complete"}`, `insert {"id":4}`}; !slices.Equal(got, want) {
		t.Errorf("after the resnapshot: %q, want %q", got, want)
	}
}
