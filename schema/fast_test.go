package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fastSchemas use only keywords of the fast subset.
var fastSchemas = []string{
	customers,
	`{"type":"object"}`,
	`{}`,
	`{"type":"object","required":["a","b"],"minProperties":2,"maxProperties":3}`,
	`{"type":"object","properties":{"a":{"type":["integer","null"],"minimum":-5,"maximum":10.5,"multipleOf":0.5}},"additionalProperties":false}`,
	`{"type":"object","properties":{"n":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1e3,"multipleOf":3}}}`,
	`{"type":"object","properties":{"s":{"type":"string","minLength":2,"maxLength":4,"pattern":"^[a-zé]+$"}}}`,
	`{"type":"object","properties":{"e":{"enum":["x","y",1,2.5,true,null,{"k":[1,2]},[1,"a"]]},"c":{"const":{"a":[1,2.0]}},"k":{"const":3}}}`,
	`{"type":"object","properties":{"d":{"type":"string","format":"date-time"},"u":{"format":"uuid"},"ip":{"format":"ipv4"}}}`,
	`{"type":"object","additionalProperties":{"type":"string","maxLength":3}}`,
	`{"type":"object","properties":{"t":{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":{"type":"boolean"},"minItems":1,"maxItems":4}}}`,
	`{"type":"object","properties":{"o":{"type":"object","required":["x"],"properties":{"x":{"type":"object","properties":{"y":{"type":"integer","minimum":0}}}}}}}`,
	`{"type":"object","properties":{"f":false,"t":true,"z":{"type":"integer","minimum":12345678901234567890}}}`,
	`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"integer","exclusiveMinimum":0}}}`,
}

// slowSchemas use keywords the fast validator leaves to the library.
var slowSchemas = []string{
	`{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"integer"}]}}}`,
	`{"type":"object","$defs":{"p":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/p"}}}`,
	`{"type":"object","patternProperties":{"^x":{"type":"string"}}}`,
	`{"type":"object","properties":{"l":{"type":"array","uniqueItems":true}}}`,
	`{"type":"object","dependentRequired":{"a":["b"]}}`,
	`{"type":"object","unevaluatedProperties":false,"properties":{"a":{}}}`,
	`{"type":"object","if":{"required":["a"]},"then":{"required":["b"]}}`,
	`{"type":"object","properties":{"s":{"not":{"type":"string"}}}}`,
}

var diffImages = []string{
	`{}`, `{"a":1}`, `{"a":1,"b":2}`, `{"a":1,"b":2,"c":3,"d":4}`, `{"a":null}`, `{"a":"x"}`, `{"a":10.5}`, `{"a":11}`, `{"a":-5.5}`,
	`{"a":2.5}`, `{"a":2.25}`, `{"a":1.0}`, `{"a":1e1}`, `{"a":-6}`,
	`{"n":0}`, `{"n":3}`, `{"n":999}`, `{"n":1000}`, `{"n":1e3}`, `{"n":4}`, `{"n":3.0}`, `{"n":-3}`, `{"n":"3"}`,
	`{"s":"ab"}`, `{"s":"a"}`, `{"s":"abcde"}`, `{"s":"éé"}`, `{"s":"a1"}`, `{"s":"\u00e9t"}`, `{"s":"\u0041b"}`, `{"s":5}`,
	`{"e":"x"}`, `{"e":"z"}`, `{"e":1}`, `{"e":1.0}`, `{"e":2.50}`, `{"e":3}`, `{"e":true}`, `{"e":false}`, `{"e":null}`,
	`{"e":{"k":[1,2]}}`, `{"e":{"k":[1,2.0]}}`, `{"e":{"k":[2,1]}}`, `{"e":[1,"a"]}`, `{"e":["a",1]}`, `{"e":"\u0078"}`,
	`{"c":{"a":[1,2]}}`, `{"c":{"a":[1,2],"b":1}}`, `{"c":1}`, `{"k":3}`, `{"k":3.0}`, `{"k":"3"}`,
	`{"d":"2026-05-01T10:00:00Z"}`, `{"d":"yesterday"}`, `{"d":7}`, `{"u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"u":"nope"}`, `{"u":5}`,
	`{"ip":"10.0.0.1"}`, `{"ip":"10.0.0.300"}`,
	`{"x":"abc"}`, `{"x":"abcd"}`, `{"x":1}`, `{"\u0078":"a","y":"b"}`,
	`{"t":[]}`, `{"t":["a"]}`, `{"t":["a",1]}`, `{"t":["a",1,true,false]}`, `{"t":["a",1,true,false,true]}`, `{"t":[1]}`, `{"t":["a","b"]}`, `{"t":["a",1,"c"]}`,
	`{"o":{}}`, `{"o":{"x":{}}}`, `{"o":{"x":{"y":-1}}}`, `{"o":{"x":{"y":1}}}`, `{"o":{"x":5}}`, `{"o":[]}`,
	`{"f":1}`, `{"t":1}`, `{"z":12345678901234567890}`, `{"z":12345678901234567889}`, `{"z":1.2345678901234567891e19}`,
	`{"customer_id":7,"email":"a@b.com","phone":null,"address":{"zip":"12345","street":"x"},"tier":"gold"}`,
	`{"customer_id":7.5}`, `{"customer_id":"7"}`, `{"customer_id":7,"email":"nope"}`, `{"customer_id":7,"address":{"zip":"1234"}}`,
	`{"customer_id":7,"tier":"bronze"}`, `{"customer_id":7,"born":"1984-02-30"}`, `{"customer_id":7,"card":{"number":5}}`,
	`{"customer_id":7,"newsletter":{"contact":1,"name":2}}`, `{"email":"a@b.com"}`,
	// Images the fast path leaves to the library.
	`{"a":1,"a":"x"}`, "{\"s\":\"\xff\xfe\"}", `{"s":"\ud800"}`, `[1]`, `"x"`, `{"a":1`, `{"a":1} x`, ` {"a":1} `,
	`{"b":1,"a":1}`, `{"s":"ab","a":"x"}`,
}

func TestFastSubsetIsRecognised(t *testing.T) {
	for _, doc := range fastSchemas {
		if s := mustCompile(t, doc); s.fast == nil {
			t.Errorf("schema %s: fast validator not compiled", doc)
		}
	}
	for _, doc := range slowSchemas {
		if s := mustCompile(t, doc); s.fast != nil {
			t.Errorf("schema %s: compiled a fast validator for a keyword outside the subset", doc)
		}
	}
}

// TestFastSchemaFieldsKnown fails when the library's compiled schema gains
// a field: compileFast must then learn whether it is a keyword it handles,
// one it must leave to the library, or an annotation.
func TestFastSchemaFieldsKnown(t *testing.T) {
	known := []string{
		// handled
		"Bool", "Types", "Enum", "Const", "Format", "MaxProperties", "MinProperties", "Required", "Properties",
		"AdditionalProperties", "MinItems", "MaxItems", "PrefixItems", "Items2020", "MinLength", "MaxLength", "Pattern",
		"Maximum", "Minimum", "ExclusiveMaximum", "ExclusiveMinimum", "MultipleOf",
		// left to the library
		"Ref", "RecursiveRef", "DynamicRef", "Not", "AllOf", "AnyOf", "OneOf", "If", "Then", "Else", "PropertyNames",
		"PatternProperties", "Dependencies", "DependentRequired", "DependentSchemas", "UnevaluatedProperties",
		"UniqueItems", "Contains", "MinContains", "MaxContains", "Items", "AdditionalItems", "UnevaluatedItems",
		"ContentEncoding", "ContentMediaType", "ContentSchema", "Extensions",
		// no effect on validation
		"DraftVersion", "Location", "ID", "Anchor", "RecursiveAnchor", "DynamicAnchor", "Title", "Description",
		"Default", "Comment", "ReadOnly", "WriteOnly", "Examples", "Deprecated",
	}
	typ := reflect.TypeFor[jsonschema.Schema]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() && !slices.Contains(known, f.Name) {
			t.Errorf("jsonschema.Schema has field %s, unknown to compileFast", f.Name)
		}
	}
}

// libraryLeaves lists every leaf error of the library's verdict, as
// (field, reason); the library reports the first, but which one is first
// among members depends on map order. unjudged: the library panicked on a
// number it cannot compare (see ValidateImage), so there are no leaves;
// first is the refusal by name.
//
//lint:ignore ST1008 the first error is the primary result here; the leaves explain it
func libraryLeaves(s *Schema, image []byte) (first error, leaves []string, unjudged bool) {
	first = s.validateLibrary(image)
	m, err := DecodeImage(image)
	if err != nil {
		return first, nil, false
	}
	refused, verr := s.libraryVerdict(m)
	unjudged = refused != nil
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, normalReason(jsonPointer(e.InstanceLocation)+" "+reason(e.ErrorKind)))
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	if ve, ok := verr.(*jsonschema.ValidationError); ok {
		walk(ve)
	}
	return first, leaves, unjudged
}

// checkSame compares the fast validator with the library on one image:
// the same decision, and the fast path's error is one the library reports
// (the very one when the library finds only one).
func checkSame(t *testing.T, doc string, s *Schema, image []byte) (valid bool) {
	t.Helper()
	fast := s.validateFast(image, nil)
	if fast == errFallback {
		return false
	}
	lib, leaves, unjudged := libraryLeaves(s, image)
	if (fast == nil) != (lib == nil) {
		t.Fatalf("schema %s image %s: fast says %v, library says %v", doc, image, fast, lib)
	}
	if unjudged {
		// The fast validator stopped at an earlier error, before the
		// number the library cannot compare; both refuse the image.
		return false
	}
	if fast == nil {
		return true
	}
	var fe, le *ValidationError
	if !errors.As(fast, &fe) || !errors.As(lib, &le) {
		t.Fatalf("schema %s image %s: fast %T %v, library %T %v", doc, image, fast, fast, lib, lib)
	}
	got := normalReason(fe.Field + " " + fe.Reason)
	if !slices.Contains(leaves, got) {
		t.Fatalf("schema %s image %s: fast error %q is none of the library's %q", doc, image, got, leaves)
	}
	if len(leaves) == 1 && (fe.Field != le.Field || normalReason(fe.Reason) != normalReason(le.Reason) || fe.Subject != le.Subject || fe.Version != le.Version) {
		t.Fatalf("schema %s image %s: fast error %+v, library %+v", doc, image, fe, le)
	}
	return false
}

// normalReason sorts the names an additionalProperties error lists: the
// library lists them in map order.
func normalReason(r string) string {
	const pre, post = "additional properties ", " not allowed"
	i := strings.Index(r, pre)
	if i < 0 || !strings.HasSuffix(r, post) {
		return r
	}
	list := strings.Split(r[i+len(pre):len(r)-len(post)], ", ")
	slices.Sort(list)
	return r[:i+len(pre)] + strings.Join(list, ", ") + post
}

func TestFastMatchesLibrary(t *testing.T) {
	fellBack := 0
	for _, doc := range fastSchemas {
		s := mustCompile(t, doc)
		for _, img := range diffImages {
			if s.validateFast([]byte(img), nil) == errFallback {
				fellBack++
			}
			checkSame(t, doc, s, []byte(img))
		}
	}
	// The images meant for the library must reach it.
	if fellBack < 7*len(fastSchemas) {
		t.Errorf("only %d fallbacks", fellBack)
	}
	s := mustCompile(t, `{"type":"object","properties":{"a":{"type":"integer"}}}`)
	for _, img := range []string{`{"a":1,"a":"x"}`, "{\"s\":\"\xff\"}", `[1]`, `{"a":1`, `{"b":1,"a":1,"b":2}`} {
		if err := s.validateFast([]byte(img), nil); err != errFallback {
			t.Errorf("image %q: fast path decided (%v) instead of leaving it to the library", img, err)
		}
	}
}

// TestFastMatchesLibraryRandom compares the two on generated schemas and
// images, most of them slightly wrong.
func TestFastMatchesLibraryRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	valid, total := 0, 0
	for range 300 {
		doc := randSchema(rng, 0)
		docJSON, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Compile("crm.public.random", 1, docJSON)
		if err != nil {
			continue // e.g. a root that does not accept objects
		}
		if s.fast == nil {
			t.Fatalf("schema %s: no fast validator", docJSON)
		}
		for range 40 {
			img, err := json.Marshal(randValue(rng, doc, 0, true))
			if err != nil {
				t.Fatal(err)
			}
			if checkSame(t, string(docJSON), s, img) {
				valid++
			}
			total++
		}
	}
	// Both verdicts must be well represented for the comparison to mean much.
	if valid < total/10 || valid > total*9/10 {
		t.Errorf("%d of %d generated images valid", valid, total)
	}
	t.Logf("%d of %d generated images valid", valid, total)
}

var names = []string{"a", "b", "c", "é", "a/b", "~x"}

func randSchema(rng *rand.Rand, depth int) map[string]any {
	s := map[string]any{}
	types := []string{"null", "boolean", "integer", "number", "string", "array", "object"}
	if depth == 0 {
		s["type"] = "object"
	} else if rng.IntN(4) > 0 {
		if rng.IntN(5) == 0 {
			s["type"] = []any{types[rng.IntN(len(types))], types[rng.IntN(len(types))]}
		} else {
			s["type"] = types[rng.IntN(len(types))]
		}
	}
	switch rng.IntN(8) {
	case 0:
		s["enum"] = []any{"a", 1, 2.5, nil, true, map[string]any{"a": 1}}[:1+rng.IntN(6)]
	case 1:
		s["const"] = []any{"a", 1, false, []any{1}}[rng.IntN(4)]
	case 2:
		s["format"] = []string{"date", "email", "uuid", "ipv4"}[rng.IntN(4)]
	}
	if depth < 3 && rng.IntN(3) > 0 {
		props := map[string]any{}
		for _, n := range names[:rng.IntN(len(names))] {
			props[n] = randSchema(rng, depth+1)
		}
		s["properties"] = props
		if rng.IntN(3) == 0 {
			s["required"] = names[:rng.IntN(4)]
		}
		switch rng.IntN(4) {
		case 0:
			s["additionalProperties"] = false
		case 1:
			s["additionalProperties"] = map[string]any{"type": "integer"}
		}
		if rng.IntN(5) == 0 {
			s["minProperties"], s["maxProperties"] = rng.IntN(3), 1+rng.IntN(4)
		}
	}
	if depth < 3 && rng.IntN(5) == 0 {
		s["items"] = randSchema(rng, depth+1)
		if rng.IntN(2) == 0 {
			s["prefixItems"] = []any{randSchema(rng, depth+1)}
		}
		s["minItems"], s["maxItems"] = rng.IntN(2), 1+rng.IntN(3)
	}
	if rng.IntN(4) == 0 {
		s["minLength"], s["maxLength"] = rng.IntN(3), 1+rng.IntN(4)
	}
	if rng.IntN(6) == 0 {
		s["pattern"] = "^[a-c]*$"
	}
	if rng.IntN(4) == 0 {
		s["minimum"], s["maximum"] = -2+rng.IntN(3), json.Number(fmt.Sprint(rng.IntN(20))+".5")
	}
	if rng.IntN(6) == 0 {
		s["exclusiveMinimum"], s["exclusiveMaximum"] = 0, 1e3
	}
	if rng.IntN(6) == 0 {
		s["multipleOf"] = []any{2, 0.5, 3}[rng.IntN(3)]
	}
	return s
}

// randValue builds a value that roughly fits schema s, and breaks it now
// and then.
func randValue(rng *rand.Rand, s map[string]any, depth int, root bool) any {
	if !root && rng.IntN(12) == 0 {
		return randScalar(rng)
	}
	if e, ok := s["enum"].([]any); ok && rng.IntN(3) > 0 {
		return e[rng.IntN(len(e))]
	}
	if c, ok := s["const"]; ok && rng.IntN(2) == 0 {
		return c
	}
	t, _ := s["type"].(string)
	if tt, ok := s["type"].([]any); ok {
		t = tt[rng.IntN(len(tt))].(string)
	}
	if root {
		t = "object"
	}
	switch t {
	case "object":
		m := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		for _, n := range names {
			if rng.IntN(2) == 0 {
				continue
			}
			if ps, ok := props[n].(map[string]any); ok && depth < 4 {
				m[n] = randValue(rng, ps, depth+1, false)
			} else {
				m[n] = randScalar(rng)
			}
		}
		return m
	case "array":
		var a []any
		items, _ := s["items"].(map[string]any)
		for range rng.IntN(4) {
			if items != nil && depth < 4 {
				a = append(a, randValue(rng, items, depth+1, false))
			} else {
				a = append(a, randScalar(rng))
			}
		}
		return a
	case "string":
		return []string{"", "a", "abc", "abcdef", "é", "2026-01-02", "a@b.c", "10.0.0.1", "123e4567-e89b-12d3-a456-426614174000", "x\"y"}[rng.IntN(10)]
	case "integer", "number":
		return json.Number([]string{"0", "1", "-3", "2.5", "7", "1000", "1e3", "12.0", "4", "0.5", "-2"}[rng.IntN(11)])
	case "boolean":
		return rng.IntN(2) == 0
	case "null":
		return nil
	}
	return randScalar(rng)
}

func randScalar(rng *rand.Rand) any {
	return []any{nil, true, "a", json.Number("1"), json.Number("2.5"), []any{}, map[string]any{"a": 1}}[rng.IntN(7)]
}

func FuzzFastMatchesLibrary(f *testing.F) {
	for _, img := range diffImages {
		f.Add([]byte(img))
	}
	compiled := make([]*Schema, len(fastSchemas))
	for i, doc := range fastSchemas {
		s, err := Compile("crm.public.fuzz", 1, []byte(doc))
		if err != nil {
			f.Fatal(err)
		}
		compiled[i] = s
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		for i, s := range compiled {
			checkSame(t, fastSchemas[i], s, img)
		}
	})
}

func TestFastErrorsNameTheField(t *testing.T) {
	s := mustCompile(t, `{"type":"object","required":["id"],"properties":{"id":{"type":"integer"},"a/b":{"type":"object","properties":{"c~d":{"type":"string","maxLength":2}}}}}`)
	for img, want := range map[string]string{
		`{"id":1,"a/b":{"c~d":"abc"}}`: "/a~1b/c~0d",
		`{"id":"1"}`:                   "/id",
		`{"a/b":{}}`:                   "",
	} {
		err := s.validateFast([]byte(img), nil)
		var ve *ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidRecord) || ve.Field != want {
			t.Errorf("image %s: %v, want a ValidationError at %q", img, err, want)
		}
		if strings.Contains(err.Error(), "abc") {
			t.Errorf("error quotes the value: %v", err)
		}
	}
}

type foundValues map[string]string

func (f foundValues) add(s *Schema, img []byte) Finder {
	return finderFunc(func(i, start, end int) { f[s.Annotated()[i].String()] = string(img[start:end]) })
}

type finderFunc func(i, start, end int)

func (f finderFunc) Found(i, start, end int) { f(i, start, end) }

func TestValidateScanFindsAnnotatedValues(t *testing.T) {
	s := mustCompile(t, customers)
	img := []byte(`{"address":{"street":"1 Way","zip":"12345"},"card":{"number":"4111"},"customer_id":7,"email":"a@b.com","newsletter":{"contact":"c-1"},"phone":null}`)
	got := foundValues{}
	scanned, err := s.ValidateScan(img, got.add(s, img))
	if err != nil || !scanned {
		t.Fatalf("ValidateScan = %v, %v", scanned, err)
	}
	want := foundValues{"customer_id": "7", "newsletter.contact": `"c-1"`, "email": `"a@b.com"`, "phone": "null",
		"address.street": `"1 Way"`, "card": `{"number":"4111"}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	// An image left to the library is not scanned (what was found before
	// the fast path gave up does not count).
	dup := []byte(`{"customer_id":7,"customer_id":8}`)
	if scanned, err := s.ValidateScan(dup, foundValues{}.add(s, dup)); scanned || err != nil {
		t.Fatalf("duplicate names: scanned %v, %v", scanned, err)
	}
}
