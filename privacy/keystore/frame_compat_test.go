package keystore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// TestFramesOfOlderStoresStillRead: frames written before the move to
// internal/frame checksum the body alone; they are read, never written.
func TestFramesOfOlderStoresStillRead(t *testing.T) {
	body := []byte("an entry body")
	var old [frameHeader]byte
	binary.LittleEndian.PutUint32(old[0:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(old[4:8], crc32.Checksum(body, crcTable))
	legacy := append(old[:], body...)
	if got, n, err := nextFrame(legacy); err != nil || string(got) != string(body) || n != len(legacy) {
		t.Fatalf("legacy frame: %q %d %v", got, n, err)
	}
	cur := appendFrame(nil, body)
	if string(cur) == string(legacy) {
		t.Fatal("new frames still checksum the body alone")
	}
	if got, _, err := nextFrame(cur); err != nil || string(got) != string(body) {
		t.Fatalf("current frame: %q %v", got, err)
	}
	for _, f := range [][]byte{legacy, cur} {
		bad := append([]byte(nil), f...)
		bad[len(bad)-1] ^= 1
		if _, _, err := nextFrame(bad); !errors.Is(err, errBadFrame) {
			t.Fatalf("damaged frame: %v", err)
		}
	}
	if _, _, err := nextFrame(cur[:len(cur)-1]); !errors.Is(err, errTorn) {
		t.Fatalf("torn frame: %v", err)
	}
}
