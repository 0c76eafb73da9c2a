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
		cmd := exec.Command(os.Args[0], "-test.run", "^TestApply$", "-test.v")
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOGC=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(append(env, "GCTUNE_CHILD=1"), tc.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.env, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("env %v: want %q in\n%s", tc.env, tc.want, out)
		}
	}
}

func debugPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
