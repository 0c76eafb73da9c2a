package schema

import (
	"errors"
	"strings"
	"testing"
)

// base is the previous version every compatibility case starts from.
const base = `{
  "type": "object",
  "required": ["id"],
  "properties": {
    "id": {"type": "integer", "x-subject": true},
    "email": {"type": "string", "x-pii": true, "x-mask": "***"},
    "address": {"type": "object", "x-pii": true, "properties": {"street": {"type": "string"}}},
    "status": {"type": "string", "enum": ["new", "paid"]},
    "amount": {"type": "integer", "minimum": 0, "maximum": 100},
    "code": {"type": "string", "maxLength": 10},
    "tags": {"type": "array", "items": {"type": "string"}},
    "note": {"type": ["string", "null"]},
    "ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
  }
}`

// edit applies a change to base given as a list of old→new replacements.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	doc := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			t.Fatalf("fixture has no %q", pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func TestCompatible(t *testing.T) {
	cases := []struct {
		name  string
		pairs []string
	}{
		{"identical", nil},
		{"optional property added", []string{`"note":`, `"extra": {"type": "string"}, "note":`}},
		{"type widened integer to number", []string{`"amount": {"type": "integer"`, `"amount": {"type": "number"`}},
		{"null allowed", []string{`"code": {"type": "string"`, `"code": {"type": ["string", "null"]`}},
		{"enum value added", []string{`["new", "paid"]`, `["new", "paid", "refunded"]`}},
		{"required dropped", []string{`"required": ["id"],`, ``}},
		{"bounds relaxed", []string{`"minimum": 0, "maximum": 100`, `"minimum": -5, "maximum": 1000`}},
		{"maxLength removed", []string{`, "maxLength": 10`, ``}},
		{"description added", []string{`"tags": {`, `"tags": {"description": "free labels", `}},
		{"property removed, additional allowed", []string{`"tags": {"type": "array", "items": {"type": "string"}},`, ``}},
		{"new PII field", []string{`"note": {"type": ["string", "null"]}`, `"note": {"type": ["string", "null"], "x-pii": true}`}},
		{"mask strengthened", []string{`"x-pii": true, "x-mask": "***"`, `"x-pii": true, "x-mask": "null"`}},
		{"retention changed", []string{`"x-subject": true`, `"x-subject": true, "x-retention": "P1Y"`}},
		{"searchable added", []string{`"x-mask": "***"`, `"x-mask": "***", "x-searchable": true`}},
		{"PII field now sealed under a PII parent", []string{
			`"email": {"type": "string", "x-pii": true, "x-mask": "***"}`,
			`"contact": {"type": "object", "x-pii": true, "properties": {"email": {"type": "string"}}}, "email": {"type": "string", "x-pii": true, "x-mask": "***"}`}},
	}
	prev := mustCompile(t, base)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next := mustCompile(t, edit(t, c.pairs...))
			if err := CheckCompatible(prev, next); err != nil {
				t.Errorf("CheckCompatible: %v", err)
			}
		})
	}
}

func TestIncompatible(t *testing.T) {
	cases := []struct {
		name    string
		pairs   []string
		pointer string
		reason  string
	}{
		{"new required property", []string{`"required": ["id"]`, `"required": ["id", "status"]`}, "/required", `property "status" became required`},
		{"type narrowed number to integer", nil, "", ""}, // filled below
		{"type narrowed, null removed", []string{`"note": {"type": ["string", "null"]}`, `"note": {"type": "string"}`}, "/properties/note/type", "null values were valid"},
		{"type added", []string{`"ref": {"anyOf"`, `"ref": {"type": "string", "anyOf"`}, "/properties/ref/type", "type \"string\" was added"},
		{"enum value removed", []string{`["new", "paid"]`, `["new"]`}, "/properties/status/enum", `enum value "paid" was removed`},
		{"enum added", []string{`"code": {"type": "string"`, `"code": {"type": "string", "enum": ["a"]`}, "/properties/code/enum", "enum was added"},
		{"minimum raised", []string{`"minimum": 0`, `"minimum": 1`}, "/properties/amount/minimum", "minimum rose from 0 to 1"},
		{"maxLength lowered", []string{`"maxLength": 10`, `"maxLength": 5`}, "/properties/code/maxLength", "maxLength fell"},
		{"pattern added", []string{`"code": {"type": "string"`, `"code": {"type": "string", "pattern": "^a"`}, "/properties/code/pattern", "pattern was added"},
		{"items narrowed", []string{`"items": {"type": "string"}`, `"items": {"type": "string", "minLength": 1}`}, "/properties/tags/items/minLength", "minLength 1 was added"},
		{"additionalProperties closed", []string{`"type": "object",`, `"type": "object", "additionalProperties": false,`}, "/additionalProperties", "additionalProperties became stricter"},
		{"property removed, additional closed", []string{`"type": "object",`, `"type": "object", "additionalProperties": false,`, `"tags": {"type": "array", "items": {"type": "string"}},`, ``}, "/additionalProperties", `property "tags" was removed`},
		{"unprovable keyword changed", []string{`{"type": "integer"}]`, `{"type": "boolean"}]`}, "/properties/ref/anyOf", "keyword anyOf changed"},
		{"PII lost", []string{`"email": {"type": "string", "x-pii": true, "x-mask": "***"}`, `"email": {"type": "string"}`}, "/properties/email", "was x-pii in version 1 and may not lose it"},
		{"PII property removed", []string{`"email": {"type": "string", "x-pii": true, "x-mask": "***"},`, ``}, "/properties/email", "may not lose it"},
		{"PII sealed whole split up", []string{`"address": {"type": "object", "x-pii": true, "properties": {"street": {"type": "string"}}}`, `"address": {"type": "object", "properties": {"street": {"type": "string", "x-pii": true}}}`}, "/properties/address", "address was x-pii"},
		{"PII changed group", []string{`"x-pii": true, "x-mask": "***"`, `"x-pii": true, "x-mask": "***", "x-data-group": "hr"`, `"note": {`, `"hr_id": {"type": "string", "x-subject": true, "x-data-group": "hr"}, "note": {`}, "/properties/email", `may not move to "hr"`},
		{"mask weakened", []string{`"x-mask": "***"`, `"x-mask": "last4"`}, "/properties/email/x-mask", `from "***" to "last4"`},
		{"subject moved", []string{`"id": {"type": "integer", "x-subject": true}`, `"id": {"type": "integer"}`, `"note": {"type": ["string", "null"]}`, `"note": {"type": ["string", "null"], "x-subject": true}`}, "/properties/id", "may not move (now note)"},
	}
	cases[1].pairs = []string{`"amount": {"type": "integer"`, `"amount": {"type": "number"`}
	prev := mustCompile(t, base)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if i == 1 {
				// number → integer: start from a version with number.
				p, err := Compile("crm.public.customers", 1, []byte(edit(t, c.pairs...)))
				if err != nil {
					t.Fatal(err)
				}
				err = CheckCompatible(p, prev)
				checkIncompatible(t, err, "/properties/amount/type", "number values were valid")
				return
			}
			next := mustCompile(t, edit(t, c.pairs...))
			checkIncompatible(t, CheckCompatible(prev, next), c.pointer, c.reason)
		})
	}
}

func checkIncompatible(t *testing.T, err error, pointer, reason string) {
	t.Helper()
	var ie *IncompatibleError
	if !errors.Is(err, ErrIncompatible) || !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *IncompatibleError wrapping ErrIncompatible", err)
	}
	if ie.Pointer != pointer || !strings.Contains(ie.Reason, reason) {
		t.Errorf("pointer %q reason %q; want pointer %q reason containing %q", ie.Pointer, ie.Reason, pointer, reason)
	}
}
