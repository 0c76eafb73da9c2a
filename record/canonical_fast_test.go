package record

import (
	"bytes"
	"slices"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

var fastCorpus = []string{
	`{}`, `{"a":1}`, `{"b":1,"a":2}`, `{"a":1,"b":{"d":[1,2,{"f":null,"e":true}],"c":"x"}}`,
	`{"a":-0,"b":1.50,"c":1e3,"d":12345678901234567890.123}`, `{"a":"\u00e9","b":"é"}`, `{"é":1,"a":2}`,
	`{ "a":1}`, `{"a":1 }`, `{"a":[1, 2]}`, `{"a":"x\"y"}`, `{"a":"\u2028"}`, "{\"a\":\"\u2028\x7f\"}",
	`{"a":1,"a":2}`, `{"a":{"x":1,"x":2}}`, `[1,"a",{"b":2}]`, `{"Z":1,"a":2}`, `{"a":1,"B":2}`, `{"":1,"a":2}`,
	`{"v":"x","id":1,"email":"a@b","qty":3}`, `{"a ":1,"a":2}`, `{"a!":1,"a":2,"a~":3}`, `{"b":{"y":1,"x":2},"a":1}`, `{"b":1,"a":2,"b":3}`, `{"b":1,"a":2}x`, `{"b":1,"a":2`,
}

// FuzzFastPathsMatchDecoder: the scanner's members and the canonical-form
// check agree with the decoder and Canonicalize they stand in for.
func FuzzFastPathsMatchDecoder(f *testing.F) {
	for _, s := range fastCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// canonicalAt is only asked about values a decoder has checked.
		for _, sorted := range []bool{true, false} {
			if !jsontext.Value(b).IsValid() {
				break
			}
			if end, ok := canonicalAt(b, 0, sorted); ok && end == len(b) {
				opts := slices.Clone(canonicalOptions)
				if !sorted {
					opts = append(opts, jsontext.ReorderRawObjects(false))
				}
				v := jsontext.Value(slices.Clone(b))
				if err := v.Canonicalize(opts...); err != nil {
					t.Fatalf("%q: judged canonical, Canonicalize says %v", b, err)
				}
				if !bytes.Equal(v, b) {
					t.Fatalf("%q: judged canonical (sorted %v), canonical form is %q", b, sorted, v)
				}
			}
		}
		// sortedObject is asked about anything a source receives.
		if sorted, ok := sortedObject(b); ok {
			v := jsontext.Value(slices.Clone(b))
			if err := v.Canonicalize(canonicalOptions...); err != nil {
				t.Fatalf("%q: sorted to %q, Canonicalize says %v", b, sorted, err)
			}
			if !bytes.Equal(v, sorted) {
				t.Fatalf("%q: sorted to %q, canonical form is %q", b, sorted, v)
			}
		}
		// changedSmall names what changedCanonical names, against no
		// image, the same one and another.
		for _, other := range [][]byte{nil, b, []byte(`{"a":1,"v":"x"}`)} {
			for _, pair := range [][2][]byte{{other, b}, {b, other}} {
				if fast, ok := changedSmall(pair[0], pair[1]); ok {
					slow, err := new(parser).changedCanonical(pair[0], pair[1])
					if err != nil || !slices.Equal(fast, slow) {
						t.Fatalf("changed %q -> %q: changedSmall %q, changedCanonical %q %v", pair[0], pair[1], fast, slow, err)
					}
				}
			}
		}
		p := new(parser)
		fast, ok := p.scanMembers(b, "x")
		slow, err := new(parser).decodeMembers(b, "x")
		if ok != (err == nil) {
			t.Fatalf("%q: scanner ok %v, decoder error %v", b, ok, err)
		}
		if ok && !slices.EqualFunc(fast, slow, func(a, b member) bool {
			return a.name == b.name && a.parent == b.parent && bytes.Equal(a.value, b.value)
		}) {
			t.Fatalf("%q: scanner %v, decoder %v", b, fast, slow)
		}
	})
}

func TestFastPathsMatchDecoder(t *testing.T) {
	for _, s := range fastCorpus {
		b := []byte(s)
		if !jsontext.Value(b).IsValid() {
			continue
		}
		end, ok := canonicalAt(b, 0, true)
		t.Logf("%s: canonical %v", s, ok && end == len(b))
	}
}
