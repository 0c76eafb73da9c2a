package logstore

import (
	"bytes"
	"testing"
)

// FuzzParseTrailer: recovery reads batch trailers from a file anyone with
// the disk can write; any bytes either parse to a trailer that re-encodes
// to exactly them, or are refused with an error — never a panic.
func FuzzParseTrailer(f *testing.F) {
	root := bytes.Repeat([]byte{7}, hashSize)
	f.Add(appendTrailer(nil, trailer{size: 3, root: root}))
	f.Add(appendTrailer(nil, trailer{size: 1 << 40, root: root, auth: []byte("mac")}))
	f.Add([]byte{trailerTag})
	f.Add([]byte{trailerTag, 2})
	f.Fuzz(func(t *testing.T, p []byte) {
		tr, err := parseTrailer(p)
		if err != nil {
			return
		}
		if len(tr.root) != hashSize || len(tr.auth) > 0xffff {
			t.Fatalf("trailer with a %d-byte root and %d-byte authenticator", len(tr.root), len(tr.auth))
		}
		if !bytes.Equal(appendTrailer(nil, tr), p) {
			t.Fatal("a parsed trailer does not re-encode to its bytes")
		}
	})
}
