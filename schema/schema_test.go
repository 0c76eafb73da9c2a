package schema

import (
	"errors"
	"strings"
	"testing"
)

// customers is a typical annotated table: a default group keyed by
// customer_id, and a "marketing" group with its own subject field.
const customers = `{
  "type": "object",
  "x-retention": "P10Y",
  "required": ["customer_id"],
  "properties": {
    "customer_id": {"type": "integer", "x-subject": true, "x-retention": "P7Y"},
    "email": {"type": "string", "format": "email", "x-pii": true, "x-searchable": true},
    "phone": {"type": ["string", "null"], "x-pii": true, "x-mask": "last4"},
    "born": {"type": "string", "format": "date", "x-pii": true, "x-mask": "year"},
    "address": {
      "type": "object",
      "properties": {
        "street": {"type": "string", "x-pii": true},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
      }
    },
    "card": {"type": "object", "x-pii": true, "properties": {"number": {"type": "string"}}},
    "tier": {"type": "string", "enum": ["gold", "silver"]},
    "newsletter": {
      "type": "object",
      "x-data-group": "marketing",
      "properties": {
        "contact": {"type": "string", "x-subject": true},
        "name": {"type": "string", "x-pii": true, "x-mask": "null"}
      }
    }
  }
}`

func mustCompile(t testing.TB, doc string) *Schema {
	t.Helper()
	s, err := Compile("crm.public.customers", 1, []byte(doc))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

func TestCompileAnnotations(t *testing.T) {
	s := mustCompile(t, customers)
	if len(s.Groups) != 2 {
		t.Fatalf("groups = %+v, want default and marketing", s.Groups)
	}
	def, ok := s.Group(DefaultGroup)
	if !ok {
		t.Fatal("no default group")
	}
	if def.SubjectField.String() != "customer_id" || def.Retention != (Duration{Years: 7}) {
		t.Errorf("default group subject %s retention %v", def.SubjectField, def.Retention)
	}
	var got []string
	for _, f := range def.PII {
		got = append(got, f.Path.String()+":"+f.Mask)
	}
	want := "address.street:***,born:year,card:***,email:***,phone:last4"
	if strings.Join(got, ",") != want {
		t.Errorf("default PII = %s, want %s", strings.Join(got, ","), want)
	}
	mk, ok := s.Group("marketing")
	if !ok || mk.SubjectField.String() != "newsletter.contact" {
		t.Fatalf("marketing group = %+v", mk)
	}
	if mk.Retention != (Duration{Years: 10}) {
		t.Errorf("marketing retention = %v, want the root's P10Y", mk.Retention)
	}
	f, g, ok := s.PIIField(Path{"email"})
	if !ok || !f.Searchable || g.Name != DefaultGroup {
		t.Errorf("PIIField(email) = %+v %+v %v", f, g, ok)
	}
	if _, _, ok := s.PIIField(Path{"tier"}); ok {
		t.Error("tier reported as PII")
	}
	if _, _, ok := s.PIIField(Path{"card", "number"}); ok {
		t.Error("card.number reported as a field of its own; card is sealed whole")
	}
	if !s.HasPII() {
		t.Error("HasPII = false")
	}
}

func TestSubjectID(t *testing.T) {
	s := mustCompile(t, customers)
	def, _ := s.Group(DefaultGroup)
	mk, _ := s.Group("marketing")
	img, err := DecodeImage([]byte(`{"customer_id": 12345678901234567890, "newsletter": {"contact": "c-7"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := def.SubjectID(img); err != nil || id != "12345678901234567890" {
		t.Errorf("default SubjectID = %q, %v (large integers must keep their digits)", id, err)
	}
	if id, err := mk.SubjectID(img); err != nil || id != "c-7" {
		t.Errorf("marketing SubjectID = %q, %v", id, err)
	}
	img, _ = DecodeImage([]byte(`{"customer_id": null}`))
	if _, err := def.SubjectID(img); !errors.Is(err, ErrNoSubjectValue) {
		t.Errorf("null subject: %v, want ErrNoSubjectValue", err)
	}
	if _, err := mk.SubjectID(img); !errors.Is(err, ErrNoSubjectValue) || !strings.Contains(err.Error(), "newsletter.contact") {
		t.Errorf("missing subject: %v, want ErrNoSubjectValue naming newsletter.contact", err)
	}
}

func TestCompileCanonical(t *testing.T) {
	a, err := Compile("app.orders", 1, []byte(`{"type":"object","properties":{"b":{"type":"number","maximum":1.50},"a":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile("app.orders", 1, []byte("{\n  \"properties\": {\"a\": {}, \"b\": {\"maximum\": 1.50, \"type\": \"number\"}},\n  \"type\": \"object\"\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Raw) != string(b.Raw) {
		t.Errorf("canonical forms differ:\n%s\n%s", a.Raw, b.Raw)
	}
	if !strings.Contains(string(a.Raw), "1.50") {
		t.Errorf("canonical form lost the number as written: %s", a.Raw)
	}
}

func TestCompileInvalid(t *testing.T) {
	cases := []struct {
		name, doc, pointer, reason string
	}{
		{"not JSON", `{"type":`, "", "not valid JSON"},
		{"not an object", `["type"]`, "", "want a JSON Schema object"},
		{"not JSON Schema", `{"type": "object", "properties": {"a": {"type": 5}}}`, "/properties/a/type", "not a valid JSON Schema"},
		{"root not object", `{"type": "string"}`, "/type", "must accept objects"},
		{"external ref", `{"type":"object","properties":{"a":{"$ref":"file:///etc/passwd"}}}`, "", "external $ref"},
		{"bad retention", `{"properties": {"id": {"x-subject": true, "x-retention": "7 years"}}}`, "/properties/id/x-retention", "ISO 8601"},
		{"bad root retention", `{"x-retention": "P7", "properties": {}}`, "/x-retention", "ISO 8601"},
		{"two subjects in a group", `{"properties": {"id": {"type": "integer", "x-subject": true}, "email": {"type": "string", "x-subject": true}}}`, "/properties/id/x-subject", "already has x-subject field email"},
		{"PII without subject", `{"properties": {"email": {"type": "string", "x-pii": true}}}`, "/properties/email", `data group "default", which has no x-subject`},
		{"PII in group without subject", `{"properties": {"id": {"x-subject": true}, "name": {"x-pii": true, "x-data-group": "hr"}}}`, "/properties/name", `data group "hr"`},
		{"searchable without pii", `{"properties": {"id": {"x-subject": true}, "name": {"x-searchable": true}}}`, "/properties/name/x-searchable", "only to a field with"},
		{"mask without pii", `{"properties": {"id": {"x-subject": true}, "name": {"x-mask": "***"}}}`, "/properties/name/x-mask", "only to a field with"},
		{"unknown mask", `{"properties": {"id": {"x-subject": true}, "name": {"x-pii": true, "x-mask": "first4"}}}`, "/properties/name/x-mask", `unknown mask "first4"`},
		{"retention off subject", `{"properties": {"id": {"x-subject": true}, "name": {"x-pii": true, "x-retention": "P1Y"}}}`, "/properties/name/x-retention", "belongs on the data group's x-subject"},
		{"pii not boolean", `{"properties": {"id": {"x-subject": true}, "name": {"x-pii": "yes"}}}`, "/properties/name/x-pii", "must be true or false, got a string"},
		{"bad group name", `{"properties": {"id": {"x-subject": true, "x-data-group": "a/b"}}}`, "/properties/id/x-data-group", "data group name"},
		{"pii on root", `{"x-pii": true}`, "/x-pii", "not on the schema root"},
		{"subject is an object", `{"properties": {"id": {"type": "object", "x-subject": true}}}`, "/properties/id/x-subject", "scalar"},
		{"annotation in items", `{"properties": {"id": {"x-subject": true}, "tags": {"type": "array", "items": {"type": "string", "x-pii": true}}}}`, "/properties/tags/items/x-pii", "honoured only"},
		{"annotation in $defs", `{"$defs": {"e": {"x-pii": true}}, "properties": {}}`, "/$defs/e/x-pii", "honoured only"},
		{"annotation under sealed parent", `{"properties": {"id": {"x-subject": true}, "card": {"x-pii": true, "properties": {"n": {"x-searchable": true}}}}}`, "/properties/card/properties/n", "sealed whole"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile("crm.public.customers", 1, []byte(c.doc))
			var se *SchemaError
			if !errors.Is(err, ErrInvalidSchema) || !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SchemaError wrapping ErrInvalidSchema", err)
			}
			if se.Pointer != c.pointer || !strings.Contains(se.Reason, c.reason) {
				t.Errorf("got pointer %q reason %q; want pointer %q reason containing %q", se.Pointer, se.Reason, c.pointer, c.reason)
			}
		})
	}
}

func TestCompileAnnotationLookalikesInValues(t *testing.T) {
	// "x-pii" inside a default or an enum is data, not an annotation.
	_, err := Compile("app.orders", 1, []byte(`{"properties": {"meta": {"type": "object", "default": {"x-pii": true}}, "k": {"enum": [{"x-subject": true}]}}}`))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
}

func TestValidSubject(t *testing.T) {
	for _, s := range []string{"crm.public.customers", "app.orders", "a-b.c_d.$e"} {
		if err := ValidSubject(s); err != nil {
			t.Errorf("ValidSubject(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "orders", "a.b.c.d", "a..b", "../etc", "a/b.c", "a.b ", ".a.b"} {
		if err := ValidSubject(s); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ValidSubject(%q) = %v, want ErrInvalidSubject", s, err)
		}
	}
}
