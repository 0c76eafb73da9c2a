// Package jsonscan is a strict, allocation-free JSON scanner for the append
// path: validating and sealing a record image walk its bytes once, finding
// where each value starts and ends, instead of decoding it into maps or
// building a token decoder per object level.
//
// It accepts exactly RFC 8259 JSON in valid UTF-8, and refuses an object
// that names a member twice (as jsontext does by default).
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors wrap ErrSyntax, or ErrDuplicate for a member name given twice.
var (
	ErrSyntax    = errors.New("invalid JSON")
	ErrDuplicate = errors.New("duplicate object member name")
)

// maxDepth bounds nesting, as encoding/json and jsontext do.
const maxDepth = 10000

func syntaxErr(b []byte, i int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrSyntax, what, min(i, len(b)))
}

// Space returns the index of the first byte at or after i that is not JSON
// whitespace.
func Space(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Kinds of values, by first byte.
const (
	Null   = 'n'
	Bool   = 't' // true or false
	Number = '0'
	String = '"'
	Array  = '['
	Object = '{'
)

// Kind is the kind of the value starting at b[i] (no whitespace skipped),
// or 0 when no value can start there.
func Kind(b []byte, i int) byte {
	if i >= len(b) {
		return 0
	}
	switch c := b[i]; c {
	case 'n', '"', '[', '{':
		return c
	case 't', 'f':
		return Bool
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return Number
	}
	return 0
}

// strSafe marks bytes that need no attention inside a string.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Str scans the string literal at b[i] (which must be '"') and returns the
// index after its closing quote, and whether it holds escapes.
func Str(b []byte, i int) (end int, escaped bool, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, false, syntaxErr(b, i, "expected a string")
	}
	i++
	for {
		i = safeRun(b, i)
		if i >= len(b) {
			return 0, false, syntaxErr(b, i, "unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, syntaxErr(b, i, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, n := hex4(b, i+2)
				if n < 0 {
					return 0, false, syntaxErr(b, i, "invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// Only a high surrogate followed by an escaped low one
					// is a character; anything else is invalid UTF-16.
					if r >= 0xdc00 || i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
						return 0, false, syntaxErr(b, i, "invalid surrogate in \\u escape")
					}
					r2, n := hex4(b, i+2)
					if n < 0 || r2 < 0xdc00 || r2 > 0xdfff {
						return 0, false, syntaxErr(b, i, "invalid surrogate in \\u escape")
					}
					i += 6
				}
			default:
				return 0, false, syntaxErr(b, i, "invalid escape")
			}
		case c < 0x20:
			return 0, false, syntaxErr(b, i, "control character in string")
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return 0, false, syntaxErr(b, i, "invalid UTF-8")
			}
			i += n
		}
	}
}

// safeRun returns the index of the first byte at or after i that needs
// attention inside a string, looking at eight bytes at a time: most of an
// image is string contents.
func safeRun(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		// A byte's high bit ends up set when it is below 0x20, a quote or a
		// backslash (or is itself 0x80 or above); a borrow can only mark
		// bytes after one that is marked for real.
		if ((w-ones*0x20)|(q-ones)|(bs-ones)|w)&highs != 0 {
			break
		}
	}
	for i < len(b) && strSafe[b[i]] {
		i++
	}
	return i
}

func hex4(b []byte, i int) (rune, int) {
	if i+4 > len(b) {
		return 0, -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, -1
		}
		r = r<<4 | rune(c)
	}
	return r, 4
}

// Unquote decodes a string literal already checked by Str.
func Unquote(lit []byte) string {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body)
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch body[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(body, i+2)
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(body, i+8)
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			out = utf8.AppendRune(out, r)
			i += 6
			continue
		default: // " \ /
			out = append(out, body[i+1])
		}
		i += 2
	}
	return string(out)
}

// Num scans the number literal at b[i] and returns the index after it, and
// whether it is written as an integer (no fraction, no exponent).
func Num(b []byte, i int) (end int, integral bool, err error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	default:
		return 0, false, syntaxErr(b, start, "invalid number")
	}
	integral = true
	if i < len(b) && b[i] == '.' {
		integral = false
		if i = digits(b, i+1); i < 0 {
			return 0, false, syntaxErr(b, start, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integral = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(b, i); i < 0 {
			return 0, false, syntaxErr(b, start, "invalid number")
		}
	}
	return i, integral, nil
}

// digits returns the index after the one or more digits at b[i], or -1.
func digits(b []byte, i int) int {
	d := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	if i == d {
		return -1
	}
	return i
}

// Int64 is the value of an integral number literal that fits 18 digits.
func Int64(lit []byte) (int64, bool) {
	if len(lit) > 18 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

func literal(b []byte, i int, word string) (int, error) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return 0, syntaxErr(b, i, "invalid literal")
	}
	return i + len(word), nil
}

// Skip scans the value at b[i] (no whitespace skipped) and returns the
// index after it; depth is the number of arrays and objects around it.
func Skip(b []byte, i, depth int) (int, error) {
	switch Kind(b, i) {
	case String:
		end, _, err := Str(b, i)
		return end, err
	case Number:
		end, _, err := Num(b, i)
		return end, err
	case Null:
		return literal(b, i, "null")
	case Bool:
		if b[i] == 't' {
			return literal(b, i, "true")
		}
		return literal(b, i, "false")
	case Object:
		return Members(b, i, depth, func(_ []byte, v int) (int, error) { return Skip(b, v, depth+1) })
	case Array:
		return Elements(b, i, depth, func(_, v int) (int, error) { return Skip(b, v, depth+1) })
	}
	return 0, syntaxErr(b, i, "expected a value")
}

// Value scans one whole JSON text (a value with optional surrounding
// whitespace) and returns where its value starts and ends.
func Value(b []byte) (start, end int, err error) {
	start = Space(b, 0)
	if end, err = Skip(b, start, 0); err != nil {
		return 0, 0, err
	}
	if Space(b, end) != len(b) {
		return 0, 0, syntaxErr(b, end, "data after the value")
	}
	return start, end, nil
}

// Members walks the object at b[i] (which must be '{'). For each member it
// calls fn with the name literal (quotes included) and the index where the
// value starts; fn must return the index after the value, scanning it with
// Skip or its own walk. Members returns the index after the object. depth
// is the object's nesting depth, for the limit.
func Members(b []byte, i, depth int, fn func(name []byte, v int) (int, error)) (int, error) {
	i, empty, err := opening(b, i, depth, '{', '}')
	if empty || err != nil {
		return i, err
	}
	var names nameSet
	start := i
	for {
		ns := i
		ne, escaped, err := Str(b, ns)
		if err != nil {
			return 0, err
		}
		if err := names.add(b, start, ns, ne, escaped); err != nil {
			return 0, fmt.Errorf("%w at byte %d", err, ns)
		}
		i = Space(b, ne)
		if i >= len(b) || b[i] != ':' {
			return 0, syntaxErr(b, i, "expected ':' after an object member name")
		}
		i = Space(b, i+1)
		if i, err = fn(b[ns:ne], i); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = afterItem(b, i, '}'); done || err != nil {
			return i, err
		}
	}
}

// opening moves past the opening bracket of an object or array, or past
// the whole of an empty one, reporting empty.
func opening(b []byte, i, depth int, open, closing byte) (next int, empty bool, err error) {
	if depth >= maxDepth {
		return 0, false, syntaxErr(b, i, "nested too deeply")
	}
	if i >= len(b) || b[i] != open {
		return 0, false, syntaxErr(b, i, "expected '"+string(open)+"'")
	}
	i = Space(b, i+1)
	if i < len(b) && b[i] == closing {
		return i + 1, true, nil
	}
	return i, false, nil
}

// afterItem moves past the ',' after an object member or array element,
// or past the closing bracket, reporting done.
func afterItem(b []byte, i int, closing byte) (next int, done bool, err error) {
	i = Space(b, i)
	switch {
	case i >= len(b):
		return 0, false, syntaxErr(b, i, "unterminated object or array")
	case b[i] == ',':
		return Space(b, i+1), false, nil
	case b[i] == closing:
		return i + 1, true, nil
	}
	return 0, false, syntaxErr(b, i, "expected ',' or '"+string(closing)+"'")
}

// nameSet finds a repeated member name. Canonical images list names in
// increasing order, which rules out a repeat without remembering them; when
// a name is out of order (or escaped), each later one is checked against
// the names so far. The first few names are kept as they come, so that a
// change event's object (names in the table's or the connector's order,
// out of order at the second) need not be walked again to collect them,
// and a filter of one bit per name spares most comparisons.
type nameSet struct {
	last     []byte
	unsorted bool
	small    [16][]byte // names while few (a record's top level has 11)
	n        int
	kept     bool   // small holds every name so far
	bloom    uint64 // a bit per name held, by nameBit
	big      map[string]struct{}
}

// add records the name literal at b[ns:ne]; start is where the object's
// first member name starts.
func (s *nameSet) add(b []byte, start, ns, ne int, escaped bool) error {
	body := b[ns+1 : ne-1]
	if !s.unsorted {
		if !escaped && (s.last == nil || bytes.Compare(body, s.last) > 0) {
			if s.last == nil {
				s.kept = true
			}
			s.last = body
			if s.kept && s.n < len(s.small) {
				s.put(body)
			} else {
				s.kept = false
			}
			return nil
		}
		s.unsorted = true
		if !s.kept {
			// Every earlier name is distinct: collect them.
			s.n, s.bloom = 0, 0
			for i := start; i < ns; {
				e, esc, _ := Str(b, i)
				s.put(decodedName(b[i:e], esc))
				i = Space(b, Space(b, e)+1) // past ':'
				i, _ = Skip(b, i, 0)
				i = Space(b, Space(b, i)+1) // past ','
			}
		}
	}
	name := decodedName(b[ns:ne], escaped)
	if s.has(name) {
		return ErrDuplicate
	}
	s.put(name)
	return nil
}

func decodedName(lit []byte, escaped bool) []byte {
	if escaped {
		return []byte(Unquote(lit))
	}
	return lit[1 : len(lit)-1]
}

// nameBit is a name's bit in nameSet.bloom.
func nameBit(name []byte) uint64 {
	h := uint(len(name))
	if len(name) > 0 {
		h = h*31 + uint(name[0])*7 + uint(name[len(name)-1])
	}
	return 1 << (h & 63)
}

func (s *nameSet) has(name []byte) bool {
	if s.big != nil {
		_, ok := s.big[string(name)]
		return ok
	}
	if s.bloom&nameBit(name) == 0 {
		return false
	}
	for _, n := range s.small[:s.n] {
		if bytes.Equal(n, name) {
			return true
		}
	}
	return false
}

func (s *nameSet) put(name []byte) {
	if s.big == nil && s.n < len(s.small) {
		s.small[s.n] = name
		s.n++
		s.bloom |= nameBit(name)
		return
	}
	if s.big == nil {
		s.big = make(map[string]struct{}, 2*len(s.small))
		for _, n := range s.small[:s.n] {
			s.big[string(n)] = struct{}{}
		}
	}
	s.big[string(name)] = struct{}{}
}

// Elements walks the array at b[i] (which must be '['), calling fn with
// each element's index and start; fn returns the index after the element.
func Elements(b []byte, i, depth int, fn func(n, v int) (int, error)) (int, error) {
	i, empty, err := opening(b, i, depth, '[', ']')
	if empty || err != nil {
		return i, err
	}
	for n := 0; ; n++ {
		if i, err = fn(n, i); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = afterItem(b, i, ']'); done || err != nil {
			return i, err
		}
	}
}
