// Package pgtest starts throwaway PostgreSQL 15 servers for tests and for
// `stele bench`: initdb and pg_ctl from Debian's /usr/lib/postgresql/15/bin,
// run as the postgres system user (initdb refuses root, and CI runs as
// root), with the data directory and the unix socket in a temporary folder,
// trust authentication for 127.0.0.1 and one password user (PasswordUser /
// Password) for authentication tests.
package pgtest

import (
	"context"
	"errors"
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

// ErrNotInstalled: the PostgreSQL 15 server binaries are missing.
var ErrNotInstalled = errors.New("PostgreSQL 15 is not installed")

// Options tune a server.
type Options struct {
	// WALLevel is wal_level (default logical).
	WALLevel string
	// BinDir holds the server binaries (default BinDir).
	BinDir string
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	Dir    string // temporary folder: data/, the socket, server.log
	Port   int
	binDir string
}

// Start initialises and starts a server, stopped in t.Cleanup. It skips the
// test when PostgreSQL 15 is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(context.Background(), opts)
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("%v: apt-get install postgresql-15 to run this test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// New initialises and starts a server; the caller stops it with Stop. The
// error wraps ErrNotInstalled when the binaries are missing.
func New(ctx context.Context, opts Options) (s *Server, err error) {
	if opts.BinDir == "" {
		opts.BinDir = BinDir
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "initdb")); err != nil {
		return nil, fmt.Errorf("%w (%s/initdb: %w)", ErrNotInstalled, opts.BinDir, err)
	}
	if opts.WALLevel == "" {
		opts.WALLevel = "logical"
	}
	dir, err := os.MkdirTemp("", "stele-pg-")
	if err != nil {
		return nil, err
	}
	s = &Server{Dir: dir, binDir: opts.BinDir}
	started := false
	defer func() {
		if err == nil {
			return
		}
		if started {
			_ = s.pgctl("-m", "immediate", "stop")
		}
		os.RemoveAll(dir)
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres system user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
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
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	hba := fmt.Sprintf(`local all all trust
host all %[1]s 127.0.0.1/32 scram-sha-256
host replication %[1]s 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
`, PasswordUser)
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	started = true
	if err := s.startServer(); err != nil {
		return nil, err
	}
	if err := s.ExecIn(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION SUPERUSER PASSWORD '%s'", PasswordUser, Password)); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop stops the server at once (no shutdown checkpoint: its data is
// thrown away) and removes its folder.
func (s *Server) Stop() error {
	err := s.pgctl("-m", "immediate", "stop")
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

func (s *Server) startServer() error {
	if err := s.pgctl("-w", "-t", "60", "-l", filepath.Join(s.Dir, "server.log"), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %w\n%s", err, log)
	}
	return nil
}

// Restart stops the server (fast shutdown, closing every connection) and
// starts it again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.pgctl("-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v", err)
	}
	if err := s.startServer(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(s.Dir, "data")}, args...)
	out, err := s.Command(context.Background(), "pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func (s *Server) run(name string, args ...string) error {
	out, err := s.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}

// Command runs one of the server's PostgreSQL binaries (pg_recvlogical,
// say) as the postgres user when we are root, as the server itself runs.
func (s *Server) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(s.binDir, name)
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
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
	if err := s.ExecIn(context.Background(), "postgres", stmts...); err != nil {
		t.Fatal(err)
	}
}

// ExecIn runs each statement in database db on a fresh connection,
// stopping at the first error.
func (s *Server) ExecIn(ctx context.Context, db string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		return fmt.Errorf("connect to throwaway PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("exec %q: %w", q, err)
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}
