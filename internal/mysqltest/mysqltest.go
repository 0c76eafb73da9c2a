// Package mysqltest starts throwaway MariaDB servers for tests and for
// `stele bench`: mariadb-install-db into a temporary folder, then mariadbd
// with --no-defaults (the machine's my.cnf and any shared server on 3306 are
// never touched) on a free 127.0.0.1 port, with its unix socket in the same
// folder, the binary log on (ROW format, FULL row image and row metadata by
// default) and a server id. Running as root it passes --user=root, which
// mariadbd accepts explicitly (it refuses root otherwise); as any other user
// the server runs as that user. root@127.0.0.1 has no password; one password
// user (PasswordUser / Password) with replication grants exists for
// authentication and grant tests.
//
// MySQL proper is not installable from Debian's archive, so only MariaDB
// (10.11 on Debian 12) runs here; the helper speaks the MySQL protocol and
// would work with a mysqld that accepts the same options, but nothing tests
// that.
package mysqltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// The password user every server has (REPLICATION SLAVE, REPLICATION
// CLIENT and SELECT on *.*).
const (
	PasswordUser = "pwuser"
	Password     = "secret-pw"
)

// ErrNotInstalled: mariadbd or mariadb-install-db is missing.
var ErrNotInstalled = errors.New("MariaDB server is not installed")

// Options tune a server. The zero value is a server ready for capture.
type Options struct {
	// BinlogFormat is binlog_format (default ROW).
	BinlogFormat string
	// RowImage is binlog_row_image (default FULL).
	RowImage string
	// RowMetadata is binlog_row_metadata (default FULL).
	RowMetadata string
	// NoLogBin starts the server without the binary log.
	NoLogBin bool
	// ServerID is server_id (default 1).
	ServerID int
	// Args are further mariadbd options ("--binlog-annotate-row-events=OFF").
	Args []string
}

// Server is a running throwaway MariaDB server.
type Server struct {
	Dir    string // temporary folder: data/, the socket, error.log
	Port   int
	Socket string
	opts   Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// Binaries returns the paths of mariadbd and mariadb-install-db, or an
// error wrapping ErrNotInstalled.
func Binaries() (server, install string, err error) {
	for _, name := range []string{"mariadbd", "mysqld"} {
		if p, err := lookPath(name); err == nil {
			server = p
			break
		}
	}
	for _, name := range []string{"mariadb-install-db", "mysql_install_db"} {
		if p, err := lookPath(name); err == nil {
			install = p
			break
		}
	}
	if server == "" || install == "" {
		return "", "", fmt.Errorf("%w (need mariadbd and mariadb-install-db on PATH or in /usr/sbin, /usr/bin)", ErrNotInstalled)
	}
	return server, install, nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Start initialises and starts a server, stopped in t.Cleanup. It skips the
// test when MariaDB is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(context.Background(), opts)
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("%v: apt-get install mariadb-server to run this test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// New initialises and starts a server; the caller stops it with Stop.
func New(ctx context.Context, opts Options) (s *Server, err error) {
	_, install, err := Binaries()
	if err != nil {
		return nil, err
	}
	if opts.BinlogFormat == "" {
		opts.BinlogFormat = "ROW"
	}
	if opts.RowImage == "" {
		opts.RowImage = "FULL"
	}
	if opts.RowMetadata == "" {
		opts.RowMetadata = "FULL"
	}
	if opts.ServerID == 0 {
		opts.ServerID = 1
	}
	// A short path: the socket's must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "stele-mdb-")
	if err != nil {
		return nil, err
	}
	s = &Server{Dir: dir, Socket: filepath.Join(dir, "sock"), opts: opts}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	out, err := exec.CommandContext(ctx, install, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if err := s.ExecIn(ctx, "",
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", PasswordUser, Password),
		fmt.Sprintf("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '%s'@'%%'", PasswordUser),
	); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerArgs are the mariadbd options of s.
func (s *Server) ServerArgs() []string {
	o := s.opts
	args := []string{"--no-defaults",
		"--datadir=" + filepath.Join(s.Dir, "data"),
		"--socket=" + s.Socket,
		"--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1",
		"--pid-file=" + filepath.Join(s.Dir, "mariadbd.pid"),
		"--log-error=" + filepath.Join(s.Dir, "error.log"),
		"--server-id=" + strconv.Itoa(o.ServerID),
		"--skip-name-resolve",
		"--innodb-log-file-size=4M",
		"--innodb-buffer-pool-size=32M",
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		"--max-connections=200",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	if !o.NoLogBin {
		args = append(args,
			"--log-bin="+filepath.Join(s.Dir, "data", "binlog"),
			"--binlog-format="+o.BinlogFormat,
			"--binlog-row-image="+o.RowImage,
			"--binlog-row-metadata="+o.RowMetadata,
		)
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return append(args, o.Args...)
}

func (s *Server) start(ctx context.Context) error {
	bin, _, err := Binaries()
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.Dir, "error.log")
	cmd := exec.Command(bin, s.ServerArgs()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	s.mu.Lock()
	s.cmd, s.exit = cmd, exit
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exit:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("mariadbd exited during start-up:\n%s", log)
		default:
		}
		c, err := s.dial("")
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("mariadbd did not accept connections within 60s (%v):\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the server with sig and waits for it to exit.
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
		return nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
		return fmt.Errorf("mariadbd did not stop within 60s of %v; killed", sig)
	}
}

// Stop kills the server (its data is thrown away) and removes its folder.
func (s *Server) Stop() error {
	err := s.stop(syscall.SIGKILL)
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// Restart shuts the server down cleanly (every connection is closed) and
// starts it again on the same port with the same options.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := s.Boot(); err != nil {
		t.Fatal(err)
	}
}

// Shutdown stops the server cleanly, keeping its data; Boot starts it
// again.
func (s *Server) Shutdown() error { return s.stop(syscall.SIGTERM) }

// Boot starts a server stopped by Shutdown.
func (s *Server) Boot() error { return s.start(context.Background()) }

// Addr is the server's TCP address.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns a mysql:// URL for database db (may be empty) as root.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("mysql://root@%s/%s", s.Addr(), db)
}

// PasswordURL returns a URL for the password user with password.
func (s *Server) PasswordURL(db, password string) string {
	u := url.URL{Scheme: "mysql", User: url.UserPassword(PasswordUser, password), Host: s.Addr(), Path: "/" + db}
	return u.String()
}

func (s *Server) dial(db string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &net.Dialer{}
	return client.ConnectWithDialer(ctx, "unix", s.Socket, "root", "", db, d.DialContext, func(c *client.Conn) error {
		return c.SetCharset("utf8mb4")
	})
}

// Connect opens a root connection to database db (may be empty), closed in
// t.Cleanup.
func (s *Server) Connect(t testing.TB, db string) *client.Conn {
	t.Helper()
	c, err := s.dial(db)
	if err != nil {
		t.Fatalf("connect to test MariaDB: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Exec runs each statement on a fresh root connection to database db.
func (s *Server) Exec(t testing.TB, db string, stmts ...string) {
	t.Helper()
	if err := s.ExecIn(context.Background(), db, stmts...); err != nil {
		t.Fatal(err)
	}
}

// ExecIn runs each statement on a fresh root connection to database db
// (may be empty), stopping at the first error.
func (s *Server) ExecIn(ctx context.Context, db string, stmts ...string) error {
	c, err := s.dial(db)
	if err != nil {
		return fmt.Errorf("connect to throwaway MariaDB: %w", err)
	}
	defer c.Close()
	for _, q := range stmts {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("exec %q: %w", q, err)
		}
	}
	return nil
}

// Query runs q in database db and returns its rows, each column as its
// text (nil for NULL), by column name.
func (s *Server) Query(t testing.TB, db, q string) []map[string]*string {
	t.Helper()
	rows, err := s.QueryIn(db, q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// QueryIn is Query returning its error.
func (s *Server) QueryIn(db, q string) ([]map[string]*string, error) {
	c, err := s.dial(db)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := c.Execute(q)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	defer res.Close()
	return Rows(res), nil
}

// Rows turns a text-protocol result into maps of column name to text.
func Rows(res *gomysql.Result) []map[string]*string {
	if res == nil || res.Resultset == nil {
		return nil
	}
	out := make([]map[string]*string, 0, len(res.Values))
	for _, row := range res.Values {
		m := make(map[string]*string, len(row))
		for i, v := range row {
			name := string(res.Fields[i].Name)
			if v.Type == gomysql.FieldValueTypeNull {
				m[name] = nil
				continue
			}
			str := string(v.AsString())
			if v.Type == gomysql.FieldValueTypeUnsigned {
				str = strconv.FormatUint(v.AsUint64(), 10)
			} else if v.Type == gomysql.FieldValueTypeSigned {
				str = strconv.FormatInt(v.AsInt64(), 10)
			} else if v.Type == gomysql.FieldValueTypeFloat {
				str = strconv.FormatFloat(v.AsFloat64(), 'g', -1, 64)
			}
			m[name] = &str
		}
		out = append(out, m)
	}
	return out
}

// Value returns the single value of a one-row, one-column query.
func (s *Server) Value(t testing.TB, db, q string) string {
	t.Helper()
	rows := s.Query(t, db, q)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("query %q: got %d rows, want one row of one column", q, len(rows))
	}
	for _, v := range rows[0] {
		if v == nil {
			return "NULL"
		}
		return *v
	}
	return ""
}

// CreateDatabase creates database name with the given statements run in it.
func (s *Server) CreateDatabase(t testing.TB, name string, stmts ...string) {
	t.Helper()
	s.Exec(t, "", "CREATE DATABASE `"+strings.ReplaceAll(name, "`", "``")+"`")
	s.Exec(t, name, stmts...)
}

// ErrorLog returns the server's error log.
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	return string(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PurgeBinlogs starts a new binlog file and purges every older one,
// retrying while the server still needs them (MariaDB keeps a binlog until
// its checkpoint passes). It returns the file left.
func (s *Server) PurgeBinlogs(t testing.TB) string {
	t.Helper()
	s.Exec(t, "", "FLUSH BINARY LOGS")
	files := s.Query(t, "", "SHOW BINARY LOGS")
	newest := *files[len(files)-1]["Log_name"]
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.Exec(t, "", "PURGE BINARY LOGS TO '"+newest+"'")
		if len(s.Query(t, "", "SHOW BINARY LOGS")) == 1 {
			return newest
		}
		if time.Now().After(deadline) {
			t.Fatalf("binlogs before %s still there after 30s", newest)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
