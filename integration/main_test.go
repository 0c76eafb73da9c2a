package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// steleBin is the binary under test, built once by TestMain.
var steleBin string

// Deadlines against hangs only: no test asserts how fast anything is.
const (
	startDeadline = 90 * time.Second // process up and listening, /healthz settled
	stopDeadline  = 60 * time.Second // SIGTERM to exit
	cliDeadline   = 2 * time.Minute  // one stele CLI run
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		fmt.Fprintf(os.Stderr, "integration: cannot find the module root (go env GOMOD = %q): %v\n", gomod, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "stele-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	steleBin = filepath.Join(tmp, "stele")
	args := []string{"build", "-o", steleBin}
	if os.Getenv("STELE_INTEGRATION_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/stele")...)
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// lockedBuffer collects a child process's output across restarts.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// server is one `stele serve` process on a data directory, restartable on
// the same directory. Its methods must be called from the test goroutine,
// except URL, which any goroutine may call.
type server struct {
	t *testing.T
	*proc
}

// proc is the state shared by every view of a server.
type proc struct {
	dir      string
	extra    []string
	addrFile string
	out      *lockedBuffer

	mu   sync.Mutex
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
	err  error         // its exit error, valid after done
	runs int
}

// newServer prepares a server on dir without starting it. The process's
// output is logged if the test fails, and a process still running when the
// test ends is killed.
func newServer(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, proc: &proc{dir: dir, extra: extra, addrFile: filepath.Join(t.TempDir(), "addr"), out: &lockedBuffer{}}}
	t.Cleanup(func() {
		s.mu.Lock()
		done := s.done
		cmd := s.cmd
		s.mu.Unlock()
		if done != nil {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
				<-done
			}
		}
		out := s.out.String()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("the server reported a data race")
		}
		if t.Failed() {
			t.Logf("output of stele serve --data %s (%d runs):\n%s", dir, s.runs, out)
		}
	})
	return s
}

// startServer starts a server on dir and waits until /healthz says 200.
func startServer(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	s := newServer(t, dir, extra...)
	s.start()
	s.waitHealthy()
	return s
}

// with returns a view of the server that reports failures to t (a subtest).
func (s *server) with(t *testing.T) *server { return &server{t: t, proc: s.proc} }

// URL is the base URL of the running process.
func (s *server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// start launches the process and waits until it has written its address.
func (s *server) start() {
	s.t.Helper()
	if err := os.Remove(s.addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Fatal(err)
	}
	s.runs++
	fmt.Fprintf(s.out, "=== start #%d at %s\n", s.runs, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"serve", "--data", s.dir, "--addr", "127.0.0.1:0", "--addr-file", s.addrFile}, s.extra...)
	cmd := exec.Command(steleBin, args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start stele serve: %v", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.url = cmd, done, ""
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(startDeadline)
	for {
		b, err := os.ReadFile(s.addrFile)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			s.mu.Lock()
			s.url = "http://" + strings.TrimSpace(string(b))
			s.mu.Unlock()
			return
		}
		select {
		case <-done:
			s.t.Fatalf("stele serve exited before listening: %v", s.exitErr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("stele serve did not write its address within %v", startDeadline)
		}
	}
}

func (s *server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// health is the body of /healthz.
type health struct {
	Status string `json:"status"`
	Detail string `json:"detail"`
	Size   uint64 `json:"size"`
}

// healthz asks /healthz once.
func (s *server) healthz() (int, health, error) {
	var h health
	resp, err := httpClient.Get(s.URL() + "/healthz")
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return resp.StatusCode, h, fmt.Errorf("healthz body %q: %w", b, err)
	}
	return resp.StatusCode, h, nil
}

// waitHealthy polls /healthz until 200; any status but "verifying" before
// that fails the test.
func (s *server) waitHealthy() health {
	s.t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		code, h, err := s.healthz()
		switch {
		case err != nil:
		case code == http.StatusOK && h.Status == "ok":
			return h
		case code == http.StatusServiceUnavailable && h.Status == "verifying":
		default:
			s.t.Fatalf("/healthz: %d %+v", code, h)
		}
		select {
		case <-s.done:
			s.t.Fatalf("stele serve exited while starting: %v", s.exitErr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("/healthz not 200 within %v (last: %d %+v %v)", startDeadline, code, h, err)
		}
	}
}

// size is the log's size as /healthz reports it.
func (s *server) size() uint64 {
	s.t.Helper()
	code, h, err := s.healthz()
	if err != nil || code != http.StatusOK {
		s.t.Fatalf("/healthz: %d %+v %v", code, h, err)
	}
	return h.Size
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(stopDeadline):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Fatalf("stele serve did not exit within %v of SIGTERM", stopDeadline)
	}
	if err := s.exitErr(); err != nil {
		s.t.Fatalf("stele serve exited with %v after SIGTERM", err)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("SIGKILL: %v", err)
	}
	<-s.done
}

// restart stops the server gracefully and starts it again on the same
// directory, waiting until it is healthy.
func (s *server) restart() {
	s.t.Helper()
	s.stop()
	s.start()
	s.waitHealthy()
}

// httpClient has a timeout only so that a hung server fails the test
// instead of hanging it.
var httpClient = &http.Client{Timeout: 2 * time.Minute}

// response is one HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// do sends one request; body may be nil. A transport error fails the test.
func (s *server) do(method, path, ctype string, body []byte) response {
	s.t.Helper()
	r, err := request(s.URL(), method, path, ctype, body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func request(base, method, path, ctype string, body []byte) (response, error) {
	return requestWith(base, method, path, ctype, nil, body)
}

// requestWith is request with extra headers.
func requestWith(base, method, path, ctype string, header http.Header, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// get fetches path and expects want.
func (s *server) get(path string, want int) []byte {
	s.t.Helper()
	r := s.do(http.MethodGet, path, "", nil)
	if r.status != want {
		s.t.Fatalf("GET %s: got %s, want status %d", path, r, want)
	}
	return r.body
}

// getJSON fetches path, expects 200 and decodes the body into v.
func (s *server) getJSON(path string, v any) {
	s.t.Helper()
	b := s.get(path, http.StatusOK)
	if err := json.Unmarshal(b, v); err != nil {
		s.t.Fatalf("GET %s: decode %q: %v", path, b, err)
	}
}

// appended is one entry of a POST /v1/records answer.
type appended struct {
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// post sends records and expects 201.
func (s *server) post(ctype string, body []byte) []appended {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/records", ctype, body)
	if r.status != http.StatusCreated {
		s.t.Fatalf("POST /v1/records: got %s, want 201", r)
	}
	var out struct {
		Records []appended `json:"records"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatalf("POST /v1/records: decode %q: %v", r.body, err)
	}
	return out.Records
}

// verifierKey fetches the checkpoint verifier key.
func (s *server) verifierKey() string {
	s.t.Helper()
	return strings.TrimSpace(string(s.get("/v1/log/key", http.StatusOK)))
}

// checkpoint fetches and verifies the latest checkpoint.
func (s *server) checkpoint(vkey string) checkpoint {
	s.t.Helper()
	cp, err := openCheckpoint(s.get("/v1/checkpoint", http.StatusOK), vkey)
	if err != nil {
		s.t.Fatal(err)
	}
	return cp
}

// stele runs the CLI and returns its combined output and exit code.
func stele(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, steleBin, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("stele %s: did not finish within %v\n%s", strings.Join(args, " "), cliDeadline, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("stele %s: %v", strings.Join(args, " "), err)
		return "", -1
	}
}

// mustStele runs the CLI and expects exit status 0.
func mustStele(t *testing.T, args ...string) string {
	t.Helper()
	out, code := stele(t, args...)
	if code != 0 {
		t.Fatalf("stele %s: exit status %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}
