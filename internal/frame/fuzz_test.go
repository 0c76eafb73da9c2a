package frame

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: any bytes either parse as one frame that re-encodes to the
// same bytes, or fail with ErrTorn or ErrChecksum — never a panic, never a
// payload longer than the limit.
func FuzzParse(f *testing.F) {
	f.Add(Append(nil, []byte("payload")), 64)
	f.Add(Append(nil, nil), 0)
	f.Add(append(Append(nil, []byte("a")), 0xff), 1)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, 1<<20)
	f.Fuzz(func(t *testing.T, buf []byte, maxLen int) {
		if maxLen < 0 {
			maxLen = -maxLen
		}
		payload, n, err := Parse(buf, maxLen)
		if err != nil {
			if !errors.Is(err, ErrTorn) && !errors.Is(err, ErrChecksum) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(payload) > maxLen || n != HeaderSize+len(payload) || n > len(buf) {
			t.Fatalf("payload %d bytes, frame %d of %d bytes, limit %d", len(payload), n, len(buf), maxLen)
		}
		if !bytes.Equal(Append(nil, payload), buf[:n]) {
			t.Fatal("a parsed frame does not re-encode to its bytes")
		}
	})
}
