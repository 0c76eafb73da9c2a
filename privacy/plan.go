package privacy

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/privacy/schema"
	"github.com/stele/stele/record"
)

// plan is a schema compiled for sealing: a tree of the PII paths, so one
// pass over an image finds every field to seal.
type plan struct {
	schema *schema.Schema
	root   *node
	groups []*groupPlan
}

type groupPlan struct {
	group schema.Group
	index int
}

// node is one level of the path tree; field is set on a sealed leaf.
type node struct {
	children map[string]*node
	field    *fieldPlan
}

type fieldPlan struct {
	field schema.Field
	group *groupPlan
}

func compilePlan(s *schema.Schema) *plan {
	p := &plan{schema: s, root: &node{}}
	for gi, g := range s.Groups {
		gp := &groupPlan{group: g, index: gi}
		p.groups = append(p.groups, gp)
		for _, f := range g.PII {
			n := p.root
			for _, part := range f.Path {
				if n.children == nil {
					n.children = map[string]*node{}
				}
				c := n.children[part]
				if c == nil {
					c = &node{}
					n.children[part] = c
				}
				n = c
			}
			n.field = &fieldPlan{field: f, group: gp}
		}
	}
	return p
}

// SubjectName is the record subject in the schema registry:
// <source>.<schema>.<table>, or <source>.<table> when the source has no
// database schema.
func SubjectName(src record.Source) string {
	if src.Schema != "" {
		return src.Name + "." + src.Schema + "." + src.Table
	}
	return src.Name + "." + src.Table
}

// visit is called for each sealed path's value found in an image; it
// returns the bytes to put in its place.
type visit func(f *fieldPlan, path string, raw jsontext.Value) ([]byte, error)

// copyObject copies the object image to dst member by member, with each
// value appended by member (name unquoted; val valid only during the call).
// A non-object image is copied as it is. Images are canonical JSON, and
// member order and name bytes are kept, so the copy stays canonical.
func copyObject(dst, img []byte, member func(dst []byte, name string, val jsontext.Value) ([]byte, error)) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(img))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	if tok.Kind() != '{' {
		return append(dst, img...), nil
	}
	dst = append(dst, '{')
	first := true
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(append(dst, name...), ':')
		// A read value is valid only until the next read.
		nameStr := unquote(name)
		val, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		if dst, err = member(dst, nameStr, val); err != nil {
			return nil, err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// rewrite copies the object image to dst, replacing the values at the
// tree's sealed leaves with what fn returns.
func rewrite(dst []byte, img []byte, n *node, path string, fn visit) ([]byte, error) {
	return copyObject(dst, img, func(dst []byte, name string, val jsontext.Value) ([]byte, error) {
		child := n.children[name]
		switch {
		case child == nil:
			return append(dst, val...), nil
		case child.field != nil:
			if string(val) == "null" {
				// Absence of a value is not personal data; keeping the
				// null readable keeps "was it set?" answerable.
				return append(dst, val...), nil
			}
			out, err := fn(child.field, joinPath(path, name), val)
			if err != nil {
				return nil, err
			}
			return append(dst, out...), nil
		case val.Kind() == '{':
			return rewrite(dst, val, child, joinPath(path, name), fn)
		}
		return append(dst, val...), nil
	})
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func unquote(v jsontext.Value) string {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	if err := jsonUnmarshalString(v, &s); err != nil {
		return ""
	}
	return s
}

func jsonUnmarshalString(v jsontext.Value, s *string) error {
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '"' {
		return errors.New("not a string")
	}
	*s = tok.String()
	return nil
}

// scalarText is the text a subject value or a searchable value is keyed
// by: a string's contents, or a number's or boolean's literal, so 7 and
// "7" name the same subject.
func scalarText(raw jsontext.Value) (string, error) {
	switch raw.Kind() {
	case '"':
		var s string
		if err := jsonUnmarshalString(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case '0', 't', 'f':
		return string(raw), nil
	}
	return "", fmt.Errorf("is %s, expected a string, number or boolean", kindName(raw.Kind()))
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 'n':
		return "null"
	}
	return "not a scalar"
}

// lookup returns the raw value at path in an object image.
func lookup(img []byte, path schema.Path) (jsontext.Value, bool) {
	cur := jsontext.Value(img)
	for _, part := range path {
		dec := jsontext.NewDecoder(bytes.NewReader(cur))
		tok, err := dec.ReadToken()
		if err != nil || tok.Kind() != '{' {
			return nil, false
		}
		found := false
		for dec.PeekKind() != '}' {
			name, err := dec.ReadValue()
			if err != nil {
				return nil, false
			}
			match := unquote(name) == part
			val, err := dec.ReadValue()
			if err != nil {
				return nil, false
			}
			if match {
				cur, found = bytes.Clone(val), true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return cur, true
}
