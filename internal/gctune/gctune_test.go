package gctune

import (
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
)

// Apply is process-wide, so each case runs in a child process.
func TestApply(t *testing.T) {
	if os.Getenv("GCTUNE_CHILD") == "1" {
		Apply()
		t.Logf("GOGC in effect: %d", debugPercent())
		return
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "GOGC in effect: 200"},
		{[]string{"GOGC=150"}, "GOGC in effect: 150"},
		{[]string{"GOGC=off"}, "GOGC in effect: -1"},
	} {
		out := child(t, "TestApply", "1", "GOGC", tc.env)
		if !strings.Contains(out, tc.want) {
			t.Errorf("env %v: want %q in\n%s", tc.env, tc.want, out)
		}
	}
}

// child runs test in a child process with GCTUNE_CHILD=mode and env, the
// variable unset removed from the environment first, and returns its
// output.
func child(t *testing.T, test, mode, unset string, env []string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, unset+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "GCTUNE_CHILD="+mode), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", env, err, out)
	}
	return string(out)
}

func debugPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
