// Package pgtest starts throwaway PostgreSQL 15 servers for tests: initdb and
// pg_ctl from Debian's /usr/lib/postgresql/15/bin, run as the postgres system
// user (initdb refuses root, and CI runs as root), with the data directory and
// the unix socket in a temporary folder, trust authentication for 127.0.0.1
// and one password user (PasswordUser / Password) for authentication tests.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds the PostgreSQL 15 server binaries.
const BinDir = "/usr/lib/postgresql/15/bin"

// The password user every server has.
const (
	PasswordUser = "pwuser"
	Password     = "secret-pw"
)

// Options tune a server.
type Options struct {
	// WALLevel is wal_level (default logical).
	WALLevel string
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	Dir  string // temporary folder: data/, the socket, server.log
	Port int
	t    testing.TB
}

// Start initialises and starts a server, stopped in t.Cleanup. It skips the
// test when PostgreSQL 15 is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (%s/initdb missing): apt-get install postgresql-15 to run this test", BinDir)
	}
	if opts.WALLevel == "" {
		opts.WALLevel = "logical"
	}
	dir, err := os.MkdirTemp("", "stele-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres system user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Dir: dir, Port: freePort(t), t: t}
	data := filepath.Join(dir, "data")
	s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = %s
max_replication_slots = 30
max_wal_senders = 30
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
`, s.Port, dir, opts.WALLevel)
	appendFile(t, filepath.Join(data, "postgresql.conf"), conf)
	hba := fmt.Sprintf(`local all all trust
host all %[1]s 127.0.0.1/32 scram-sha-256
host replication %[1]s 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
`, PasswordUser)
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	s.startServer()
	t.Cleanup(func() {
		_ = s.pgctl("-m", "immediate", "stop")
	})
	s.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION SUPERUSER PASSWORD '%s'", PasswordUser, Password))
	return s
}

func (s *Server) startServer() {
	s.t.Helper()
	if err := s.pgctl("-w", "-t", "60", "-l", filepath.Join(s.Dir, "server.log"), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		s.t.Fatalf("pg_ctl start: %v\n%s", err, log)
	}
}

// Restart stops the server (fast shutdown, closing every connection) and
// starts it again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.pgctl("-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v", err)
	}
	s.startServer()
}

func (s *Server) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(s.Dir, "data")}, args...)
	out, err := command(filepath.Join(BinDir, "pg_ctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	out, err := command(filepath.Join(BinDir, name), args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// command runs a PostgreSQL binary as the postgres user when we are root.
func command(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// URL returns a connection string for database db as the trusted superuser.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// PasswordURL returns a connection string for the password user.
func (s *Server) PasswordURL(db, password string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", PasswordUser, password, s.Port, db)
}

// Connect opens a connection to the postgres database, closed in t.Cleanup.
func (s *Server) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs each statement in the postgres database on a fresh connection.
func (s *Server) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
