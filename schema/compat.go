package schema

import (
	"fmt"
	"math/big"
	"reflect"
	"slices"
)

// CheckCompatible reports whether next may follow prev as the subject's
// next version. The rule is backward compatibility plus no weaker privacy:
//
//   - Data valid under prev stays valid under next: no property becomes
//     required; no type is narrowed (integer may widen to number, null may be
//     added, never removed); no enum value is removed and no enum or const is
//     added; no minimum/minLength/minItems rises and no maximum/maxLength/
//     maxItems falls, none is added; pattern, format and multipleOf may be
//     removed but not added or changed; additionalProperties may not become
//     false or stricter; a property may be removed only where additional
//     properties stay allowed. Adding optional properties is allowed: records
//     are assumed not to carry fields their schema did not declare.
//     Any other keyword ($ref, $defs, allOf, anyOf, oneOf, not, if/then/else,
//     patternProperties, dependentRequired...) must be unchanged, since the
//     registry cannot prove a change there compatible.
//   - PII protection is not weakened: a property that was x-pii stays x-pii
//     (or is sealed whole under an x-pii parent) in the same data group, its
//     x-mask does not reveal more ("null"/"***" to "last4"/"year"), and the
//     x-subject field of every data group stays where it was.
//
// Retention and x-searchable may change: records already sealed keep the
// period key they were sealed under.
func CheckCompatible(prev, next *Schema) error {
	fail := func(ptr, reason string) error {
		return &IncompatibleError{Subject: next.Subject, Version: prev.Version, Pointer: ptr, Reason: reason}
	}
	for _, g := range prev.Groups {
		if g.SubjectField == nil {
			continue
		}
		ng, ok := next.Group(g.Name)
		if !ok || !ng.SubjectField.Equal(g.SubjectField) {
			where := "nowhere"
			if ok && ng.SubjectField != nil {
				where = ng.SubjectField.String()
			}
			return fail(propPointer(g.SubjectField), fmt.Sprintf("the x-subject field of data group %q was %s in version %d and may not move (now %s)", g.Name, g.SubjectField, prev.Version, where))
		}
	}
	for _, f := range prev.pii {
		nf, ok := next.coveringPII(f.Path)
		if !ok {
			return fail(propPointer(f.Path), fmt.Sprintf("property %s was x-pii in version %d and may not lose it: PII protection may not be weakened", f.Path, prev.Version))
		}
		if nf.Group != f.Group {
			return fail(propPointer(f.Path), fmt.Sprintf("PII property %s was in data group %q in version %d and may not move to %q: erasing the subject would miss it", f.Path, f.Group, prev.Version, nf.Group))
		}
		if nf.Path.Equal(f.Path) && maskStrength(nf.Mask) < maskStrength(f.Mask) {
			return fail(propPointer(f.Path)+"/x-mask", fmt.Sprintf("x-mask of %s may not change from %q to %q, which shows analysts more", f.Path, f.Mask, nf.Mask))
		}
	}
	if ptr, reason, bad := compareNode(prev.doc, next.doc, ""); bad {
		return fail(ptr, reason)
	}
	return nil
}

// coveringPII returns the PII field at p, or the PII ancestor that seals p
// whole.
func (s *Schema) coveringPII(p Path) (Field, bool) {
	for n := len(p); n > 0; n-- {
		if i, ok := s.byPath[p[:n].String()]; ok {
			return s.pii[i], true
		}
	}
	return Field{}, false
}

func maskStrength(m string) int {
	switch m {
	case MaskNull, MaskStars:
		return 2
	default:
		return 1
	}
}

func propPointer(p Path) string {
	s := ""
	for _, k := range p {
		s += "/properties/" + escapePointer(k)
	}
	return s
}

// Keywords compareNode understands; any other keyword must be unchanged.
var (
	lowerBounds = []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"}
	upperBounds = []string{"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"}
	exactOnly   = []string{"pattern", "format", "multipleOf", "contentEncoding", "contentMediaType"}
	structural  = []string{"type", "enum", "const", "required", "properties", "additionalProperties", "items", "uniqueItems"}
	// Keywords with no effect on validity.
	informative = []string{"$schema", "$id", "$comment", "title", "description", "default", "examples", "readOnly", "writeOnly", "deprecated"}
)

// compareNode checks that every value valid under o is valid under n and
// returns the pointer (in n) and reason of the first violation.
func compareNode(o, n any, ptr string) (string, string, bool) {
	if nb, ok := n.(bool); ok {
		if nb {
			return "", "", false
		}
		if ob, ok := o.(bool); ok && !ob {
			return "", "", false
		}
		return ptr, "the schema became false: it no longer accepts any value", true
	}
	nm, _ := n.(map[string]any)
	var om map[string]any
	switch ov := o.(type) {
	case bool:
		if !ov {
			return "", "", false // nothing was valid
		}
		om = map[string]any{}
	case map[string]any:
		om = ov
	}
	at := func(k string) string { return ptr + "/" + escapePointer(k) }

	if nt, ok := nm["type"]; ok {
		ot, had := om["type"]
		if !had {
			return at("type"), fmt.Sprintf("type %s was added: values of other types were valid", compact(nt)), true
		}
		for _, t := range typeList(ot) {
			if !typeAllows(nt, t) {
				return at("type"), fmt.Sprintf("type narrowed from %s to %s: %s values were valid", compact(ot), compact(nt), t), true
			}
		}
	}
	if ne, ok := nm["enum"].([]any); ok {
		oe, had := om["enum"].([]any)
		if !had {
			if oc, hadConst := om["const"]; hadConst && containsValue(ne, oc) {
				// const c widened to an enum holding c
			} else {
				return at("enum"), "enum was added: other values were valid", true
			}
		}
		for _, v := range oe {
			if !containsValue(ne, v) {
				return at("enum"), fmt.Sprintf("enum value %s was removed", compact(v)), true
			}
		}
	}
	if nc, ok := nm["const"]; ok {
		oc, had := om["const"]
		oe, hadEnum := om["enum"].([]any)
		switch {
		case had && reflect.DeepEqual(oc, nc):
		case hadEnum && len(oe) == 1 && reflect.DeepEqual(oe[0], nc):
		default:
			return at("const"), "const was added or changed: other values were valid", true
		}
	}
	if nr, ok := nm["required"].([]any); ok {
		or, _ := om["required"].([]any)
		for _, r := range nr {
			if !containsValue(or, r) {
				return at("required"), fmt.Sprintf("property %s became required: data without it was valid", compact(r)), true
			}
		}
	}
	oProps, _ := om["properties"].(map[string]any)
	nProps, _ := nm["properties"].(map[string]any)
	nAdd, hasNAdd := nm["additionalProperties"]
	if !hasNAdd {
		nAdd = true
	}
	for _, name := range sortedKeys(oProps) {
		op := oProps[name]
		if np, ok := nProps[name]; ok {
			if p, r, bad := compareNode(op, np, at("properties")+"/"+escapePointer(name)); bad {
				return p, r, true
			}
			continue
		}
		// Removed: its values now fall under additionalProperties.
		if p, r, bad := compareNode(op, nAdd, at("additionalProperties")); bad {
			return p, fmt.Sprintf("property %q was removed and additionalProperties does not accept its values: %s", name, r), true
		}
	}
	oAdd, hasOAdd := om["additionalProperties"]
	if !hasOAdd {
		oAdd = true
	}
	if p, r, bad := compareNode(oAdd, nAdd, at("additionalProperties")); bad {
		return p, "additionalProperties became stricter: " + r, true
	}
	oItems, hasOI := om["items"]
	if !hasOI {
		oItems = true
	}
	if nItems, ok := nm["items"]; ok {
		if p, r, bad := compareNode(oItems, nItems, at("items")); bad {
			return p, r, true
		}
	}
	if nu, ok := nm["uniqueItems"].(bool); ok && nu {
		if ou, _ := om["uniqueItems"].(bool); !ou {
			return at("uniqueItems"), "uniqueItems was added: arrays with repeated items were valid", true
		}
	}
	for _, k := range lowerBounds {
		if p, r, bad := compareBound(om, nm, k, at(k), -1); bad {
			return p, r, true
		}
	}
	for _, k := range upperBounds {
		if p, r, bad := compareBound(om, nm, k, at(k), +1); bad {
			return p, r, true
		}
	}
	for _, k := range exactOnly {
		if nv, ok := nm[k]; ok && !reflect.DeepEqual(om[k], nv) {
			return at(k), fmt.Sprintf("%s was added or changed: values valid before may now fail", k), true
		}
	}
	for _, k := range sortedKeys(mergeKeys(om, nm)) {
		if known(k) {
			continue
		}
		if !reflect.DeepEqual(om[k], nm[k]) {
			return at(k), fmt.Sprintf("keyword %s changed; the registry cannot prove a change there backward compatible, so it must stay as it was", k), true
		}
	}
	return "", "", false
}

// compareBound checks a numeric bound: dir -1 for lower bounds (may only
// fall), +1 for upper bounds (may only rise).
func compareBound(om, nm map[string]any, k, ptr string, dir int) (string, string, bool) {
	nv, ok := nm[k]
	if !ok {
		return "", "", false
	}
	ov, had := om[k]
	if !had {
		return ptr, fmt.Sprintf("%s %s was added: values valid before may now fail", k, compact(nv)), true
	}
	o, ok1 := rat(ov)
	n, ok2 := rat(nv)
	if !ok1 || !ok2 {
		if reflect.DeepEqual(ov, nv) {
			return "", "", false
		}
		return ptr, fmt.Sprintf("%s changed", k), true
	}
	if c := n.Cmp(o); c != 0 && c != dir {
		verb := "rose"
		if dir > 0 {
			verb = "fell"
		}
		return ptr, fmt.Sprintf("%s %s from %s to %s: values valid before may now fail", k, verb, compact(ov), compact(nv)), true
	}
	return "", "", false
}

func rat(v any) (*big.Rat, bool) {
	s, ok := v.(fmt.Stringer)
	if !ok {
		return nil, false
	}
	return new(big.Rat).SetString(s.String())
}

func known(k string) bool {
	if len(k) > 2 && k[:2] == "x-" {
		return true // annotations are compared by the PII rules
	}
	return slices.Contains(structural, k) || slices.Contains(lowerBounds, k) || slices.Contains(upperBounds, k) ||
		slices.Contains(exactOnly, k) || slices.Contains(informative, k)
}

func typeList(t any) []string {
	switch v := t.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func containsValue(list []any, v any) bool {
	for _, e := range list {
		if reflect.DeepEqual(e, v) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mergeKeys(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k := range a {
		out[k] = nil
	}
	for k := range b {
		out[k] = nil
	}
	return out
}

func compact(v any) string {
	b, err := marshalCanonical(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
