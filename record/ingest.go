package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/internal/jsonscan"
)

// Limits on client input. They protect the writer and the index from
// pathological records; the HTTP layer enforces the body-size limit.
const (
	MaxRecordBytes = 1 << 20
	MaxIDBytes     = 200
	MaxNameBytes   = 256
)

// Kinds of source a record may name.
var Kinds = []string{"postgres", "mysql", "dynamodb", "http", "debezium"}

// FieldError says which input field is wrong and why. Field is a dotted path
// such as "source.table"; it is empty when the whole input is at fault.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// ErrInvalid is wrapped by every FieldError-producing failure so callers can
// test for "the client sent something wrong" with errors.Is.
var ErrInvalid = errors.New("invalid record")

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IngestOptions fill in what the client may leave out.
type IngestOptions struct {
	// DefaultKind is the source kind assumed when the record names none.
	DefaultKind string
	// Now gives occurred_at when the record has none.
	Now time.Time
	// IdempotencyKey, when set, is the batch's Idempotency-Key: a record
	// with neither an id nor a source position gets
	// DeriveBatchID(IdempotencyKey, BatchIndex, BatchSize, r) instead of a
	// random id.
	IdempotencyKey        string
	BatchIndex, BatchSize int
}

// ParseIngest validates one client-supplied record (a JSON object) and
// returns it ready to append: images canonical, changed computed, id set.
func ParseIngest(data []byte, opts IngestOptions) (*Record, error) {
	p := new(parser)
	if r, ok := p.fastParse(data, opts); ok {
		return r, nil
	}
	return p.parse(data, opts)
}

// A Parser is ParseIngest for many records in turn, reusing its decoder
// and scratch space between them. It is not safe for concurrent use.
type Parser struct{ p parser }

// Parse is ParseIngest.
func (ps *Parser) Parse(data []byte, opts IngestOptions) (*Record, error) {
	if r, ok := ps.p.fastParse(data, opts); ok {
		return r, nil
	}
	// Nothing of a parsed record points into the scratch members: their
	// values are copied (canonicalised) or turned into strings.
	clear(ps.p.slab)
	ps.p.slab = ps.p.slab[:0]
	return ps.p.parse(data, opts)
}

func (p *parser) parse(data []byte, opts IngestOptions) (*Record, error) {
	if len(data) > MaxRecordBytes {
		return nil, fieldErr("", "record is %d bytes, more than the %d-byte limit", len(data), MaxRecordBytes)
	}
	if !utf8.Valid(data) {
		return nil, fieldErr("", "record is not valid UTF-8")
	}
	members, err := p.members(data, "")
	if err != nil {
		return nil, err
	}
	r := &Record{}
	var clientChanged []string
	haveChanged := false
	for _, m := range members {
		switch m.name {
		case "id":
			if r.ID, err = stringField(m, MaxIDBytes); err == nil && r.ID == "" {
				err = fieldErr("id", "must not be empty when given")
			}
		case "source":
			err = p.parseSource(m.value, &r.Source)
		case "op":
			var s string
			if s, err = stringField(m, 32); err == nil {
				r.Op = Op(s)
				if !r.Op.Valid() {
					err = fieldErr("op", "%q is not one of %s", s, OpList())
				}
			}
		case "key":
			r.Key, err = parseKey(m.value)
		case "before":
			r.Before, err = optionalObject("before", m.value)
		case "after":
			r.After, err = optionalObject("after", m.value)
		case "changed":
			haveChanged = true
			clientChanged, err = stringArray("changed", m.value)
		case "actor":
			r.Actor, err = p.parseActor(m.value)
		case "tx":
			r.Tx, err = p.parseTx(m.value)
		case "cause":
			r.Cause, err = optionalObject("cause", m.value)
		case "schema":
			r.Schema, err = p.parseSchemaRef(m.value)
		case "occurred_at":
			r.OccurredAt, err = timeField("occurred_at", m.value)
		case "seq", "recorded_at":
			err = fieldErr(m.name, "is assigned by the log and must not be sent")
		default:
			err = fieldErr(m.name, "unknown field")
		}
		if err != nil {
			return nil, err
		}
	}
	if err := requireFields(r); err != nil {
		return nil, err
	}
	defaults(r, opts)
	computed, err := p.changedCanonical(r.Before, r.After)
	if err != nil {
		return nil, err
	}
	switch {
	case !haveChanged:
		r.Changed = computed
	case len(r.Before) > 0 && len(r.After) > 0 && !slices.Equal(sortedCopy(clientChanged), computed):
		return nil, fieldErr("changed", "does not match the fields that differ between before and after (%s)", strings.Join(computed, ","))
	default:
		r.Changed = sortedCopy(clientChanged)
	}
	assignID(r, opts)
	return r, nil
}

// defaults fills in the source kind and occurred_at when the client left
// them out.
func defaults(r *Record, opts IngestOptions) {
	if r.Source.Kind == "" {
		r.Source.Kind = opts.DefaultKind
		if r.Source.Kind == "" {
			r.Source.Kind = "http"
		}
	}
	if r.OccurredAt.IsZero() {
		r.OccurredAt = opts.Now
		if r.OccurredAt.IsZero() {
			r.OccurredAt = time.Now()
		}
	}
	r.OccurredAt = r.OccurredAt.UTC()
}

// assignID gives a record the client sent without an id its derived one.
func assignID(r *Record, opts IngestOptions) {
	switch {
	case r.ID != "":
	case opts.IdempotencyKey != "" && (r.Tx == nil || r.Tx.Position == ""):
		r.ID = DeriveBatchID(opts.IdempotencyKey, opts.BatchIndex, opts.BatchSize, r)
	default:
		r.ID = DeriveID(r)
	}
}

func requireFields(r *Record) error {
	switch {
	case r.Source.Name == "":
		return fieldErr("source.name", "is required")
	case r.Source.Table == "":
		return fieldErr("source.table", "is required")
	case r.Op == "":
		return fieldErr("op", "is required")
	case len(r.Key) == 0:
		return fieldErr("key", "is required")
	}
	return nil
}

// OpList names the ops for error messages: "insert, update, …".
func OpList() string {
	s := make([]string, len(Ops))
	for i, op := range Ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

type member struct {
	name string
	// parent is the path of the object holding the member; the member's
	// own path is built only when an error names it.
	parent string
	value  jsontext.Value
}

func (m member) path() string {
	if m.name == "" {
		return m.parent
	}
	return join(m.parent, m.name)
}

// parser holds what one ParseIngest call reuses across the objects it
// splits: a decoder and a slab that members are cut from. Each objects's
// members are a sub-slice of the slab, which stays valid when the slab
// grows, as the old array is still referenced.
type parser struct {
	dec  jsontext.Decoder
	buf  bytes.Buffer
	slab []member
	fast fastScratch
}

// objectMembers splits a JSON object into its members in input order,
// rejecting duplicates, trailing data and non-objects with the field named.
func objectMembers(data []byte, path string) ([]member, error) {
	return new(parser).members(data, path)
}

func (p *parser) members(data []byte, path string, opts ...jsontext.Options) ([]member, error) {
	p.room()
	if out, ok := p.scanMembers(data, path); ok {
		return out, nil
	}
	// The decoder's errors are the ones clients see (tests pin them), so
	// whatever the scanner refuses is decoded again to say why.
	return p.decodeMembers(data, path, opts...)
}

// room makes sure the slab has space for an object's members. A new slab
// is twice the size of the last, so that a Parser, which empties its slab
// for each record, soon has one that holds all of a record's objects (a
// record of the usual shape has about 25 members in all) instead of
// allocating a fresh one for every record.
func (p *parser) room() {
	if cap(p.slab)-len(p.slab) < 12 {
		p.slab = make([]member, 0, max(32, 2*cap(p.slab)))
	}
}

func (p *parser) decodeMembers(data []byte, path string, opts ...jsontext.Options) ([]member, error) {
	p.room()
	// A bytes.Buffer lets the decoder parse data in place, and member
	// values are then slices of data (found by offset) rather than
	// copies: data is the caller's and is not written to.
	p.buf = *bytes.NewBuffer(data)
	dec := &p.dec
	dec.Reset(&p.buf, opts...)
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, syntaxErr(path, err)
	}
	if tok.Kind() != '{' {
		return nil, fieldErr(path, "expected a JSON object, got %s", kindName(tok.Kind()))
	}
	first := len(p.slab)
	for dec.PeekKind() != '}' {
		nameTok, err := dec.ReadToken()
		if err != nil {
			return nil, syntaxErr(path, err)
		}
		name := nameTok.String()
		val, err := dec.ReadValue()
		if err != nil {
			return nil, syntaxErr(join(path, name), err)
		}
		end := int(dec.InputOffset())
		start := end - len(val)
		p.slab = append(p.slab, member{name: name, parent: path, value: jsontext.Value(data[start:end:end])})
	}
	out := p.slab[first:len(p.slab):len(p.slab)]
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxErr(path, err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, fieldErr(path, "unexpected data after the JSON object")
	}
	return out, nil
}

// scanMembers is members for input the allocation-free scanner accepts,
// which is the input the decoder accepts; ok is false otherwise.
func (p *parser) scanMembers(data []byte, path string) (_ []member, ok bool) {
	first := len(p.slab)
	start := jsonscan.Space(data, 0)
	if jsonscan.Kind(data, start) != jsonscan.Object {
		return nil, false
	}
	end, err := jsonscan.Members(data, start, 0, func(lit []byte, v int) (int, error) {
		end, err := jsonscan.Skip(data, v, 1)
		if err != nil {
			return 0, err
		}
		var name string
		if bytes.IndexByte(lit, '\\') < 0 {
			name = fieldName(lit[1 : len(lit)-1])
		} else {
			name = jsonscan.Unquote(lit)
		}
		p.slab = append(p.slab, member{name: name, parent: path, value: jsontext.Value(data[v:end:end])})
		return end, nil
	})
	if err != nil || jsonscan.Space(data, end) != len(data) {
		p.slab = p.slab[:first]
		return nil, false
	}
	return p.slab[first:len(p.slab):len(p.slab)], true
}

// fieldName is string(b) without an allocation for the names of the
// record's own fields, which every record repeats.
func fieldName(b []byte) string {
	switch string(b) {
	case "id":
		return "id"
	case "source":
		return "source"
	case "op":
		return "op"
	case "key":
		return "key"
	case "before":
		return "before"
	case "after":
		return "after"
	case "changed":
		return "changed"
	case "actor":
		return "actor"
	case "tx":
		return "tx"
	case "cause":
		return "cause"
	case "schema":
		return "schema"
	case "occurred_at":
		return "occurred_at"
	case "name":
		return "name"
	case "kind":
		return "kind"
	case "database":
		return "database"
	case "table":
		return "table"
	case "type":
		return "type"
	case "app":
		return "app"
	case "position":
		return "position"
	case "index":
		return "index"
	case "commit_time":
		return "commit_time"
	}
	return string(b)
}

// plainString returns the contents of a JSON string token that holds no
// escape, which is then its value as is; ok is false when it must be
// unescaped. The decoder has already checked the token.
func plainString(v jsontext.Value) (string, bool) {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func syntaxErr(path string, err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName) {
		// Name the member itself, nested ones too: the pointer locates it
		// within the value being decoded.
		// The pointer is relative to the object objectMembers decodes,
		// whose member path already ends path.
		toks := slices.Collect(se.JSONPointer.Tokens())
		dup := path
		if len(toks) > 0 && (dup == toks[0] || strings.HasSuffix(dup, "."+toks[0])) {
			dup = strings.TrimSuffix(strings.TrimSuffix(dup, toks[0]), ".")
		}
		for _, tok := range toks {
			dup = join(dup, tok)
		}
		return fieldErr(dup, "duplicate JSON member name %q", se.JSONPointer.LastToken())
	}
	if errors.As(err, &se) {
		return fieldErr(path, "malformed JSON at byte %d: %v", se.ByteOffset, se.Err)
	}
	return fieldErr(path, "malformed JSON: %v", err)
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "invalid JSON"
}

func stringField(m member, max int) (string, error) {
	if m.value.Kind() != '"' {
		return "", fieldErr(m.path(), "expected a string, got %s", kindName(m.value.Kind()))
	}
	s, ok := plainString(m.value)
	if !ok {
		if err := json.Unmarshal(m.value, &s); err != nil {
			return "", fieldErr(m.path(), "bad string: %v", err)
		}
	}
	if len(s) > max {
		return "", fieldErr(m.path(), "is %d bytes, more than the %d-byte limit", len(s), max)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return "", fieldErr(m.path(), "must not contain control characters")
		}
	}
	return s, nil
}

// sourceFields are the members of source, in the order of Source's fields.
var sourceFields = [...]string{"name", "kind", "database", "schema", "table"}

// sourceField is the index of a source member in sourceFields, or -1.
func sourceField[T string | []byte](name T) int {
	for k, f := range sourceFields {
		if string(name) == f {
			return k
		}
	}
	return -1
}

func (p *parser) parseSource(v jsontext.Value, s *Source) error {
	members, err := p.members(v, "source")
	if err != nil {
		return err
	}
	for _, m := range members {
		k := sourceField(m.name)
		if k < 0 {
			return fieldErr(m.path(), "unknown field")
		}
		dst := [...]*string{&s.Name, &s.Kind, &s.Database, &s.Schema, &s.Table}[k]
		if *dst, err = stringField(m, MaxNameBytes); err != nil {
			return err
		}
	}
	if s.Kind != "" && !slices.Contains(Kinds, s.Kind) {
		return fieldErr("source.kind", "%q is not one of %s", s.Kind, strings.Join(Kinds, ", "))
	}
	return nil
}

// canonicalOptions sort object members and minimise strings but keep number
// literals exactly as sent, so 12345678901234567890.123 stays that.
var canonicalOptions = []jsontext.Options{jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)}

func canonicalObject(path string, v jsontext.Value, keepOrder bool) (json.RawMessage, error) {
	if v.Kind() != '{' {
		return nil, fieldErr(path, "expected a JSON object, got %s", kindName(v.Kind()))
	}
	opts := canonicalOptions
	if keepOrder {
		opts = append(slices.Clone(opts), jsontext.ReorderRawObjects(false))
	}
	if end, ok := canonicalAt(v, 0, !keepOrder); ok && end == len(v) {
		return json.RawMessage(slices.Clone(v)), nil
	}
	val := slices.Clone(v)
	if err := val.Canonicalize(opts...); err != nil {
		return nil, syntaxErr(path, err)
	}
	return json.RawMessage(val), nil
}

// canonicalAt reports whether the JSON value at v[i] is valid and already
// in canonical form, and where it ends: no whitespace, no escapes in
// strings, ASCII member names, none given twice in an object, and (when
// sorted) names in increasing order at every level. Clients mostly send
// images in that form, and then canonicalising them would copy them for
// nothing. It is conservative: an escape, a non-ASCII name, nesting deeper
// than maxFastDepth or an unsorted object of more than maxUnsorted members
// sends the value through the decoder and Canonicalize, which also name
// what is wrong with it.
func canonicalAt(v []byte, i int, sorted bool) (int, bool) {
	return canonicalWalk(v, i, sorted, 0)
}

// Bounds of the fast paths' walks: canonicalAt recurses, and looks for a
// repeated name in an unsorted object by comparing each with the ones
// before it.
const (
	maxFastDepth = 64
	maxUnsorted  = 16
)

func canonicalWalk(v []byte, i int, sorted bool, depth int) (int, bool) {
	switch jsonscan.Kind(v, i) {
	case jsonscan.String:
		end, escaped, err := jsonscan.Str(v, i)
		return end, err == nil && !escaped
	case jsonscan.Number:
		end, _, err := jsonscan.Num(v, i)
		return end, err == nil
	case jsonscan.Null, jsonscan.Bool:
		for _, w := range []string{"null", "true", "false"} {
			if bytes.HasPrefix(v[i:], []byte(w)) {
				return i + len(w), true
			}
		}
		return 0, false
	case jsonscan.Array:
		if depth >= maxFastDepth {
			return 0, false
		}
		i++
		if i < len(v) && v[i] == ']' {
			return i + 1, true
		}
		for {
			end, ok := canonicalWalk(v, i, sorted, depth+1)
			if !ok || end >= len(v) {
				return 0, false
			}
			switch v[end] {
			case ']':
				return end + 1, true
			case ',':
				i = end + 1
			default:
				return 0, false
			}
		}
	case jsonscan.Object:
		if depth >= maxFastDepth {
			return 0, false
		}
		i++
		if i < len(v) && v[i] == '}' {
			return i + 1, true
		}
		var names [maxUnsorted][]byte
		n := 0
		for {
			ne, escaped, err := jsonscan.Str(v, i)
			if err != nil || escaped || ne >= len(v) || v[ne] != ':' {
				return 0, false
			}
			name := v[i+1 : ne-1]
			if !ascii(name) {
				return 0, false
			}
			switch {
			case sorted:
				// Increasing names cannot repeat.
				if n > 0 && bytes.Compare(name, names[0]) <= 0 {
					return 0, false
				}
				names[0], n = name, 1
			case n == maxUnsorted:
				return 0, false
			default:
				for _, prev := range names[:n] {
					if bytes.Equal(prev, name) {
						return 0, false
					}
				}
				names[n] = name
				n++
			}
			end, ok := canonicalWalk(v, ne+1, sorted, depth+1)
			if !ok || end >= len(v) {
				return 0, false
			}
			switch v[end] {
			case '}':
				return end + 1, true
			case ',':
				i = end + 1
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func optionalObject(path string, v jsontext.Value) (json.RawMessage, error) {
	if v.Kind() == 'n' {
		return nil, nil
	}
	return canonicalObject(path, v, false)
}

func parseKey(v jsontext.Value) (json.RawMessage, error) {
	key, err := canonicalObject("key", v, true)
	if err != nil {
		return nil, err
	}
	if string(key) == "{}" {
		return nil, fieldErr("key", "must name at least one column")
	}
	return key, nil
}

func (p *parser) parseActor(v jsontext.Value) (json.RawMessage, error) {
	if v.Kind() == 'n' {
		return nil, nil
	}
	members, err := p.members(v, "actor")
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		switch m.name {
		case "id", "type", "app", "ip", "request_id":
			if _, err := stringField(m, MaxNameBytes); err != nil {
				return nil, err
			}
		}
	}
	return canonicalObject("actor", v, false)
}

func (p *parser) parseTx(v jsontext.Value) (*Tx, error) {
	if v.Kind() == 'n' {
		return nil, nil
	}
	members, err := p.members(v, "tx")
	if err != nil {
		return nil, err
	}
	tx := &Tx{}
	for _, m := range members {
		switch m.name {
		case "id":
			tx.ID, err = stringField(m, MaxNameBytes)
		case "position":
			tx.Position, err = stringField(m, MaxNameBytes)
		case "index":
			var n int64
			if n, err = intField(m); err == nil {
				if n < 0 {
					err = fieldErr(m.path(), "must not be negative")
				}
				tx.Index = &n
			}
		case "commit_time":
			var t time.Time
			if t, err = timeField(m.path(), m.value); err == nil {
				t = t.UTC()
				tx.CommitTime = &t
			}
		default:
			err = fieldErr(m.path(), "unknown field")
		}
		if err != nil {
			return nil, err
		}
	}
	return tx, nil
}

func (p *parser) parseSchemaRef(v jsontext.Value) (*SchemaRef, error) {
	if v.Kind() == 'n' {
		return nil, nil
	}
	members, err := p.members(v, "schema")
	if err != nil {
		return nil, err
	}
	ref := &SchemaRef{}
	for _, m := range members {
		switch m.name {
		case "subject":
			ref.Subject, err = stringField(m, MaxNameBytes)
		case "version":
			ref.Version, err = intField(m)
			if err == nil && ref.Version < 1 {
				err = fieldErr(m.path(), "must be 1 or more")
			}
		default:
			err = fieldErr(m.path(), "unknown field")
		}
		if err != nil {
			return nil, err
		}
	}
	if ref.Subject == "" {
		return nil, fieldErr("schema.subject", "is required when schema is given")
	}
	return ref, nil
}

func intField(m member) (int64, error) {
	if m.value.Kind() != '0' {
		return 0, fieldErr(m.path(), "expected an integer, got %s", kindName(m.value.Kind()))
	}
	n, err := strconv.ParseInt(string(m.value), 10, 64)
	if err != nil {
		return 0, fieldErr(m.path(), "expected an integer, got %s", m.value)
	}
	return n, nil
}

func timeField(path string, v jsontext.Value) (time.Time, error) {
	if v.Kind() != '"' {
		return time.Time{}, fieldErr(path, "expected an RFC 3339 timestamp string, got %s", kindName(v.Kind()))
	}
	s, ok := plainString(v)
	if !ok {
		if err := json.Unmarshal(v, &s); err != nil {
			return time.Time{}, fieldErr(path, "bad string: %v", err)
		}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fieldErr(path, "%q is not an RFC 3339 timestamp (like 2026-01-02T15:04:05Z)", s)
	}
	if !encodableTime(t) {
		return time.Time{}, fieldErr(path, "%q is outside the years 0000 to 9999 in UTC", s)
	}
	return t, nil
}

func stringArray(path string, v jsontext.Value) ([]string, error) {
	if v.Kind() != '[' {
		return nil, fieldErr(path, "expected an array of strings, got %s", kindName(v.Kind()))
	}
	// v is one value already checked, so it is walked in place by the
	// scanner; the decoder below is only for what the scanner refuses.
	var out []string
	_, err := jsonscan.Elements(v, 0, 0, func(i, at int) (int, error) {
		end, err := jsonscan.Skip(v, at, 1)
		if err != nil {
			return 0, err
		}
		s, err := stringField(member{value: jsontext.Value(v[at:end])}, MaxNameBytes)
		if err != nil {
			// Named only now: the path costs an allocation per item.
			_, err = stringField(member{parent: fmt.Sprintf("%s[%d]", path, i), value: jsontext.Value(v[at:end])}, MaxNameBytes)
			return 0, &itemError{err}
		}
		out = append(out, s)
		return end, nil
	})
	var ie *itemError
	switch {
	case errors.As(err, &ie):
		return nil, ie.err
	case err == nil:
		if out == nil {
			out = []string{}
		}
		return out, nil
	}
	return decodedStringArray(path, v)
}

// itemError carries an item's own error out of the scanner's walk, told
// apart from the scanner's syntax errors.
type itemError struct{ err error }

func (e *itemError) Error() string { return e.err.Error() }

func decodedStringArray(path string, v jsontext.Value) ([]string, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(v))
	if _, err := dec.ReadToken(); err != nil {
		return nil, fieldErr(path, "bad array: %v", err)
	}
	var out []string
	for i := 0; dec.PeekKind() != ']'; i++ {
		item, err := dec.ReadValue()
		if err != nil {
			return nil, fieldErr(path, "bad array: %v", err)
		}
		s, err := stringField(member{value: item}, MaxNameBytes)
		if err != nil {
			// Named only now: the path costs an allocation per item.
			_, err = stringField(member{parent: fmt.Sprintf("%s[%d]", path, i), value: item}, MaxNameBytes)
			return nil, err
		}
		out = append(out, s)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
