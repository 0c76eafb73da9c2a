package record

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/go-json-experiment/json/jsontext"
)

// The canonical-JSON contract every source shares: images, keys and actors
// are stored in one canonical form, so the same value always hashes to the
// same bytes whichever source captured it, and changed fields compare
// canonical values.

// Canonical returns v in Stele's canonical JSON form.
func Canonical(v []byte) ([]byte, error) {
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
	b, err := topLevel("before", before)
	if err != nil {
		return nil, err
	}
	a, err := topLevel("after", after)
	if err != nil {
		return nil, err
	}
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
	return out, nil
}

func topLevel(path string, obj json.RawMessage) (map[string][]byte, error) {
	if len(obj) == 0 {
		return nil, nil
	}
	members, err := objectMembers(obj, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(members))
	for _, m := range members {
		// Compare canonical forms, so member order and spacing inside a
		// value are not changes even when the caller's images are not
		// canonical.
		if out[m.name], err = Canonical(m.value); err != nil {
			return nil, syntaxErr(m.path, err)
		}
	}
	return out, nil
}
