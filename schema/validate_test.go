package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	s := mustCompile(t, customers)
	if err := s.Validate([]byte(`{"customer_id": 7, "email": "a@b.com", "phone": null, "address": {"zip": "12345"}, "tier": "gold"}`)); err != nil {
		t.Fatalf("valid image: %v", err)
	}
	cases := []struct {
		name, image, field, reason string
		secret                     string // must not appear in the error
	}{
		{"missing required", `{"email": "a@b.com"}`, "", "missing property 'customer_id'", ""},
		{"wrong type", `{"customer_id": "seven"}`, "/customer_id", "got string, want integer", "seven"},
		{"nested pattern", `{"customer_id": 7, "address": {"zip": "ABCDE-SECRET"}}`, "/address/zip", "does not match pattern", "ABCDE-SECRET"},
		{"format", `{"customer_id": 7, "email": "not-an-email-SECRET"}`, "/email", "not a valid email", "SECRET"},
		{"enum", `{"customer_id": 7, "tier": "bronze"}`, "/tier", "value must be one of", "bronze"},
		{"not an object", `[1, 2]`, "", "must be a JSON object", ""},
		{"not JSON", `{"customer_id": 7, "email": "SECRET`, "", "not valid JSON", "SECRET"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Validate([]byte(c.image))
			var ve *ValidationError
			if !errors.Is(err, ErrInvalidRecord) || !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError wrapping ErrInvalidRecord", err)
			}
			if ve.Field != c.field || !strings.Contains(ve.Reason, c.reason) {
				t.Errorf("field %q reason %q; want field %q reason containing %q", ve.Field, ve.Reason, c.field, c.reason)
			}
			if ve.Subject != "crm.public.customers" || ve.Version != 1 {
				t.Errorf("error names %s v%d", ve.Subject, ve.Version)
			}
			if c.secret != "" && strings.Contains(err.Error(), c.secret) {
				t.Errorf("error quotes the value: %v", err)
			}
		})
	}
}

// image512 builds a realistic record image of about 512 bytes.
func image512(tb testing.TB) []byte {
	img := map[string]any{
		"customer_id": 1234567,
		"email":       "jane.doe@example.com",
		"phone":       "+44 20 7946 0958",
		"born":        "1984-03-12",
		"address":     map[string]any{"street": "221B Baker Street", "zip": "12345"},
		"card":        map[string]any{"number": "4111111111111111"},
		"tier":        "gold",
		"newsletter":  map[string]any{"contact": "c-1234567", "name": "Jane Doe"},
		"notes":       strings.Repeat("n", 239),
	}
	b, err := json.Marshal(img)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b) < 480 || len(b) > 540 {
		tb.Fatalf("image is %d bytes, want about 512", len(b))
	}
	return b
}

func TestBenchmarkImageIsValid(t *testing.T) {
	if err := mustCompile(t, customers).Validate(image512(t)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkValidate512 measures Validate on the append hot path; compare it
// with BenchmarkDecodeOnly512, the JSON decoding any validation must do.
func BenchmarkValidate512(b *testing.B) {
	s := mustCompile(b, customers)
	img := image512(b)
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Validate(img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOnly512(b *testing.B) {
	img := image512(b)
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeImage(img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateInvalid512(b *testing.B) {
	s := mustCompile(b, customers)
	var m map[string]any
	_ = json.Unmarshal(image512(b), &m)
	m["tier"] = "bronze"
	img, _ := json.Marshal(m)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Validate(img); err == nil {
			b.Fatal(fmt.Errorf("invalid image passed"))
		}
	}
}

// TestUnrepresentableNumberRefusedByName: a number whose exponent is beyond
// what big.Rat holds, under a numeric keyword, is refused naming its field,
// by the fast validator and by the library path alike (where the library
// alone dereferenced nil and took the process down), and is not compared as
// if it were 0. Without a numeric keyword it is only type-checked.
func TestUnrepresentableNumberRefusedByName(t *testing.T) {
	const reason = "number cannot be checked against the schema"
	for _, c := range []struct {
		name, schema, image, field, reason string
	}{
		{"fast, minimum", `{"type":"object","properties":{"n":{"type":"number","minimum":1}}}`, `{"n":1e1000001}`, "/n", reason},
		{"fast, maximum, tiny", `{"type":"object","properties":{"n":{"type":"number","maximum":1}}}`, `{"n":-1e-1000001}`, "/n", reason},
		{"fast, multipleOf", `{"type":"object","properties":{"n":{"type":"number","multipleOf":2}}}`, `{"n":-1e-1000001}`, "/n", reason},
		{"fast, nested", `{"type":"object","properties":{"a":{"type":"array","items":{"type":"number","exclusiveMinimum":0}}}}`, `{"a":[1,2.5e1000002]}`, "/a/1", reason},
		{"library, oneOf", `{"type":"object","properties":{"n":{"oneOf":[{"type":"number","minimum":1},{"type":"string"}]}}}`, `{"n":1.5e999999999}`, "/n", reason},
		{"library, anyOf", `{"type":"object","properties":{"m":{"anyOf":[{"type":"object","properties":{"n":{"maximum":3}}}]}}}`, `{"m":{"n":1e-1000001}}`, "/m/n", reason},
		{"library, enum", `{"type":"object","properties":{"n":{"anyOf":[{"enum":[1,2]}]}}}`, `{"n":1e1000001}`, "/n", "value must be one of"},
		{"integer type", `{"type":"object","properties":{"n":{"type":"integer"}}}`, `{"n":1e1000001}`, "/n", "got number, want integer"},
	} {
		s := mustCompile(t, c.schema)
		err := s.Validate([]byte(c.image))
		var ve *ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidRecord) || ve.Field != c.field || !strings.Contains(ve.Reason, c.reason) {
			t.Errorf("%s: %s: %v, want a refusal of %s: %s", c.name, c.image, err, c.field, c.reason)
		}
	}
	// Representable numbers with an exponent are compared as before.
	s := mustCompile(t, `{"type":"object","properties":{"n":{"type":"number","minimum":1}}}`)
	for img, valid := range map[string]bool{`{"n":1e999}`: true, `{"n":1e-5}`: false, `{"n":2.5E+3}`: true} {
		if err := s.Validate([]byte(img)); (err == nil) != valid {
			t.Errorf("%s: %v, want valid %v", img, err, valid)
		}
	}
	// No numeric keyword: nothing to compare, the number is accepted.
	if err := mustCompile(t, `{"type":"object","properties":{"n":{"type":"number"}}}`).Validate([]byte(`{"n":1e1000001}`)); err != nil {
		t.Errorf("no numeric keyword: %v", err)
	}
}
