package privacy

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/internal/jsonscan"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// plan is a schema compiled for sealing: a tree of the PII paths and the
// subject fields, so one pass over an image finds everything sealing needs.
type plan struct {
	schema *schema.Schema
	root   *node
	groups []*groupPlan
	// byMark is the node of each of the schema's annotated properties
	// (nil for one sealing does not need).
	byMark []*node
}

type groupPlan struct {
	group   schema.Group
	index   int
	subject string // SubjectField.String(), for errors
	retains bool   // the group has a retention, so a key per month
	// keys caches, by month and subject value, the keys Seal resolved, so
	// most records need neither the keyed hash naming the subject nor the
	// keystore. It holds subject values, so it is bounded, and erasure
	// removes the erased subject's entries.
	keys keyCache[groupKeys]
	// period is the period key groupKeys looked up last.
	period atomic.Pointer[periodEntry]
}

// periodEntry is a period's key, valid while the Guard's epoch is epoch.
type periodEntry struct {
	month int
	epoch uint64
	kid   string
	key   []byte
}

const sealKeyCacheSize = 1 << 14 // per data group and schema version

// node is one level of the path tree; field is set on a sealed leaf, and
// subjectOf lists the groups whose subject field ends here.
type node struct {
	children  map[string]*node
	field     *fieldPlan
	subjectOf []int
}

type fieldPlan struct {
	field schema.Field
	group *groupPlan
	name  string           // field.Path.String(), keys the blind index
	token string           // the path as a compact envelope's field list spells it
	paths [numSides]string // "after.address.street" for each side
}

// Record sides, in the order they are sealed.
const (
	sideKey = iota
	sideBefore
	sideAfter
	numSides
)

var sideNames = [numSides]string{"key", "before", "after"}

func compilePlan(s *schema.Schema) *plan {
	p := &plan{schema: s, root: &node{}}
	for gi, g := range s.Groups {
		gp := &groupPlan{group: g, index: gi, subject: g.SubjectField.String()}
		gp.keys.init(sealKeyCacheSize)
		gp.retains = !g.Retention.IsZero()
		p.groups = append(p.groups, gp)
		if len(g.PII) > 0 && len(g.SubjectField) > 0 {
			n := p.root.at(g.SubjectField)
			n.subjectOf = append(n.subjectOf, gi)
		}
		for _, f := range g.PII {
			fp := &fieldPlan{field: f, group: gp, name: f.Path.String(), token: fieldToken(f.Path)}
			for side, sn := range sideNames {
				fp.paths[side] = sn + "." + fp.name
			}
			p.root.at(f.Path).field = fp
		}
	}
	for _, path := range s.Annotated() {
		p.byMark = append(p.byMark, p.root.find(path))
	}
	return p
}

// find returns the node of path, or nil.
func (n *node) find(path schema.Path) *node {
	for _, part := range path {
		if n = n.children[part]; n == nil {
			return nil
		}
	}
	return n
}

// at returns the node of path, creating the nodes on the way.
func (n *node) at(path schema.Path) *node {
	for _, part := range path {
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
	return n
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

// span is a value's place in an image.
type span struct{ start, end int }

// leaf is a sealed field's value found in an image.
type leaf struct {
	field *fieldPlan
	span
}

// finder collects from one image what sealing needs: the non-null values
// of sealed fields (leaves, in document order) and the first value of each
// group's subject field (subjects, by group).
type finder struct {
	img      []byte
	plan     *plan
	leaves   []leaf
	subjects []span
}

// found records that the value of node n is img[start:end].
func (f *finder) found(n *node, start, end int) {
	for _, g := range n.subjectOf {
		if f.subjects[g].end == 0 {
			f.subjects[g] = span{start, end}
		}
	}
	if n.field != nil && jsonscan.Kind(f.img, start) != jsonscan.Null {
		// Absence of a value is not personal data; keeping the null
		// readable keeps "was it set?" answerable.
		f.leaves = append(f.leaves, leaf{n.field, span{start, end}})
	}
}

// Found is found for the schema's annotated property i (a
// schema.Finder).
func (f *finder) Found(i, start, end int) {
	if n := f.plan.byMark[i]; n != nil {
		f.found(n, start, end)
	}
}

// scan walks the image from the plan's root to find its values. A
// non-object image holds nothing to seal.
func (f *finder) scan(root *node) error {
	start := jsonscan.Space(f.img, 0)
	if jsonscan.Kind(f.img, start) != jsonscan.Object {
		return nil
	}
	end, err := f.object(root, start, 0)
	if err == nil && jsonscan.Space(f.img, end) != len(f.img) {
		err = fmt.Errorf("%w: data after the object", jsonscan.ErrSyntax)
	}
	return err
}

func (f *finder) object(n *node, i, depth int) (int, error) {
	return jsonscan.Members(f.img, i, depth, func(lit []byte, v int) (int, error) {
		name := lit[1 : len(lit)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(jsonscan.Unquote(lit))
		}
		child := n.children[string(name)]
		if child == nil {
			return jsonscan.Skip(f.img, v, depth+1)
		}
		var end int
		var err error
		if jsonscan.Kind(f.img, v) == jsonscan.Object && child.field == nil && child.children != nil {
			end, err = f.object(child, v, depth+1)
		} else {
			end, err = jsonscan.Skip(f.img, v, depth+1)
		}
		if err == nil {
			f.found(child, v, end)
		}
		return end, err
	})
}

// scalarText is the text a subject value or a searchable value is keyed
// by: a string's contents, or a number's or boolean's literal, so 7 and
// "7" name the same subject.
func scalarText(raw []byte) (string, error) {
	b, err := scalarBytes(raw)
	return string(b), err
}

// scalarBytes is scalarText without a copy where none is needed.
func scalarBytes(raw []byte) ([]byte, error) {
	switch k := jsonscan.Kind(raw, 0); k {
	case jsonscan.String:
		if body := raw[1 : len(raw)-1]; bytes.IndexByte(body, '\\') < 0 {
			return body, nil
		}
		return []byte(jsonscan.Unquote(raw)), nil
	case jsonscan.Number, jsonscan.Bool:
		return raw, nil
	default:
		return nil, fmt.Errorf("is %s, expected a string, number or boolean", kindName(k))
	}
}

func kindName(k byte) string {
	switch k {
	case jsonscan.Object:
		return "an object"
	case jsonscan.Array:
		return "an array"
	case jsonscan.Null:
		return "null"
	}
	return "not a scalar"
}

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
		nameStr := jsonscan.Unquote(name)
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

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
