package api

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzScanArrayMatchesDecoder: whatever array the scanner splits, the
// decoder splits into the same items.
func FuzzScanArrayMatchesDecoder(f *testing.F) {
	for _, s := range []string{`[]`, `[{}]`, ` [ {"a":1} , {"b":[1,2]} ] `, `[{"a":1,"a":2}]`, `[1,"x",null]`, `[{"a":"\u00e9"}]`, `[{]`, `[{}]x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 3
		fast, ok := scanArray(b, max)
		if !ok {
			return
		}
		slow, _, aerr := decodeArray(b, max)
		if len(fast) > max {
			if aerr == nil || aerr.Status != tooMany(max).Status {
				t.Fatalf("%q: scanner found more than %d items, decoder says %v", b, max, aerr)
			}
			return
		}
		if aerr != nil {
			t.Fatalf("%q: scanner split it, decoder says %v", b, aerr.Msg)
		}
		if !slices.EqualFunc(fast, slow, bytes.Equal) {
			t.Fatalf("%q: scanner %q, decoder %q", b, fast, slow)
		}
	})
}
