package integration_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "demo")
	out := mustStele(t, "demo", "--data", dir, "--addr", "127.0.0.1:0", "--exit")
	for _, want := range []string{"inclusion proof", "OK", "/ in a browser"} {
		if !strings.Contains(out, want) {
			t.Errorf("first demo run does not print %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "already in the log") {
		t.Errorf("first demo run on a fresh directory reports records already in the log:\n%s", out)
	}
	out = mustStele(t, "demo", "--data", dir, "--addr", "127.0.0.1:0", "--exit")
	for _, want := range []string{"already in the log", "inclusion proof", "OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("second demo run does not print %q:\n%s", want, out)
		}
	}
	// The demo's store verifies offline.
	mustStele(t, "verify", "--data", dir)
}

func TestSecondServerRefused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	s.post("application/json", []byte(good("before-second")))

	out, code := stele(t, "serve", "--data", dir, "--addr", "127.0.0.1:0", "--addr-file", filepath.Join(t.TempDir(), "addr"))
	if code == 0 {
		t.Fatalf("a second stele serve on the same data directory exited 0:\n%s", out)
	}
	if !strings.Contains(out, "in use") && !strings.Contains(strings.ToLower(out), "lock") {
		t.Errorf("a second stele serve exited %d without mentioning the lock:\n%s", code, out)
	}
	t.Logf("second stele serve (exit %d): %s", code, strings.TrimSpace(out))

	// The first one is unharmed.
	if got := s.size(); got != 1 {
		t.Errorf("first server: size %d, want 1", got)
	}
	s.post("application/json", []byte(good("after-second")))
	s.get("/v1/records/1", http.StatusOK)
	s.stop()
	mustStele(t, "verify", "--data", dir)
}
