package api

import (
	"bytes"
	"slices"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
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

// FuzzCutArrayMatchesDecoder: whenever cutArray splits a body into
// elements that are each one valid JSON value (what parsing every record
// checks), the body is a valid array and the decoder splits it into the
// same items; and whenever the decoder accepts an array, cutArray splits
// it the same way.
func FuzzCutArrayMatchesDecoder(f *testing.F) {
	for _, s := range []string{`[]`, `[{}]`, ` [ {"a":1} , {"b":[1,2]} ] `, `[{"a":"}\"]"}]`, `[{"a":"\\"},{}]`, `[1,"x",null]`,
		`[{"a":"\u00e9"}]`, `[{]`, `[{}]x`, `[{}{}]`, `[1 2]`, `[{"a":1}}]`, `[[{}],{"]":"["}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 3
		slow, _, aerr := decodeArray(b, max)
		cut, ok := cutArray(b, max)
		if aerr == nil {
			if !ok || !slices.EqualFunc(cut, slow, bytes.Equal) {
				t.Fatalf("%q: decoder %q, cutArray %q (ok %t)", b, slow, cut, ok)
			}
			return
		}
		if !ok || len(cut) > max {
			return
		}
		for _, item := range cut {
			if !jsontext.Value(item).IsValid() {
				return // parsing refuses the batch, and syntaxFirst answers as the decoder does
			}
		}
		t.Fatalf("%q: every item valid (%q) but the decoder says %v", b, cut, aerr.Msg)
	})
}
