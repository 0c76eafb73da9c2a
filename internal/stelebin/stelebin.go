// Package stelebin runs the real stele binary for crash tests: it builds
// cmd/stele, starts `stele serve` on a free loopback port with its output
// in a log file (shown when the test fails), kills it with SIGKILL and
// starts it again on the same data directory, and reads its latest
// checkpoint. Test support only: import it from test files.
package stelebin

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Build compiles cmd/stele into a temporary directory of t and returns the
// binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stele")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stele/stele/cmd/stele").CombinedOutput(); err != nil {
		t.Fatalf("build stele: %v\n%s", err, out)
	}
	return bin
}

// Server is one data directory served by successive stele processes.
type Server struct {
	t        testing.TB
	bin      string
	Data     string
	AddrFile string
	// Args are appended to `serve --data … --addr 127.0.0.1:0 --addr-file …`.
	Args []string
	// Env, when set, is added to the process environment.
	Env []string

	log     *os.File
	logPath string
	cmd     *exec.Cmd
}

// New prepares a server of bin in a temporary directory of t; its log is
// shown if t fails.
func New(t testing.TB, bin string, args ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "stele.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, Data: filepath.Join(dir, "data"), AddrFile: filepath.Join(dir, "addr"), Args: args, log: log, logPath: logPath}
	t.Cleanup(func() {
		s.stop()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("stele logs (%s):\n%s", logPath, logTail(b))
		}
	})
	return s
}

// Start starts a stele process on the data directory.
func (s *Server) Start() {
	s.t.Helper()
	os.Remove(s.AddrFile)
	args := append([]string{"serve", "--data", s.Data, "--addr", "127.0.0.1:0", "--addr-file", s.AddrFile}, s.Args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
}

// Kill9 kills the running process with SIGKILL and waits for it.
func (s *Server) Kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart kills the running process with SIGKILL and starts another.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill9()
	s.Start()
}

// Stop interrupts the running process (a clean shutdown) and returns how
// it exited, so the test can open the data directory itself.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	cmd := s.cmd
	s.cmd = nil
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		return err
	}
	return cmd.Wait()
}

func (s *Server) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Logs returns what every process of s has written so far.
func (s *Server) Logs() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// CheckpointSize reads the tree size of the running server's latest
// signed checkpoint (0 while it is not serving yet).
func (s *Server) CheckpointSize() uint64 {
	addr, err := os.ReadFile(s.AddrFile)
	if err != nil {
		return 0
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/v1/checkpoint")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<16))
	sc.Scan() // origin
	sc.Scan()
	n, _ := strconv.ParseUint(sc.Text(), 10, 64)
	return n
}

// Signal sends sig to the running process (SIGSTOP and SIGCONT pause and
// resume it, for the cluster's stale-writer tests).
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Running reports whether a process of s is running (not yet killed or
// stopped by the test).
func (s *Server) Running() bool { return s.cmd != nil }

// Addr is the running server's listen address, or "" while it has not
// written it yet.
func (s *Server) Addr() string {
	b, err := os.ReadFile(s.AddrFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// logTail is what a failed test shows of a server's log: its last
// logTailLines lines that are not DEBUG. A CI report keeps only the head
// and the end of a long output, and a crash test runs several servers whose
// per-request DEBUG lines would push the one that failed out of it.
func logTail(b []byte) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, " level=DEBUG ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > logTailLines {
		keep = append([]string{"[… " + strconv.Itoa(len(keep)-logTailLines) + " earlier lines]"}, keep[len(keep)-logTailLines:]...)
	}
	return strings.Join(keep, "\n")
}

const logTailLines = 40
