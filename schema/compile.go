package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Annotation keywords.
const (
	kwPII        = "x-pii"
	kwSubject    = "x-subject"
	kwDataGroup  = "x-data-group"
	kwRetention  = "x-retention"
	kwSearchable = "x-searchable"
	kwMask       = "x-mask"
)

var annotationKeys = []string{kwPII, kwSubject, kwDataGroup, kwRetention, kwSearchable, kwMask}

var (
	subjectRE   = regexp.MustCompile(`^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+){1,2}$`)
	dataGroupRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// ValidSubject checks a subject name: two or three dot-separated parts of
// letters, digits, '_', '$' or '-' (source.table or source.schema.table).
func ValidSubject(subject string) error {
	if len(subject) > 255 || !subjectRE.MatchString(subject) {
		return fmt.Errorf("%w %q: want <source>.<table> or <source>.<schema>.<table> (letters, digits, _ $ -), e.g. crm.public.customers", ErrInvalidSubject, subject)
	}
	return nil
}

// Canonical returns the canonical form of a schema document: compact JSON
// with object keys sorted and numbers kept as written. Two documents with
// the same canonical form are the same schema (Put is idempotent on it).
func Canonical(schemaJSON []byte) ([]byte, error) {
	doc, err := decodeDoc(schemaJSON)
	if err != nil {
		return nil, err
	}
	return marshalCanonical(doc)
}

func decodeDoc(schemaJSON []byte) (map[string]any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, &SchemaError{Reason: "not valid JSON: " + err.Error()}
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, &SchemaError{Reason: fmt.Sprintf("want a JSON Schema object, got %s", jsonKind(v))}
	}
	return doc, nil
}

func marshalCanonical(doc any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("schema: encode canonical form: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Compile checks and compiles a schema document for subject at version:
// JSON Schema draft 2020-12 (the default when $schema is absent), formats
// asserted, no external $ref, and the annotations described in the package
// doc. Errors are *SchemaError (ErrInvalidSchema) naming the JSON pointer.
func Compile(subject string, version int, schemaJSON []byte) (*Schema, error) {
	if err := ValidSubject(subject); err != nil {
		return nil, err
	}
	doc, err := decodeDoc(schemaJSON)
	if err != nil {
		return nil, err
	}
	raw, err := marshalCanonical(doc)
	if err != nil {
		return nil, err
	}
	compiled, err := compileJSONSchema(subject, doc)
	if err != nil {
		return nil, err
	}
	if t, ok := doc["type"]; ok && !typeAllows(t, "object") {
		return nil, &SchemaError{Pointer: "/type", Reason: "the root must accept objects: images are JSON objects"}
	}
	s := &Schema{Subject: subject, Version: version, Raw: raw, compiled: compiled, doc: doc}
	if err := annotate(s, doc); err != nil {
		return nil, err
	}
	// nil: every image goes to the library
	if s.fast, _ = compileFast(compiled); s.fast != nil && markFast(s.fast, s.annotated) != nil {
		s.fast = nil
	}
	return s, nil
}

// refusingLoader keeps schemas self-contained: an external $ref would make
// a version's meaning depend on a file or URL that can change, and would
// let an API client make the server read its files.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, errors.New("external $ref is not supported: a schema must be self-contained (use $defs)")
}

var englishPrinter = message.NewPrinter(language.English)

func compileJSONSchema(subject string, doc map[string]any) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	url := "stele:///schemas/" + subject + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, &SchemaError{Reason: err.Error()}
	}
	sch, err := c.Compile(url)
	if err == nil {
		return sch, nil
	}
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			leaf := firstLeaf(ve)
			return nil, &SchemaError{Pointer: jsonPointer(leaf.InstanceLocation), Reason: "not a valid JSON Schema (draft 2020-12): " + leaf.ErrorKind.LocalizedString(englishPrinter)}
		}
	}
	var le *jsonschema.LoadURLError
	if errors.As(err, &le) {
		return nil, &SchemaError{Reason: le.Err.Error() + " (reference " + le.URL + ")"}
	}
	return nil, &SchemaError{Reason: strings.ReplaceAll(err.Error(), url, "schema")}
}

func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		e = e.Causes[0]
	}
	return e
}

func jsonPointer(loc []string) string {
	var b strings.Builder
	for _, s := range loc {
		b.WriteByte('/')
		b.WriteString(escapePointer(s))
	}
	return b.String()
}

// annotator walks the schema's annotated positions and builds the groups.
type annotator struct {
	groups        []*Group
	rootRetention *Duration
	retentionSet  map[string]bool // groups whose subject field gave x-retention
	firstPII      map[string]string
	pii           []Field
}

func (a *annotator) group(name string) *Group {
	for _, g := range a.groups {
		if g.Name == name {
			return g
		}
	}
	g := &Group{Name: name}
	a.groups = append(a.groups, g)
	return g
}

// annotations holds one node's annotation values, type-checked.
type annotations struct {
	pii, subject, searchable bool
	group, retention, mask   string
	has                      map[string]bool
}

func readAnnotations(node map[string]any, ptr string) (annotations, error) {
	a := annotations{has: map[string]bool{}}
	for _, k := range annotationKeys {
		v, ok := node[k]
		if !ok {
			continue
		}
		a.has[k] = true
		at := ptr + "/" + k
		switch k {
		case kwPII, kwSubject, kwSearchable:
			b, ok := v.(bool)
			if !ok {
				return a, &SchemaError{Pointer: at, Reason: fmt.Sprintf("%s must be true or false, got %s", k, jsonKind(v))}
			}
			switch k {
			case kwPII:
				a.pii = b
			case kwSubject:
				a.subject = b
			default:
				a.searchable = b
			}
		case kwDataGroup, kwRetention, kwMask:
			s, ok := v.(string)
			if !ok {
				return a, &SchemaError{Pointer: at, Reason: fmt.Sprintf("%s must be a string, got %s", k, jsonKind(v))}
			}
			switch k {
			case kwDataGroup:
				if !dataGroupRE.MatchString(s) {
					return a, &SchemaError{Pointer: at, Reason: fmt.Sprintf("data group name %q: want 1-64 letters, digits, '_', '.' or '-'", s)}
				}
				a.group = s
			case kwRetention:
				if _, err := ParseDuration(s); err != nil {
					return a, &SchemaError{Pointer: at, Reason: err.Error()}
				}
				a.retention = s
			default:
				if !slices.Contains([]string{MaskNull, MaskStars, MaskLast4, MaskYear}, s) {
					return a, &SchemaError{Pointer: at, Reason: fmt.Sprintf("unknown mask %q: want \"null\", \"***\", \"last4\" or \"year\"", s)}
				}
				a.mask = s
			}
		}
	}
	return a, nil
}

func annotate(s *Schema, doc map[string]any) error {
	a := &annotator{retentionSet: map[string]bool{}, firstPII: map[string]string{}}
	root, err := readAnnotations(doc, "")
	if err != nil {
		return err
	}
	for _, k := range []string{kwPII, kwSubject, kwSearchable, kwMask} {
		if root.has[k] {
			return &SchemaError{Pointer: "/" + k, Reason: k + " belongs on a property, not on the schema root"}
		}
	}
	if root.retention != "" {
		d, _ := ParseDuration(root.retention)
		a.rootRetention = &d
	}
	group := DefaultGroup
	if root.group != "" {
		group = root.group
	}
	if err := a.walkProperties(doc, "", nil, group, ""); err != nil {
		return err
	}
	if err := scanMisplaced(doc, "", true); err != nil {
		return err
	}
	for _, g := range a.groups {
		if len(g.PII) > 0 && g.SubjectField == nil {
			return &SchemaError{Pointer: a.firstPII[g.Name], Reason: fmt.Sprintf("x-pii field in data group %q, which has no x-subject field: mark the property that names the data subject with \"x-subject\": true", g.Name)}
		}
		if !a.retentionSet[g.Name] && a.rootRetention != nil {
			g.Retention = *a.rootRetention
		}
	}
	s.byPath = make(map[string]int, len(a.pii))
	for i, f := range a.pii {
		s.byPath[f.Path.String()] = i
	}
	s.pii = a.pii
	for _, g := range a.groups {
		s.Groups = append(s.Groups, *g)
		if len(g.SubjectField) > 0 {
			s.annotated = append(s.annotated, g.SubjectField)
		}
	}
	for _, f := range a.pii {
		if !slices.ContainsFunc(s.annotated, f.Path.Equal) {
			s.annotated = append(s.annotated, f.Path)
		}
	}
	return nil
}

// walkProperties visits the properties of node (an honoured position).
// sealedAt is the pointer of an enclosing x-pii property, whose value is
// sealed whole, so nothing under it may carry annotations.
func (a *annotator) walkProperties(node map[string]any, ptr string, path Path, group, sealedAt string) error {
	props, ok := node["properties"].(map[string]any)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic group and field order
	for _, name := range names {
		child, ok := props[name].(map[string]any)
		if !ok {
			continue // a boolean schema carries no annotations
		}
		cptr := ptr + "/properties/" + escapePointer(name)
		cpath := append(slices.Clone(path), name)
		an, err := readAnnotations(child, cptr)
		if err != nil {
			return err
		}
		if sealedAt != "" && len(an.has) > 0 {
			return &SchemaError{Pointer: cptr, Reason: fmt.Sprintf("annotations inside PII property %s, which is sealed whole: annotate that property instead", sealedAt)}
		}
		g := group
		if an.group != "" {
			g = an.group
		}
		if an.subject {
			if t, ok := child["type"]; ok && (typeAllows(t, "object") || typeAllows(t, "array")) {
				return &SchemaError{Pointer: cptr + "/" + kwSubject, Reason: "the x-subject field must hold a scalar (string or number), not an object or array"}
			}
			grp := a.group(g)
			if grp.SubjectField != nil {
				return &SchemaError{Pointer: cptr + "/" + kwSubject, Reason: fmt.Sprintf("data group %q already has x-subject field %s; a group has exactly one (use x-data-group for another subject)", g, grp.SubjectField)}
			}
			grp.SubjectField = cpath
			if an.retention != "" {
				grp.Retention, _ = ParseDuration(an.retention)
				a.retentionSet[g] = true
			}
		} else if an.retention != "" {
			return &SchemaError{Pointer: cptr + "/" + kwRetention, Reason: "x-retention belongs on the data group's x-subject field or on the schema root"}
		}
		if !an.pii {
			for _, k := range []string{kwSearchable, kwMask} {
				if an.has[k] {
					return &SchemaError{Pointer: cptr + "/" + k, Reason: k + " applies only to a field with \"x-pii\": true"}
				}
			}
		} else {
			mask := an.mask
			if mask == "" {
				mask = MaskStars
			}
			f := Field{Path: cpath, Group: g, Searchable: an.searchable, Mask: mask}
			a.group(g).PII = append(a.group(g).PII, f)
			a.pii = append(a.pii, f)
			if _, ok := a.firstPII[g]; !ok {
				a.firstPII[g] = cptr
			}
		}
		sealed := sealedAt
		if an.pii && sealed == "" {
			sealed = cptr
		}
		if err := a.walkProperties(child, cptr, cpath, g, sealed); err != nil {
			return err
		}
	}
	return nil
}

// valueKeywords hold data, not subschemas: an "x-pii" key inside a default
// value is not an annotation.
var valueKeywords = map[string]bool{"default": true, "enum": true, "const": true, "examples": true}

// scanMisplaced refuses annotations anywhere but at honoured positions (the
// root and nested properties), where annotate reads them.
func scanMisplaced(node any, ptr string, honoured bool) error {
	switch n := node.(type) {
	case map[string]any:
		if !honoured {
			for _, k := range annotationKeys {
				if _, ok := n[k]; ok {
					return &SchemaError{Pointer: ptr + "/" + k, Reason: "privacy annotations are honoured only on the schema root and on properties reached through nested \"properties\" (not in items, $defs, allOf, anyOf, oneOf, additionalProperties...)"}
				}
			}
		}
		for k, v := range n {
			if valueKeywords[k] {
				continue
			}
			cptr := ptr + "/" + escapePointer(k)
			if k == "properties" && honoured {
				if props, ok := v.(map[string]any); ok {
					for name, sub := range props {
						if err := scanMisplaced(sub, cptr+"/"+escapePointer(name), true); err != nil {
							return err
						}
					}
					continue
				}
			}
			if err := scanMisplaced(v, cptr, false); err != nil {
				return err
			}
		}
	case []any:
		for i, v := range n {
			if err := scanMisplaced(v, fmt.Sprintf("%s/%d", ptr, i), false); err != nil {
				return err
			}
		}
	}
	return nil
}

// typeAllows reports whether a "type" keyword value admits the JSON type t.
func typeAllows(typ any, t string) bool {
	switch v := typ.(type) {
	case string:
		return v == t || (t == "integer" && v == "number")
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && (s == t || (t == "integer" && s == "number")) {
				return true
			}
		}
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
