package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The CLI tests run the real binary, built once per test process on first
// use into a directory TestMain removes.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// steleBin returns the path of the stele binary built from this package.
func steleBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// STELE_CLI_TEST_BIN runs the tests against another build (an
		// older one, to see which of them it fails).
		if binPath = os.Getenv("STELE_CLI_TEST_BIN"); binPath != "" {
			return
		}
		if binDir, binErr = os.MkdirTemp("", "stele-cli-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "stele")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cliRun runs the binary with args in dir (the test's temp dir when
// empty), with env added to a clean environment (no STELE_* of the
// machine running the tests).
func cliRun(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, steleBin(t), args...)
	if dir == "" {
		dir = t.TempDir()
	}
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STELE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("stele %s: %v", strings.Join(args, " "), err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cli runs the binary and fails the test unless it exits with want.
func cli(t *testing.T, want int, env []string, args ...string) result {
	t.Helper()
	r := cliRun(t, "", env, args...)
	if r.code != want {
		t.Fatalf("stele %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// lastLine is the last non-empty line of s (a token printed by token create).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
