package frame

import (
	"errors"
	"testing"
)

func TestRoundTripAndDamage(t *testing.T) {
	f := Append(nil, []byte("hello"))
	p, n, err := Parse(f, 1<<10)
	if err != nil || string(p) != "hello" || n != len(f) {
		t.Fatalf("parse: %q %d %v", p, n, err)
	}
	if _, _, err := Parse(f[:len(f)-1], 1<<10); !errors.Is(err, ErrTorn) {
		t.Fatalf("short: %v", err)
	}
	bad := append([]byte(nil), f...)
	bad[len(bad)-1] ^= 1
	if _, _, err := Parse(bad, 1<<10); !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped payload: %v", err)
	}
	// The checksum covers the length: a frame reframed with a shorter
	// length over the same bytes fails.
	bad = append([]byte(nil), f...)
	bad[0] = 4
	if _, _, err := Parse(bad, 1<<10); !errors.Is(err, ErrChecksum) {
		t.Fatalf("changed length: %v", err)
	}
	if _, _, err := Parse(f, 4); !errors.Is(err, ErrChecksum) {
		t.Fatalf("over max: %v", err)
	}
}
