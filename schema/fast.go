package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/stele/stele/internal/jsonscan"
)

// The fast validator checks an image's bytes in one pass for schemas that
// use only the common keywords (type, enum, const, format, properties,
// required, additionalProperties, min/maxProperties, prefixItems, items,
// min/maxItems, min/maxLength, pattern, numeric bounds, multipleOf).
// Decoding every image into maps for the library cost more than the rest
// of sealing. It is compiled from the library's own compiled schema, so
// numbers, formats and patterns mean exactly what they mean there; any
// other keyword, and any image it cannot judge alone (not an object,
// duplicate names, invalid UTF-8, invalid JSON), goes to the library.

// fastNode is one compiled subschema.
type fastNode struct {
	reject   bool // the false schema
	types    uint8
	typeWant []string
	konst    *valueSet
	enum     *valueSet
	format   *jsonschema.Format

	minProps, maxProps int // -1: none
	required           map[string]int
	requiredList       []string
	props              map[string]*fastNode
	additional         *fastNode
	noAdditional       bool

	minItems, maxItems int
	prefix             []*fastNode
	items              *fastNode

	minLen, maxLen int
	pattern        jsonschema.Regexp

	minimum, maximum, exMin, exMax, multipleOf *bound

	// mark is 1 + the index in Schema.Annotated() of the property this
	// node validates, or 0.
	mark int
}

const (
	tNull uint8 = 1 << iota
	tBool
	tNumber
	tInteger
	tString
	tArray
	tObject
)

var typeBits = map[string]uint8{"null": tNull, "boolean": tBool, "number": tNumber, "integer": tInteger, "string": tString, "array": tArray, "object": tObject}

func kindBit(k byte) uint8 {
	switch k {
	case jsonscan.Null:
		return tNull
	case jsonscan.Bool:
		return tBool
	case jsonscan.Number:
		return tNumber
	case jsonscan.String:
		return tString
	case jsonscan.Array:
		return tArray
	}
	return tObject
}

func kindType(k byte) string {
	switch k {
	case jsonscan.Null:
		return "null"
	case jsonscan.Bool:
		return "boolean"
	case jsonscan.Number:
		return "number"
	case jsonscan.String:
		return "string"
	case jsonscan.Array:
		return "array"
	}
	return "object"
}

// bound is a numeric keyword's value, also as an int64 when it is one.
type bound struct {
	rat   *big.Rat
	i     int64
	isInt bool
}

func newBound(r *big.Rat) *bound {
	if r == nil {
		return nil
	}
	b := &bound{rat: r}
	if r.IsInt() && r.Num().IsInt64() {
		b.i, b.isInt = r.Num().Int64(), true
	}
	return b
}

// valueSet is the values of enum (or the one of const), indexed for the
// common scalar cases.
type valueSet struct {
	values  []any
	strs    map[string]bool
	nums    []*big.Rat
	hasNull bool
	bools   [2]bool
	complex []any // objects and arrays
}

func newValueSet(vals []any) *valueSet {
	s := &valueSet{values: vals, strs: map[string]bool{}}
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			s.hasNull = true
		case bool:
			s.bools[b2i(v)] = true
		case string:
			s.strs[v] = true
		case json.Number:
			if r, ok := new(big.Rat).SetString(v.String()); ok {
				s.nums = append(s.nums, r)
			}
		default:
			s.complex = append(s.complex, v)
		}
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errUnsupported: the schema uses a keyword the fast validator leaves to
// the library.
var errUnsupported = errors.New("keyword outside the fast subset")

// markFast marks the nodes of the annotated properties.
func markFast(root *fastNode, annotated []Path) error {
	for i, p := range annotated {
		n := root
		for _, part := range p {
			if n = n.props[part]; n == nil {
				return errUnsupported // annotations are read from properties; cannot happen
			}
		}
		n.mark = i + 1
	}
	return nil
}

// compileFast builds the fast validator of a compiled schema, or returns
// errUnsupported.
func compileFast(s *jsonschema.Schema) (*fastNode, error) {
	if s == nil {
		return nil, nil
	}
	if s.Ref != nil || s.RecursiveRef != nil || s.DynamicRef != nil ||
		s.Not != nil || len(s.AllOf) > 0 || len(s.AnyOf) > 0 || len(s.OneOf) > 0 || s.If != nil || s.Then != nil || s.Else != nil ||
		s.PropertyNames != nil || len(s.PatternProperties) > 0 || len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 ||
		len(s.DependentSchemas) > 0 || s.UnevaluatedProperties != nil ||
		s.UniqueItems || s.Contains != nil || s.MinContains != nil || s.MaxContains != nil || s.Items != nil ||
		s.AdditionalItems != nil || s.UnevaluatedItems != nil ||
		s.ContentEncoding != nil || s.ContentMediaType != nil || s.ContentSchema != nil || len(s.Extensions) > 0 {
		return nil, errUnsupported
	}
	if (len(s.PrefixItems) > 0 || s.Items2020 != nil) && s.DraftVersion < 2020 {
		return nil, errUnsupported
	}
	n := &fastNode{minProps: intOr(s.MinProperties), maxProps: intOr(s.MaxProperties), minItems: intOr(s.MinItems),
		maxItems: intOr(s.MaxItems), minLen: intOr(s.MinLength), maxLen: intOr(s.MaxLength), pattern: s.Pattern, format: s.Format,
		minimum: newBound(s.Minimum), maximum: newBound(s.Maximum), exMin: newBound(s.ExclusiveMinimum),
		exMax: newBound(s.ExclusiveMaximum), multipleOf: newBound(s.MultipleOf)}
	if s.Bool != nil {
		n.reject = !*s.Bool
		return n, nil
	}
	if s.Types != nil && !s.Types.IsEmpty() {
		n.typeWant = s.Types.ToStrings()
		for _, t := range n.typeWant {
			n.types |= typeBits[t]
		}
	}
	if s.Const != nil {
		n.konst = newValueSet([]any{*s.Const})
	}
	if s.Enum != nil {
		n.enum = newValueSet(s.Enum.Values)
	}
	if len(s.Required) > 0 {
		n.requiredList = s.Required
		n.required = make(map[string]int, len(s.Required))
		for i, r := range s.Required { // unique, as the meta-schema demands
			n.required[r] = i
		}
	}
	var err error
	if len(s.Properties) > 0 {
		n.props = make(map[string]*fastNode, len(s.Properties))
		for name, sub := range s.Properties {
			if n.props[name], err = compileFast(sub); err != nil {
				return nil, err
			}
		}
	}
	switch a := s.AdditionalProperties.(type) {
	case bool:
		n.noAdditional = !a
	case *jsonschema.Schema:
		if n.additional, err = compileFast(a); err != nil {
			return nil, err
		}
	}
	for _, p := range s.PrefixItems {
		c, err := compileFast(p)
		if err != nil {
			return nil, err
		}
		n.prefix = append(n.prefix, c)
	}
	if n.items, err = compileFast(s.Items2020); err != nil {
		return nil, err
	}
	return n, nil
}

func intOr(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

// errFallback: the image is for the library to judge.
var errFallback = errors.New("image left to the library")

// fastRun is one validation: the first schema error found, in the
// library's order of keywords, and where its value starts.
type fastRun struct {
	b     []byte
	err   jsonschema.ErrorKind
	errAt int
	found Finder // given the marked values, if set
	// unrepresentable: a number under a numeric keyword is beyond exact
	// comparison (see representable); the image goes to the library path.
	unrepresentable bool
}

// validateFast checks image against the schema: nil, a *ValidationError, or
// errFallback.
func (s *Schema) validateFast(image []byte, found Finder) error {
	start := jsonscan.Space(image, 0)
	if jsonscan.Kind(image, start) != jsonscan.Object {
		return errFallback
	}
	r := fastRun{b: image, found: found}
	end, err := r.value(s.fast, start, 0)
	if err != nil || jsonscan.Space(image, end) != len(image) || r.unrepresentable {
		return errFallback
	}
	if r.err == nil {
		return nil
	}
	return &ValidationError{Subject: s.Subject, Version: s.Version, Field: jsonPointer(locate(image, start, r.errAt)), Reason: reason(r.err)}
}

// fail records an error of the value at b[at], unless one came first.
func (r *fastRun) fail(k jsonschema.ErrorKind, at int) {
	if r.err == nil {
		r.err, r.errAt = k, at
	}
}

// locate is the path from the value at b[i] to the value that starts at
// b[at]: found again after the fact, so validation keeps no path.
func locate(b []byte, i, at int) []string {
	var loc []string
	for i != at && i >= 0 {
		next := -1
		step := func(tok string, v int) (int, error) {
			end, err := jsonscan.Skip(b, v, 0)
			if next < 0 && v <= at && at < end {
				loc, next = append(loc, tok), v
			}
			return end, err
		}
		switch jsonscan.Kind(b, i) {
		case jsonscan.Object:
			_, _ = jsonscan.Members(b, i, 0, func(lit []byte, v int) (int, error) { return step(jsonscan.Unquote(lit), v) })
		case jsonscan.Array:
			_, _ = jsonscan.Elements(b, i, 0, func(n, v int) (int, error) { return step(strconv.Itoa(n), v) })
		}
		i = next
	}
	return loc
}

// decoded is the value at b[i:end] as the library sees it.
func (r *fastRun) decoded(i, end int) any {
	v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(r.b[i:end]))
	return v
}

// value validates the value at b[i] against n and returns its end.
func (r *fastRun) value(n *fastNode, i, depth int) (int, error) {
	end, err := r.check(n, i, depth)
	if n != nil && n.mark > 0 && r.found != nil && err == nil {
		r.found.Found(n.mark-1, i, end)
	}
	return end, err
}

func (r *fastRun) check(n *fastNode, i, depth int) (int, error) {
	b := r.b
	if n == nil || r.err != nil {
		// Nothing to check (or already failed): only its syntax matters.
		return jsonscan.Skip(b, i, depth)
	}
	k := jsonscan.Kind(b, i)
	if k == 0 {
		return 0, errFallback
	}
	if n.reject {
		r.fail(&kind.FalseSchema{}, i)
		return jsonscan.Skip(b, i, depth)
	}
	// Scalars are scanned first: their type may depend on their text.
	var end int
	var integral, escaped bool
	var err error
	switch k {
	case jsonscan.Number:
		end, integral, err = jsonscan.Num(b, i)
	case jsonscan.String:
		end, escaped, err = jsonscan.Str(b, i)
	case jsonscan.Null, jsonscan.Bool:
		end, err = jsonscan.Skip(b, i, depth)
	}
	if err != nil {
		return 0, err
	}
	if n.types != 0 {
		ok := n.types&kindBit(k) != 0 || (k == jsonscan.Number && n.types&tInteger != 0 && isInteger(b[i:end], integral))
		if !ok {
			r.fail(&kind.Type{Got: kindType(k), Want: n.typeWant}, i)
			return skipRest(b, i, end, depth, k)
		}
	}
	if n.konst != nil || n.enum != nil || (n.format != nil && k == jsonscan.String) {
		if end == 0 { // an object or array: find its end first
			if end, err = jsonscan.Skip(b, i, depth); err != nil {
				return 0, err
			}
		}
		if n.konst != nil && !r.in(n.konst, k, i, end, escaped) {
			r.fail(&kind.Const{Got: r.decoded(i, end), Want: n.konst.values[0]}, i)
			return end, nil
		}
		if n.enum != nil && !r.in(n.enum, k, i, end, escaped) {
			r.fail(&kind.Enum{Got: r.decoded(i, end), Want: n.enum.values}, i)
			return end, nil
		}
		if n.format != nil && k == jsonscan.String {
			str := jsonscan.Unquote(b[i:end])
			if err := n.format.Validate(str); err != nil {
				r.fail(&kind.Format{Got: str, Want: n.format.Name, Err: err}, i)
				return end, nil
			}
		}
	}
	switch k {
	case jsonscan.Object:
		return r.object(n, i, depth)
	case jsonscan.Array:
		return r.array(n, i, depth)
	case jsonscan.String:
		r.str(n, i, end, escaped)
	case jsonscan.Number:
		r.num(n, i, end, integral)
	}
	return end, nil
}

func skipRest(b []byte, i, end, depth int, k byte) (int, error) {
	if k == jsonscan.Object || k == jsonscan.Array {
		return jsonscan.Skip(b, i, depth)
	}
	return end, nil
}

func isInteger(lit []byte, integral bool) bool {
	if integral {
		return true
	}
	r, ok := new(big.Rat).SetString(string(lit))
	return ok && r.IsInt()
}

// in reports whether the value at b[i:end] equals a member of set, as the
// library's equality has it (numbers by value).
func (r *fastRun) in(set *valueSet, k byte, i, end int, escaped bool) bool {
	lit := r.b[i:end]
	switch k {
	case jsonscan.String:
		if escaped {
			return set.strs[jsonscan.Unquote(lit)]
		}
		return set.strs[string(lit[1:len(lit)-1])]
	case jsonscan.Null:
		return set.hasNull
	case jsonscan.Bool:
		return set.bools[b2i(lit[0] == 't')]
	case jsonscan.Number:
		if len(set.nums) == 0 {
			return false
		}
		v, ok := new(big.Rat).SetString(string(lit))
		if !ok {
			return false
		}
		for _, n := range set.nums {
			if v.Cmp(n) == 0 {
				return true
			}
		}
		return false
	}
	if len(set.complex) == 0 {
		return false
	}
	v := r.decoded(i, end)
	for _, c := range set.complex {
		if equalJSON(v, c) {
			return true
		}
	}
	return false
}

// equalJSON is the library's equality of decoded values.
func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !equalJSON(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, ok1 := new(big.Rat).SetString(a.String())
		y, ok2 := new(big.Rat).SetString(bn.String())
		return ok1 && ok2 && x.Cmp(y) == 0
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	}
	return false
}

// object walks an object's members. The library reports the object's own
// keywords (min/maxProperties, required) before its members' errors and
// additionalProperties after them; members come in document order here.
func (r *fastRun) object(n *fastNode, i, depth int) (int, error) {
	b := r.b
	count := 0
	var present uint64
	var presentBig map[int]bool
	var extra []string
	end, err := jsonscan.Members(b, i, depth, func(lit []byte, v int) (int, error) {
		count++
		name := lit[1 : len(lit)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(jsonscan.Unquote(lit))
		}
		if idx, ok := n.required[string(name)]; ok {
			if idx < 64 {
				present |= 1 << idx
			} else {
				if presentBig == nil {
					presentBig = map[int]bool{}
				}
				presentBig[idx] = true
			}
		}
		sub, found := n.props[string(name)]
		if !found {
			switch {
			case n.additional != nil:
				sub = n.additional
			case n.noAdditional:
				extra = append(extra, string(name))
			}
		}
		return r.child(sub, v, depth+1)
	})
	if err != nil {
		return 0, err
	}
	var own jsonschema.ErrorKind
	switch {
	case n.minProps >= 0 && count < n.minProps:
		own = &kind.MinProperties{Got: count, Want: n.minProps}
	case n.maxProps >= 0 && count > n.maxProps:
		own = &kind.MaxProperties{Got: count, Want: n.maxProps}
	default:
		var missing []string
		for idx, name := range n.requiredList {
			if idx < 64 && present&(1<<idx) == 0 || idx >= 64 && !presentBig[idx] {
				missing = append(missing, name)
			}
		}
		if missing != nil {
			own = &kind.Required{Missing: missing}
		}
	}
	if own != nil {
		r.own(own, i)
	} else if extra != nil {
		r.fail(&kind.AdditionalProperties{Properties: extra}, i)
	}
	return end, nil
}

// child validates a member or element at b[v] against n.
func (r *fastRun) child(n *fastNode, v, depth int) (int, error) {
	if n == nil || r.err != nil {
		return jsonscan.Skip(r.b, v, depth)
	}
	return r.value(n, v, depth)
}

// own records an error of the own keywords of the object or array at
// b[at], which the library reports before any error of its members.
func (r *fastRun) own(k jsonschema.ErrorKind, at int) {
	r.err = nil
	r.fail(k, at)
}

func (r *fastRun) array(n *fastNode, i, depth int) (int, error) {
	count := 0
	end, err := jsonscan.Elements(r.b, i, depth, func(idx, v int) (int, error) {
		count++
		sub := n.items
		if idx < len(n.prefix) {
			sub = n.prefix[idx]
		}
		return r.child(sub, v, depth+1)
	})
	if err != nil {
		return 0, err
	}
	switch {
	case n.minItems >= 0 && count < n.minItems:
		r.own(&kind.MinItems{Got: count, Want: n.minItems}, i)
	case n.maxItems >= 0 && count > n.maxItems:
		r.own(&kind.MaxItems{Got: count, Want: n.maxItems}, i)
	}
	return end, nil
}

func (r *fastRun) str(n *fastNode, i, end int, escaped bool) {
	if n.minLen < 0 && n.maxLen < 0 && n.pattern == nil {
		return
	}
	lit := r.b[i:end]
	var str string
	if escaped || n.pattern != nil {
		str = jsonscan.Unquote(lit)
	}
	if n.minLen >= 0 || n.maxLen >= 0 {
		var runes int
		if escaped {
			runes = utf8.RuneCountInString(str)
		} else {
			runes = utf8.RuneCount(lit[1 : len(lit)-1])
		}
		if n.minLen >= 0 && runes < n.minLen {
			r.fail(&kind.MinLength{Got: runes, Want: n.minLen}, i)
			return
		}
		if n.maxLen >= 0 && runes > n.maxLen {
			r.fail(&kind.MaxLength{Got: runes, Want: n.maxLen}, i)
			return
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(str) {
		r.fail(&kind.Pattern{Got: str, Want: n.pattern.String()}, i)
	}
}

// number is an instance number: its literal, as an int64 when it is a
// short integer, and as a big.Rat when needed.
type number struct {
	lit   []byte
	i     int64
	isInt bool
	rat   *big.Rat
}

func (x *number) cmp(b *bound) int {
	if x.isInt && b.isInt {
		switch {
		case x.i < b.i:
			return -1
		case x.i > b.i:
			return 1
		}
		return 0
	}
	return x.asRat().Cmp(b.rat)
}

// asRat is x as a big.Rat; num has already parsed one that is not a short
// integer, and a short integer always parses.
func (x *number) asRat() *big.Rat {
	if x.rat == nil {
		x.rat, _ = new(big.Rat).SetString(string(x.lit))
	}
	return x.rat
}

func (r *fastRun) num(n *fastNode, i, end int, integral bool) {
	if n.minimum == nil && n.maximum == nil && n.exMin == nil && n.exMax == nil && n.multipleOf == nil {
		return
	}
	x := &number{lit: r.b[i:end]}
	if integral {
		x.i, x.isInt = jsonscan.Int64(x.lit)
	}
	if !x.isInt {
		// Parsed here, once, for every comparison below. One big.Rat
		// refuses (see representable) cannot be compared exactly: the
		// library path refuses it by name.
		if x.rat, _ = new(big.Rat).SetString(string(x.lit)); x.rat == nil {
			r.unrepresentable = true
			return
		}
	}
	// The library reports only the first of these; their order is its.
	switch {
	case n.minimum != nil && x.cmp(n.minimum) < 0:
		r.fail(&kind.Minimum{Got: x.asRat(), Want: n.minimum.rat}, i)
	case n.maximum != nil && x.cmp(n.maximum) > 0:
		r.fail(&kind.Maximum{Got: x.asRat(), Want: n.maximum.rat}, i)
	case n.exMin != nil && x.cmp(n.exMin) <= 0:
		r.fail(&kind.ExclusiveMinimum{Got: x.asRat(), Want: n.exMin.rat}, i)
	case n.exMax != nil && x.cmp(n.exMax) >= 0:
		r.fail(&kind.ExclusiveMaximum{Got: x.asRat(), Want: n.exMax.rat}, i)
	case n.multipleOf != nil && !multiple(x, n.multipleOf):
		r.fail(&kind.MultipleOf{Got: x.asRat(), Want: n.multipleOf.rat}, i)
	}
}

func multiple(x *number, of *bound) bool {
	if x.isInt && of.isInt && of.i != 0 {
		return x.i%of.i == 0
	}
	return new(big.Rat).Quo(x.asRat(), of.rat).IsInt()
}
