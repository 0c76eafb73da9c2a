// Package schema is Stele's schema registry: one JSON Schema (draft 2020-12)
// per source table or event type, versioned, persisted as one file per
// version, and compiled once into a validator plus the privacy annotations
// the sealer needs (which fields are PII, whose they are, how long they are
// kept, how analysts see them).
//
// Subjects are named <source>.<table>, or <source>.<schema>.<table> for
// sources with a database schema: crm.public.customers, app.orders.
//
// Annotations on properties (see docs/privacy.md, "Schemas and annotations"):
//
//	x-pii: true           the value is personal data and is sealed
//	x-subject: true       the value names the data subject of its data group
//	x-data-group: "name"  the group (default "default"); children inherit it
//	x-retention: "P7Y"    ISO 8601 retention of the group, on its subject
//	                      field or on the schema root (default of all groups)
//	x-searchable: true    a PII field that gets a keyed blind index
//	x-mask: "***"         how analysts see a PII field: "null", "***"
//	                      (default), "last4" or "year"
//
// Annotations are honoured only on the root and on properties reached
// through nested "properties"; anywhere else (items, $defs, anyOf...) they
// are refused rather than silently ignored, since an ignored x-pii would
// leave personal data in clear in an immutable log.
//
// A Schema is immutable once compiled and safe for concurrent use.
package schema

import (
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Sentinel errors; the typed errors below wrap them.
var (
	ErrInvalidSchema  = errors.New("invalid schema")
	ErrIncompatible   = errors.New("incompatible schema")
	ErrNotFound       = errors.New("schema not found")
	ErrInvalidSubject = errors.New("invalid subject name")
	ErrInvalidRecord  = errors.New("record does not match its schema")
	// ErrNoSubjectValue: an image lacks the subject field of a group whose
	// PII fields it carries, so the sealer cannot tell whose data it is.
	ErrNoSubjectValue = errors.New("image has no value for the data subject field")
)

// SchemaError reports an invalid schema: Pointer is the JSON pointer into
// the schema document ("/properties/email/x-retention"), Reason says what
// is wrong and what is expected.
type SchemaError struct {
	Pointer string
	Reason  string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("invalid schema at %s: %s", pointerOrRoot(e.Pointer), e.Reason)
}

// Unwrap lets errors.Is find ErrInvalidSchema.
func (e *SchemaError) Unwrap() error { return ErrInvalidSchema }

// IncompatibleError reports a schema that may not follow the previous
// version: Pointer names the place in the new schema, Reason the rule broken.
type IncompatibleError struct {
	Subject string
	Version int // the latest version, the one the new schema was checked against
	Pointer string
	Reason  string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("schema for %s is incompatible with version %d at %s: %s", e.Subject, e.Version, pointerOrRoot(e.Pointer), e.Reason)
}

// Unwrap lets errors.Is find ErrIncompatible.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// ValidationError reports an image that does not match its schema. Field is
// the JSON pointer of the offending value in the image ("/address/zip",
// "" for the whole image); Reason never quotes the value, which may be PII.
type ValidationError struct {
	Subject string
	Version int
	Field   string
	Reason  string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("record does not match schema %s version %d at %s: %s", e.Subject, e.Version, pointerOrRoot(e.Field), e.Reason)
}

// Unwrap lets errors.Is find ErrInvalidRecord.
func (e *ValidationError) Unwrap() error { return ErrInvalidRecord }

func pointerOrRoot(p string) string {
	if p == "" {
		return "the root"
	}
	return p
}

// Path is a property path inside an image: ["address", "street"].
type Path []string

// String is the dotted form, address.street.
func (p Path) String() string { return strings.Join(p, ".") }

// Pointer is the JSON pointer form, /address/street.
func (p Path) Pointer() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteByte('/')
		b.WriteString(escapePointer(s))
	}
	return b.String()
}

// Equal reports whether p and q name the same property.
func (p Path) Equal(q Path) bool {
	if len(p) != len(q) {
		return false
	}
	for i := range p {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// Lookup returns the value at p in an image decoded by DecodeImage, and
// whether it is present (a JSON null is present, with value nil).
func (p Path) Lookup(image map[string]any) (any, bool) {
	var cur any = image
	for _, k := range p {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Masks an analyst may be shown instead of a PII value.
const (
	MaskNull  = "null"  // the field appears as null
	MaskStars = "***"   // the field appears as "***" (the default)
	MaskLast4 = "last4" // "***" followed by the value's last four characters
	MaskYear  = "year"  // only the year of a date or date-time
)

// DefaultGroup is the data group of properties without x-data-group.
const DefaultGroup = "default"

// Field is one PII property.
type Field struct {
	Path Path
	// Group is the name of the data group the field belongs to.
	Group string
	// Searchable fields get a keyed blind index (x-searchable).
	Searchable bool
	// Mask is how analysts see the field (x-mask, default "***").
	Mask string
}

// Group is one data group: the PII fields that belong to one data subject
// and share one retention period.
type Group struct {
	Name string
	// SubjectField holds the value naming the data subject (x-subject);
	// nil for a group with no PII that declares none.
	SubjectField Path
	// Retention is how long the group's PII is kept (x-retention); zero
	// means no retention limit was declared: kept until erased.
	Retention Duration
	// PII lists the group's PII fields in schema order.
	PII []Field
}

// Schema is one compiled version of a subject's schema.
type Schema struct {
	Subject string
	Version int
	// Raw is the schema document in canonical form (compact, keys sorted),
	// exactly as persisted.
	Raw []byte
	// Groups are the data groups in order of first appearance; a group is
	// listed when it has PII or a subject field.
	Groups []Group

	compiled *jsonschema.Schema
	// fast validates image bytes without the library; nil when the schema
	// uses keywords outside its subset.
	fast *fastNode
	// doc is the decoded document, read by the compatibility check.
	doc map[string]any
	// byPath indexes PII fields by Path.String() for PIIField.
	byPath map[string]int // index into pii
	pii    []Field
	// annotated are the subject fields, then the PII fields not already
	// listed (Annotated).
	annotated []Path
}

// Group returns the named data group.
func (s *Schema) Group(name string) (*Group, bool) {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i], true
		}
	}
	return nil, false
}

// HasPII reports whether any field of the schema is PII.
func (s *Schema) HasPII() bool { return len(s.pii) > 0 }

// PIIField returns the PII field at p and its group, or false when p is not
// PII.
func (s *Schema) PIIField(p Path) (Field, *Group, bool) {
	i, ok := s.byPath[p.String()]
	if !ok {
		return Field{}, nil, false
	}
	f := s.pii[i]
	g, _ := s.Group(f.Group)
	return f, g, true
}

// SubjectID returns the data subject named by g's subject field in image:
// a string as is, a number or boolean in its JSON text. It fails with
// ErrNoSubjectValue when the field is absent, null, or not a scalar.
func (g *Group) SubjectID(image map[string]any) (string, error) {
	if len(g.SubjectField) == 0 {
		return "", fmt.Errorf("%w: data group %q declares no x-subject field", ErrNoSubjectValue, g.Name)
	}
	v, ok := g.SubjectField.Lookup(image)
	if !ok || v == nil {
		return "", fmt.Errorf("%w: data group %q needs field %s", ErrNoSubjectValue, g.Name, g.SubjectField)
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			return "", fmt.Errorf("%w: data group %q: field %s is empty", ErrNoSubjectValue, g.Name, g.SubjectField)
		}
		return v, nil
	case fmt.Stringer: // json.Number
		return v.String(), nil
	case bool:
		return fmt.Sprint(v), nil
	default:
		return "", fmt.Errorf("%w: data group %q: field %s is not a string or number", ErrNoSubjectValue, g.Name, g.SubjectField)
	}
}
