package index

import (
	"fmt"
	"testing"
)

// The blocked filter never denies a key it was given, and at capacity it
// denies all but under 1% of the keys it was not (ids as record.IDDeriver
// writes them, and as clients choose them; about 0.65% expected).
func TestBlockedBloom(t *testing.T) {
	for _, c := range []struct {
		capacity uint
		key      func(i int) []byte
	}{
		{1 << 16, func(i int) []byte { return fmt.Appendf(nil, "c%025x", uint64(i)*0x9E3779B97F4A7C15) }},
		{1 << 16, func(i int) []byte { return fmt.Appendf(nil, "id-%d", i) }},
		{1000, func(i int) []byte { return fmt.Appendf(nil, "order-%08d", i) }},
		{1, func(i int) []byte { return fmt.Appendf(nil, "%d", i) }},
	} {
		f := newBlockedBloom(c.capacity)
		n := int(c.capacity)
		for i := range n {
			f.Add(c.key(i))
		}
		for i := range n {
			if !f.Test(c.key(i)) {
				t.Fatalf("capacity %d: key %q was added and is denied", c.capacity, c.key(i))
			}
		}
		if n < 1<<16 {
			continue // too few blocks for a stable rate
		}
		fp := 0
		for i := n; i < 2*n; i++ {
			if f.Test(c.key(i)) {
				fp++
			}
		}
		if rate := float64(fp) / float64(n); rate >= 0.01 {
			t.Errorf("capacity %d, keys like %q: %.2f%% false positives, want under 1%%", c.capacity, c.key(0), 100*rate)
		} else {
			t.Logf("capacity %d, keys like %q: %.2f%% false positives", c.capacity, c.key(0), 100*rate)
		}
	}
}

// BenchmarkBlockedBloom is the id filter's work per appended record: a
// test (before the append) and an add (as it is indexed), in a filter of
// the index's smallest capacity.
func BenchmarkBlockedBloom(b *testing.B) {
	f := newBlockedBloom(1 << 20)
	keys := make([][]byte, 1<<20)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "c%025x", uint64(i)*0x9E3779B97F4A7C15)
	}
	i := 0
	for b.Loop() {
		k := keys[i&(1<<20-1)]
		f.Test(k)
		f.Add(k)
		i++
	}
}
