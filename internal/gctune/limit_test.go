package gctune

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLimiterNeverBelowTwiceTheLiveHeap(t *testing.T) {
	var got []int64
	cur := int64(math.MaxInt64)
	l := limiter{base: 160 << 20, set: func(v int64) int64 {
		was := cur
		if v >= 0 {
			got, cur = append(got, v), v
		}
		return was
	}}
	for _, tc := range []struct {
		live, other uint64
		want        int64
	}{
		{10 << 20, 5 << 20, 160 << 20},  // a small heap: the configured limit
		{79 << 20, 10 << 20, 168 << 20}, // live data outgrew half the limit
		{500 << 20, 0, 1000 << 20},
	} {
		if v := l.target(tc.live, tc.other); v != tc.want {
			t.Errorf("target(live %d MiB, other %d MiB) = %d MiB, want %d MiB", tc.live>>20, tc.other>>20, v>>20, tc.want>>20)
		}
	}
	l.apply(160 << 20)
	l.apply(160<<20 + 1<<19) // within a MiB: left alone
	l.apply(168 << 20)
	l.apply(160 << 20)
	cur = math.MaxInt64 // reset by a nested LimitMemory that ended
	l.apply(160 << 20)
	if want := []int64{160 << 20, 168 << 20, 160 << 20, 160 << 20}; !slices.Equal(got, want) {
		t.Errorf("limits set: %v, want %v", got, want)
	}
}

// LimitMemory is process-wide, so each case runs in a child process.
func TestLimitMemory(t *testing.T) {
	if os.Getenv("GCTUNE_CHILD") == "limit" {
		ctx, cancel := context.WithCancel(context.Background())
		LimitMemory(ctx, 100<<20)
		t.Logf("limit in effect: %d", debug.SetMemoryLimit(-1))
		cancel()
		_, env := os.LookupEnv("GOMEMLIMIT")
		for deadline := time.Now().Add(10 * time.Second); !env && debug.SetMemoryLimit(-1) != math.MaxInt64 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("limit after cancel: %d", debug.SetMemoryLimit(-1))
		return
	}
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{nil, []string{"limit in effect: 104857600", "limit after cancel: 9223372036854775807"}},
		{[]string{"GOMEMLIMIT=50MiB"}, []string{"limit in effect: 52428800", "limit after cancel: 52428800"}},
	} {
		out := child(t, "TestLimitMemory", "limit", "GOMEMLIMIT", tc.env)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("env %v: want %q in\n%s", tc.env, w, out)
			}
		}
	}
}
