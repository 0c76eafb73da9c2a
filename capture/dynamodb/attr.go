package dynamodb

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// # Attribute values as JSON
//
// DynamoDB's typed attribute values become plain JSON, so that the images
// of a DynamoDB item read like those of a table row:
//
//	S     string                 "abc"
//	N     number, the exact digits DynamoDB returned (38 significant
//	      digits fit; never rounded through a float64)
//	B     string, standard base64 "3q2+7w=="
//	BOOL  true / false
//	NULL  null
//	M     object (members in canonical order)
//	L     array, in order
//	SS    array of strings, sorted by their bytes
//	NS    array of numbers, sorted by numeric value
//	BS    array of base64 strings, sorted by the bytes they encode
//
// Sets have no order in DynamoDB; sorting them makes two equal sets the
// same JSON, so that `changed` does not report a set whose members came
// back in another order. The mapping forgets the type tag (a B and an S
// holding the same base64 text look alike); a schema in the registry may
// say which attributes are binary.

// appendAttr appends v as JSON.
func appendAttr(b []byte, v types.AttributeValue) ([]byte, error) {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return appendString(b, v.Value), nil
	case *types.AttributeValueMemberN:
		return appendNumber(b, v.Value)
	case *types.AttributeValueMemberB:
		return appendBase64(b, v.Value), nil
	case *types.AttributeValueMemberBOOL:
		return strconv.AppendBool(b, v.Value), nil
	case *types.AttributeValueMemberNULL:
		return append(b, "null"...), nil
	case *types.AttributeValueMemberM:
		return appendMap(b, v.Value)
	case *types.AttributeValueMemberL:
		b = append(b, '[')
		for i, e := range v.Value {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendAttr(b, e); err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return append(b, ']'), nil
	case *types.AttributeValueMemberSS:
		ss := slices.Clone(v.Value)
		slices.Sort(ss)
		b = append(b, '[')
		for i, s := range ss {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']'), nil
	case *types.AttributeValueMemberNS:
		return appendNumberSet(b, v.Value)
	case *types.AttributeValueMemberBS:
		bs := slices.Clone(v.Value)
		slices.SortFunc(bs, bytes.Compare)
		b = append(b, '[')
		for i, x := range bs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendBase64(b, x)
		}
		return append(b, ']'), nil
	case nil:
		return nil, fmt.Errorf("attribute value missing")
	default:
		return nil, fmt.Errorf("attribute value of unknown type %T", v)
	}
}

// appendMap appends an object of m's members, names sorted by their bytes.
// The result is passed through record.Canonical by the caller, which fixes
// the order where RFC 8785's UTF-16 order differs.
func appendMap(b []byte, m map[string]types.AttributeValue) ([]byte, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendAttr(b, m[k]); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

func appendBase64(b []byte, x []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, x)
	return append(b, '"')
}

// appendNumber appends DynamoDB's number text as a JSON number. Errors
// never quote the value: it is the item's data, maybe personal. DynamoDB
// returns numbers normalised ("1.50" comes back "1.5"), which is JSON
// number syntax; anything else ("+1", ".5", "1.") is put in JSON form
// without changing its value.
func appendNumber(b []byte, n string) ([]byte, error) {
	if validJSONNumber(n) {
		return append(b, n...), nil
	}
	if hugeExponent(n) {
		return nil, fmt.Errorf("a number of %d characters is out of DynamoDB's range (exponent beyond ±130)", len(n))
	}
	_, ok := new(big.Rat).SetString(n)
	if !ok {
		return nil, fmt.Errorf("a number of %d characters is not a decimal number", len(n))
	}
	s := n
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) > 0 && s[0] == '.' {
		s = "0" + s
	}
	if i := len(s) - 1; i >= 0 && s[i] == '.' {
		s = s[:i]
	}
	for len(s) > 1 && s[0] == '0' && s[1] != '.' && s[1] != 'e' && s[1] != 'E' {
		s = s[1:]
	}
	if neg {
		s = "-" + s
	}
	if !validJSONNumber(s) {
		return nil, fmt.Errorf("a number of %d characters has no JSON form", len(n))
	}
	return append(b, s...), nil
}

func appendNumberSet(b []byte, ns []string) ([]byte, error) {
	type num struct {
		text string
		v    *big.Rat
	}
	nums := make([]num, len(ns))
	for i, n := range ns {
		if hugeExponent(n) {
			return nil, fmt.Errorf("number set member %d is out of DynamoDB's range (exponent beyond ±130)", i)
		}
		r, ok := new(big.Rat).SetString(n)
		if !ok {
			return nil, fmt.Errorf("number set member %d is not a decimal number", i)
		}
		nums[i] = num{n, r}
	}
	slices.SortFunc(nums, func(a, b num) int { return a.v.Cmp(b.v) })
	b = append(b, '[')
	for i, n := range nums {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendNumber(b, n.text); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// hugeExponent reports whether s has an exponent of more than four
// digits: far outside DynamoDB's ±130, and a cost big.Rat would pay in
// memory and time.
func hugeExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return false
	}
	e := strings.TrimLeft(strings.TrimLeft(s[i+1:], "+-"), "0")
	for _, c := range e {
		if c < '0' || c > '9' {
			return false // not a number at all, which big.Rat says at once
		}
	}
	return len(e) > 4
}

// validJSONNumber reports whether s is a number in JSON's grammar.
func validJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as RFC 8785 does (only
// the quote, the backslash and control characters), invalid UTF-8
// replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
