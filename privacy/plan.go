package privacy

import (
	"bytes"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/privacy/internal/jsonscan"
	"github.com/stele/stele/privacy/schema"
	"github.com/stele/stele/record"
)

// plan is a schema compiled for sealing: a tree of the PII paths and the
// subject fields, so one pass over an image finds everything sealing needs.
type plan struct {
	schema *schema.Schema
	root   *node
	groups []*groupPlan
}

type groupPlan struct {
	group     schema.Group
	index     int
	subject   string // SubjectField.String(), for errors
	retention string // period name prefix; "" when kept until erased
	// keys caches, by month and subject value, the keys Seal resolved, so
	// most records need neither the keyed hash naming the subject nor the
	// keystore. It holds subject values, so it is bounded, and erasure
	// removes the erased subject's entries.
	keys keyCache[groupKeys]
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
	paths [numSides]string // "after.address.street" for each side
	// aadTail is what follows the record id in the associated data, up to
	// the kid: "\x00after.address.street\x00".
	aadTail [numSides][]byte
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
		gp.keys.max = sealKeyCacheSize
		if !g.Retention.IsZero() {
			gp.retention = g.Retention.String() + "/"
		}
		p.groups = append(p.groups, gp)
		if len(g.PII) > 0 && len(g.SubjectField) > 0 {
			n := p.root.at(g.SubjectField)
			n.subjectOf = append(n.subjectOf, gi)
		}
		for _, f := range g.PII {
			fp := &fieldPlan{field: f, group: gp, name: f.Path.String()}
			for side, sn := range sideNames {
				fp.paths[side] = sn + "." + fp.name
				fp.aadTail[side] = []byte("\x00" + fp.paths[side] + "\x00")
			}
			p.root.at(f.Path).field = fp
		}
	}
	return p
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

// scan finds in the object image img the non-null values of sealed
// fields (in document order, appended to leaves) and the first value of
// each group's subject field (set in subjects, indexed by group, where not
// set yet). A non-object image holds nothing to seal.
func (n *node) scan(img []byte, leaves []leaf, subjects []span) ([]leaf, error) {
	start := jsonscan.Space(img, 0)
	if jsonscan.Kind(img, start) != jsonscan.Object {
		return leaves, nil
	}
	w := walker{img: img, leaves: leaves, subjects: subjects}
	end, err := w.object(n, start, 0)
	if err == nil && jsonscan.Space(img, end) != len(img) {
		err = fmt.Errorf("%w: data after the object", jsonscan.ErrSyntax)
	}
	return w.leaves, err
}

type walker struct {
	img      []byte
	leaves   []leaf
	subjects []span
}

func (w *walker) object(n *node, i, depth int) (int, error) {
	return jsonscan.Members(w.img, i, depth, func(lit []byte, v int) (int, error) {
		name := lit[1 : len(lit)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(jsonscan.Unquote(lit))
		}
		child := n.children[string(name)]
		if child == nil {
			return jsonscan.Skip(w.img, v, depth+1)
		}
		var end int
		var err error
		k := jsonscan.Kind(w.img, v)
		if k == jsonscan.Object && child.field == nil && child.children != nil {
			end, err = w.object(child, v, depth+1)
		} else {
			end, err = jsonscan.Skip(w.img, v, depth+1)
		}
		if err != nil {
			return 0, err
		}
		for _, g := range child.subjectOf {
			if w.subjects[g].end == 0 {
				w.subjects[g] = span{v, end}
			}
		}
		if child.field != nil && k != jsonscan.Null {
			// Absence of a value is not personal data; keeping the null
			// readable keeps "was it set?" answerable.
			w.leaves = append(w.leaves, leaf{child.field, span{v, end}})
		}
		return end, nil
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
