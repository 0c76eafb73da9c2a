package record

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/internal/jsonscan"
)

// The canonical-JSON contract every source shares: images, keys and actors
// are stored in one canonical form, so the same value always hashes to the
// same bytes whichever source captured it, and changed fields compare
// canonical values.

// Canonical returns v in Stele's canonical JSON form.
func Canonical(v []byte) ([]byte, error) {
	if out, ok := sortedObject(v); ok {
		return out, nil
	}
	val := jsontext.Value(slices.Clone(v))
	if err := val.Canonicalize(canonicalOptions...); err != nil {
		return nil, err
	}
	return val, nil
}

// ChangedFields names the top-level fields whose canonical value differs
// between two images. With one image missing, every field of the other has
// changed (an insert or a delete).
func ChangedFields(before, after json.RawMessage) ([]string, error) {
	p := new(parser)
	b, err := p.topLevel("before", before)
	if err != nil {
		return nil, err
	}
	a, err := p.topLevel("after", after)
	if err != nil {
		return nil, err
	}
	return changed(b, a), nil
}

// ChangedCanonical is ChangedFields for images Canonical returned: their
// member values are canonical already and compare as they are, with no
// canonicalising of each.
func ChangedCanonical(before, after json.RawMessage) ([]string, error) {
	if out, ok := changedSmall(before, after); ok {
		return out, nil
	}
	return new(parser).changedCanonical(before, after)
}

// smallImage is how many members changedSmall compares on the stack.
const smallImage = 32

// imageMember is a member of an image: its name (unquoted) and value.
type imageMember struct{ name, value []byte }

// changedSmall is changedCanonical for images of up to smallImage members
// whose names need no unescaping, on the stack: a Kafka source computes it
// for every event, and the parser (a token decoder and a slab of members,
// a few KiB) that changedCanonical builds for each call was about a third
// of decoding one. Anything else reports ok false, for changedCanonical
// to decide and name what is wrong.
func changedSmall(before, after json.RawMessage) (_ []string, ok bool) {
	var bs, as [smallImage]imageMember
	b, ok := smallMembers(before, bs[:0])
	if !ok {
		return nil, false
	}
	a, ok := smallMembers(after, as[:0])
	if !ok {
		return nil, false
	}
	var out []string
	for _, am := range a {
		i := slices.IndexFunc(b, func(bm imageMember) bool { return bytes.Equal(bm.name, am.name) })
		if i < 0 || !bytes.Equal(am.value, b[i].value) {
			out = append(out, string(am.name))
		}
	}
	for _, bm := range b {
		if !slices.ContainsFunc(a, func(am imageMember) bool { return bytes.Equal(am.name, bm.name) }) {
			out = append(out, string(bm.name))
		}
	}
	slices.Sort(out)
	return out, true
}

// smallMembers appends the members of the object img (none when img is
// empty) to dst, which it does not grow: ok is false past its capacity,
// for an escaped name, or when img is not exactly one valid object.
func smallMembers(img []byte, dst []imageMember) (_ []imageMember, ok bool) {
	if len(img) == 0 {
		return dst, true
	}
	if img[0] != '{' {
		return nil, false
	}
	full := false
	end, err := jsonscan.Members(img, 0, 0, func(lit []byte, v int) (int, error) {
		end, err := jsonscan.Skip(img, v, 1)
		if err != nil {
			return 0, err
		}
		if len(dst) == cap(dst) || bytes.IndexByte(lit, '\\') >= 0 {
			full = true
		} else {
			dst = append(dst, imageMember{lit[1 : len(lit)-1], img[v:end]})
		}
		return end, nil
	})
	if err != nil || full || end != len(img) {
		return nil, false
	}
	return dst, true
}

// sortedObject is Canonical's fast path for what change-data-capture
// sources mostly hold: an object in one line whose member values are
// canonical already but whose members come in the table's column order.
// It sorts the members, in one copy. Anything else (whitespace, escapes,
// non-ASCII names, a repeated name, a nested value that is not canonical)
// reports ok false, for Canonicalize to handle and to name what is wrong.
func sortedObject(v []byte) (_ []byte, ok bool) {
	var stack [24]imember
	ms, end, inOrder, ok := canonicalMembers(v, 0, stack[:0])
	if !ok || end != len(v) {
		return nil, false
	}
	if inOrder {
		return slices.Clone(v), true
	}
	if !sortMembers(v, ms) {
		return nil, false
	}
	return appendMembers(make([]byte, 0, len(v)), v, ms), true
}

// span is where something lies in a byte slice: [start, end).
type span struct{ start, end int }

// imember is a member of an image: where its name's contents (no quotes)
// and its value lie.
type imember struct{ name, value span }

// canonicalMembers walks the object at v[i], whose member values must be
// canonical (canonicalAt, sorted) and whose names must be plain ASCII, with
// no whitespace anywhere. It appends each member to ms and returns the
// index after the object and whether the names came in increasing order,
// which makes the object canonical as it is. ok is false for anything else.
func canonicalMembers(v []byte, i int, ms []imember) (_ []imember, end int, inOrder, ok bool) {
	if i >= len(v) || v[i] != '{' {
		return nil, 0, false, false
	}
	if i+1 < len(v) && v[i+1] == '}' {
		return ms, i + 2, true, true
	}
	inOrder = true
	for i++; ; {
		ne, escaped, err := jsonscan.Str(v, i)
		if err != nil || escaped || ne >= len(v) || v[ne] != ':' {
			return nil, 0, false, false
		}
		name := span{i + 1, ne - 1}
		if !ascii(v[name.start:name.end]) {
			return nil, 0, false, false
		}
		if n := len(ms); n > 0 && inOrder && bytes.Compare(v[name.start:name.end], v[ms[n-1].name.start:ms[n-1].name.end]) <= 0 {
			inOrder = false
		}
		end, ok := canonicalWalk(v, ne+1, true, 1)
		if !ok || end >= len(v) {
			return nil, 0, false, false
		}
		ms = append(ms, imember{name, span{ne + 1, end}})
		switch v[end] {
		case '}':
			return ms, end + 1, inOrder, true
		case ',':
			i = end + 1
		default:
			return nil, 0, false, false
		}
	}
}

// sortMembers puts the members of an object of v in name order (of the
// names' bytes, which for ASCII is the canonical order); ok is false when
// a name is given twice.
func sortMembers(v []byte, ms []imember) (ok bool) {
	name := func(m imember) []byte { return v[m.name.start:m.name.end] }
	slices.SortFunc(ms, func(a, b imember) int { return bytes.Compare(name(a), name(b)) })
	for k := 1; k < len(ms); k++ {
		if bytes.Equal(name(ms[k-1]), name(ms[k])) {
			return false
		}
	}
	return true
}

// appendMembers appends the object of v's members ms, in their order.
func appendMembers(dst, v []byte, ms []imember) []byte {
	dst = append(dst, '{')
	for k, m := range ms {
		if k > 0 {
			dst = append(dst, ',')
		}
		// The name's quotes and the colon sit around its contents.
		dst = append(dst, v[m.name.start-1:m.value.end]...)
	}
	return append(dst, '}')
}

// changedCanonical is ChangedFields for images already canonical, whose
// member values are then canonical too and compare as they are.
func (p *parser) changedCanonical(before, after json.RawMessage) ([]string, error) {
	// Both images were checked when they were canonicalised: duplicates
	// and bad UTF-8 need not be looked for again.
	var b, a []member
	var err error
	if len(before) > 0 {
		if b, err = p.members(before, "before", jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
			return nil, err
		}
	}
	if len(after) > 0 {
		if a, err = p.members(after, "after", jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
			return nil, err
		}
	}
	if len(a)*len(b) > 1024 {
		return changed(memberMap(b), memberMap(a)), nil
	}
	// Small images: a scan beats building two maps.
	var out []string
	for _, am := range a {
		i := slices.IndexFunc(b, func(bm member) bool { return bm.name == am.name })
		if i < 0 || !bytes.Equal(am.value, b[i].value) {
			out = append(out, am.name)
		}
	}
	for _, bm := range b {
		if !slices.ContainsFunc(a, func(am member) bool { return am.name == bm.name }) {
			out = append(out, bm.name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func memberMap(ms []member) map[string][]byte {
	out := make(map[string][]byte, len(ms))
	for _, m := range ms {
		out[m.name] = m.value
	}
	return out
}

func changed(b, a map[string][]byte) []string {
	var out []string
	for name, av := range a {
		if bv, ok := b[name]; !ok || !bytes.Equal(av, bv) {
			out = append(out, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (p *parser) topLevel(path string, obj json.RawMessage) (map[string][]byte, error) {
	if len(obj) == 0 {
		return nil, nil
	}
	members, err := p.members(obj, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(members))
	for _, m := range members {
		// Compare canonical forms, so member order and spacing inside a
		// value are not changes even when the caller's images are not
		// canonical.
		if out[m.name], err = Canonical(m.value); err != nil {
			return nil, syntaxErr(m.path(), err)
		}
	}
	return out, nil
}
