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
	if len(v) < 2 || v[0] != '{' {
		return nil, false
	}
	if v[1] == '}' {
		return slices.Clone(v), len(v) == 2
	}
	type span struct{ name, start, end int } // name: index of the name's opening quote
	var stack [24]span
	ms := stack[:0]
	for i := 1; ; {
		ne, escaped, err := jsonscan.Str(v, i)
		if err != nil || escaped || ne >= len(v) || v[ne] != ':' {
			return nil, false
		}
		for _, c := range v[i+1 : ne-1] {
			if c >= 0x80 {
				return nil, false
			}
		}
		end, ok := canonicalAt(v, ne+1, true)
		if !ok || end >= len(v) {
			return nil, false
		}
		ms = append(ms, span{i, ne + 1, end})
		if v[end] == '}' {
			if end+1 != len(v) {
				return nil, false
			}
			break
		}
		if v[end] != ',' {
			return nil, false
		}
		i = end + 1
	}
	name := func(m span) []byte { return v[m.name : m.start-1] }
	slices.SortFunc(ms, func(a, b span) int { return bytes.Compare(name(a), name(b)) })
	for k := 1; k < len(ms); k++ {
		if bytes.Equal(name(ms[k-1]), name(ms[k])) {
			return nil, false
		}
	}
	out := make([]byte, 0, len(v))
	out = append(out, '{')
	for k, m := range ms {
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, v[m.name:m.end]...)
	}
	return append(out, '}'), true
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
