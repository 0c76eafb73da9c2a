package jsonscan

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

var corpus = []string{
	`{}`, ` { } `, `[]`, `[1,2,3]`, `"x"`, `0`, `-0`, `-0.5e+10`, `1E3`, `true`, `false`, `null`,
	`{"a":1,"b":{"c":[1,{"d":null}]},"e":"f"}`,
	`{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`, `{"a":1,"\u0061":2}`, `{"\u0061":1,"a":2}`,
	`{"a":{"x":1,"x":2}}`, `[{"a":1,"a":1}]`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k3":10}`,
	`{"z":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"ka":10,"kb":11}`,
	// Names kept as they came, then out of order: a repeat of a kept one,
	// of one past the 16 kept, and of one sorted beyond the kept ones.
	`{"before":null,"after":{"id":1},"source":{"version":"x","connector":"y","version":1}}`,
	`{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"a0":8}`,
	`{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"b7x":8,"a5":9}`,
	`{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"a":8,"b7":9}`,
	`{"\u0062":1,"a":2,"b":3}`, `{"b":1,"a":2,"\u0062":3}`,
	`{"a!":1,"a":2}`, `{"a":1,"a!":2}`, `{"é":1,"e":2}`,
	`"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"é"`, "\"\xff\"", "\"\xc3\"",
	"\"a\tb\"", `"\x"`, `"\u12"`, `"\u12g4"`, `"\/\b\f\n\r\t\"\\"`,
	`01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `nul`, `truex`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `[1 2]`,
	`{"a":1}x`, `{"a":1} `, `{"a":1}{}`, ``, ` `, `[`, `{`, `{"a"`, `{"a":`, `"abc`,
}

func TestValueAgreesWithJsontext(t *testing.T) {
	for _, c := range corpus {
		checkAgainstJsontext(t, []byte(c))
	}
}

func FuzzValue(f *testing.F) {
	for _, c := range corpus {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkAgainstJsontext(t, b) })
}

func checkAgainstJsontext(t *testing.T, b []byte) {
	t.Helper()
	want := jsontext.Value(b).IsValid()
	start, end, err := Value(b)
	if (err == nil) != want {
		t.Fatalf("Value(%q) err = %v, jsontext valid = %v", b, err, want)
	}
	if err != nil {
		if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Value(%q) err = %v, want ErrSyntax or ErrDuplicate", b, err)
		}
		return
	}
	if got := strings.TrimSpace(string(b)); string(b[start:end]) != got {
		t.Fatalf("Value(%q) = %q", b, b[start:end])
	}
	// Every string inside decodes as jsontext decodes it.
	dec := jsontext.NewDecoder(strings.NewReader(string(b)))
	var strs []string
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		if tok.Kind() == '"' {
			strs = append(strs, tok.String())
		}
	}
	var got []string
	collectStrings(t, b, start, &got)
	if strings.Join(got, "\x00") != strings.Join(strs, "\x00") {
		t.Fatalf("strings of %q: %q, jsontext %q", b, got, strs)
	}
}

func collectStrings(t *testing.T, b []byte, i int, out *[]string) int {
	t.Helper()
	var end int
	var err error
	switch Kind(b, i) {
	case Object:
		end, err = Members(b, i, 0, func(name []byte, v int) (int, error) {
			*out = append(*out, Unquote(name))
			return collectStrings(t, b, v, out), nil
		})
	case Array:
		end, err = Elements(b, i, 0, func(_, v int) (int, error) { return collectStrings(t, b, v, out), nil })
	case String:
		end, _, err = Str(b, i)
		*out = append(*out, Unquote(b[i:end]))
	default:
		end, err = Skip(b, i, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	return end
}

func TestNum(t *testing.T) {
	for lit, integral := range map[string]bool{"0": true, "-12": true, "1.0": false, "1e2": false, "-0.5E-3": false} {
		end, got, err := Num([]byte(lit), 0)
		if err != nil || end != len(lit) || got != integral {
			t.Errorf("Num(%s) = %d, %v, %v", lit, end, got, err)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, _, err := Value([]byte(deep)); !errors.Is(err, ErrSyntax) {
		t.Fatalf("nesting beyond the limit: %v", err)
	}
}

func BenchmarkSkip512(b *testing.B) {
	img := []byte(`{"email":"user7@example.com","id":7,"name":"User Number 7","notes":"` + strings.Repeat("x", 400) + `","phone":"+44 20 7946 0007"}`)
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Value(img); err != nil {
			b.Fatal(err)
		}
	}
}
