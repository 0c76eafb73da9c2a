package query

import (
	"strings"
	"testing"
)

// FuzzDecodeCursor: a cursor comes from the client. Any string is either
// refused or accepted for exactly one order and one query; every issued
// cursor decodes to the position it encoded.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(41, false, "p"), false, "p")
	f.Add(encodeCursor(41, true, "p"), true, "q")
	f.Add("djI6YToxOg", false, "")
	f.Add("", true, "x")
	f.Fuzz(func(t *testing.T, c string, desc bool, print string) {
		if _, err := decodeCursor(c, desc, print); err == nil {
			if _, err := decodeCursor(c, !desc, print); err == nil {
				t.Fatalf("cursor %q accepted for both orders", c)
			}
			if _, err := decodeCursor(c, desc, print+"x"); err == nil {
				t.Fatalf("cursor %q accepted for another query", c)
			}
		}
		if strings.Contains(print, ":") {
			return // a fingerprint is base64url: it never holds ':'
		}
		for _, last := range []uint64{1, 1 << 40} {
			want := last + 1
			if desc {
				want = last - 1
			}
			if got, err := decodeCursor(encodeCursor(last, desc, print), desc, print); err != nil || got != want {
				t.Fatalf("issued cursor (%d, %t, %q) decodes to %d, %v", last, desc, print, got, err)
			}
		}
	})
}
