package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// DecodeImage decodes a record image (a JSON object) the way Validate and
// the annotation helpers expect: numbers as json.Number, so large integers
// and exact decimals survive.
func DecodeImage(image []byte) (map[string]any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(image))
	if err != nil {
		// The decoder's message may quote bytes of the image; keep only
		// the position.
		reason := "image is not valid JSON"
		var se *json.SyntaxError
		if errors.As(err, &se) {
			reason = fmt.Sprintf("image is not valid JSON (error at byte %d)", se.Offset)
		}
		return nil, &ValidationError{Reason: reason}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ValidationError{Reason: fmt.Sprintf("an image must be a JSON object, got %s", jsonKind(v))}
	}
	return m, nil
}

// Validate checks one image (a record's before or after) against the
// schema. A mismatch is a *ValidationError wrapping ErrInvalidRecord.
func (s *Schema) Validate(image []byte) error {
	_, err := s.ValidateScan(image, nil)
	return err
}

// Finder receives the annotated properties' values ValidateScan finds:
// the property's index in Annotated(), where its value starts and ends.
type Finder interface {
	Found(i, start, end int)
}

// ValidateScan is Validate that also finds the annotated properties'
// values on the way, when it can: if scanned is true, found was given each
// annotated property present in image, in document order, and the image
// is valid JSON without a repeated member name. found may be nil.
func (s *Schema) ValidateScan(image []byte, found Finder) (scanned bool, err error) {
	if s.fast != nil {
		if err := s.validateFast(image, found); err != errFallback {
			return err == nil, err
		}
	}
	return false, s.validateLibrary(image)
}

// Annotated lists the properties ValidateScan reports: each PII field and
// each data group's subject field, once.
func (s *Schema) Annotated() []Path { return s.annotated }

// validateLibrary is Validate by the library alone.
func (s *Schema) validateLibrary(image []byte) error {
	m, err := DecodeImage(image)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Subject, ve.Version = s.Subject, s.Version
		}
		return err
	}
	return s.ValidateImage(m)
}

// ValidateImage is Validate for an image already decoded by DecodeImage,
// so a caller that also reads subject values decodes once.
func (s *Schema) ValidateImage(image map[string]any) error {
	unjudged, err := s.libraryVerdict(image)
	switch {
	case unjudged != nil:
		return unjudged
	case err == nil:
		return nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return fmt.Errorf("%w: schema %s version %d: %v", ErrInvalidRecord, s.Subject, s.Version, err)
	}
	leaf := firstLeaf(ve)
	return &ValidationError{Subject: s.Subject, Version: s.Version, Field: jsonPointer(leaf.InstanceLocation), Reason: reason(leaf.ErrorKind)}
}

// libraryVerdict is the library's own verdict on image (err), or, when the
// library could not judge it, the refusal by name of the number that
// stopped it (unjudged). The library compares numbers as big.Rat and does
// not check that the number parsed: one whose exponent big.Rat refuses
// (beyond a million) under a numeric keyword is a nil dereference in it.
// Any other panic is the library's, and goes on.
func (s *Schema) libraryVerdict(image map[string]any) (unjudged *ValidationError, err error) {
	defer func() {
		if p := recover(); p != nil {
			field, ok := unrepresentableNumber(image, "")
			if !ok {
				panic(p)
			}
			unjudged, err = &ValidationError{Subject: s.Subject, Version: s.Version, Field: field, Reason: reasonUnrepresentable}, nil
		}
	}()
	return nil, s.compiled.Validate(image)
}

// reasonUnrepresentable is why a number too large or too small to compare
// with the schema's bounds is refused.
const reasonUnrepresentable = "number cannot be checked against the schema: its exponent is beyond ±1,000,000"

// representable reports whether a JSON number can be compared exactly
// (big.Rat refuses exponents beyond a million, counted after the
// fraction's digits).
func representable(lit string) bool {
	if !strings.ContainsAny(lit, "eE") && len(lit) < 1e6 {
		return true // fewer than a million fraction digits, no exponent
	}
	_, ok := new(big.Rat).SetString(lit)
	return ok
}

// unrepresentableNumber finds a number in v that is not representable and
// returns its JSON pointer, below at.
func unrepresentableNumber(v any, at string) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		return at, !representable(v.String())
	case map[string]any:
		for k, m := range v {
			if p, ok := unrepresentableNumber(m, at+"/"+escapePointer(k)); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range v {
			if p, ok := unrepresentableNumber(e, at+"/"+strconv.Itoa(i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// reason describes a failed keyword without quoting the offending value,
// which may be PII: the library's own messages for format, pattern and
// numeric bounds include it.
func reason(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type, *kind.Required, *kind.Enum, *kind.Const, *kind.AdditionalProperties,
		*kind.MinLength, *kind.MaxLength, *kind.MinItems, *kind.MaxItems,
		*kind.MinProperties, *kind.MaxProperties, *kind.UniqueItems, *kind.FalseSchema,
		*kind.Dependency, *kind.DependentRequired, *kind.AdditionalItems, *kind.OneOf,
		*kind.AnyOf, *kind.AllOf, *kind.Not, *kind.Contains:
		return k.LocalizedString(englishPrinter)
	case *kind.Format:
		return fmt.Sprintf("value is not a valid %s", k.Want)
	case *kind.Pattern:
		return fmt.Sprintf("value does not match pattern %q", k.Want)
	case *kind.Minimum:
		return fmt.Sprintf("value is below the minimum %s", ratString(k.Want))
	case *kind.Maximum:
		return fmt.Sprintf("value is above the maximum %s", ratString(k.Want))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("value must be greater than %s", ratString(k.Want))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("value must be less than %s", ratString(k.Want))
	case *kind.MultipleOf:
		return fmt.Sprintf("value is not a multiple of %s", ratString(k.Want))
	case *kind.ContentEncoding:
		return fmt.Sprintf("value is not %s encoded", k.Want)
	case *kind.ContentMediaType:
		return fmt.Sprintf("value is not of media type %s", k.Want)
	default:
		if p := k.KeywordPath(); len(p) > 0 {
			return "fails keyword " + strings.Join(p, "/")
		}
		return "does not match the schema"
	}
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return fmt.Sprint(f)
}
