package projection

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/ext"
)

// Fold is how a projection combines the records of one group key.
type Fold string

// The built-in folds.
const (
	// FoldState keeps the current image per key: insert and snapshot set it,
	// update merges the after image over it field by field, delete removes
	// the key, truncate removes every key last set from that table, ddl and
	// event leave it alone (the semantics of query.StateAt).
	FoldState Fold = "state"
	// FoldCount counts the matching records per key.
	FoldCount Fold = "count"
	// FoldLastChangePerField records, per key and field, the seq, time and
	// actor of the field's last change.
	FoldLastChangePerField Fold = "last_change_per_field"
	// FoldReduce evaluates the CEL expression Value over (state, record);
	// its result is the new state.
	FoldReduce Fold = "reduce"
)

// Folds lists the valid folds, in documentation order.
func Folds() []Fold { return []Fold{FoldState, FoldCount, FoldLastChangePerField, FoldReduce} }

// foldVersion is mixed into every definition hash: bump it when a fold's
// semantics change so existing projections are rebuilt on the next start.
const foldVersion = "1"

// Definition declares one projection, as written in the configuration.
type Definition struct {
	// Name identifies the projection in the API and CLI: 1–64 characters
	// from [a-z0-9_-], starting with a letter or digit.
	Name string `yaml:"name" json:"name"`
	// Filter is a CEL bool expression over `record`; empty means every
	// record.
	Filter string `yaml:"filter" json:"filter,omitempty"`
	// Key is a CEL string expression over `record`: the group key.
	Key string `yaml:"key" json:"key"`
	// Fold is state, count, last_change_per_field or reduce.
	Fold Fold `yaml:"fold" json:"fold"`
	// Value (reduce only) is a CEL expression over `state` (the key's
	// previous value, or Initial) and `record`: the new state. null
	// removes the key.
	Value string `yaml:"value" json:"value,omitempty"`
	// Initial (reduce only) is a constant CEL expression: the state before
	// a key's first record (default null).
	Initial string `yaml:"initial" json:"initial,omitempty"`
}

// Hash identifies the definition's meaning: when it changes, the stored
// projection no longer matches and is rebuilt.
func (d Definition) Hash() string {
	h := sha256.New()
	for _, s := range []string{foldVersion, d.Name, d.Filter, d.Key, string(d.Fold), d.Value, d.Initial} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DefinitionError reports a projection definition that cannot be used,
// naming the projection and the field (name, filter, key, fold, value,
// initial).
type DefinitionError struct {
	Projection string
	Field      string
	Err        error
}

func (e *DefinitionError) Error() string {
	name := e.Projection
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Sprintf("projection %q: %s: %v", name, e.Field, e.Err)
}

func (e *DefinitionError) Unwrap() error { return e.Err }

// validName reports whether name is 1–64 characters of [a-z0-9_-] starting
// with a letter or digit: safe in URLs, file names and Pebble keys.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// compiled is a definition with its programs.
type compiled struct {
	def     Definition
	hash    string
	need    fieldMask   // record members the expressions read
	filter  cel.Program // nil: every record
	key     cel.Program
	value   cel.Program // reduce only
	initial []byte      // reduce only: canonical JSON of the initial state
}

// Set is a compiled, validated list of projections.
type Set struct {
	list   []*compiled
	byName map[string]*compiled
}

// Names lists the projections in definition order.
func (s *Set) Names() []string {
	out := make([]string, len(s.list))
	for i, c := range s.list {
		out[i] = c.def.Name
	}
	return out
}

// Definitions returns the definitions in order.
func (s *Set) Definitions() []Definition {
	out := make([]Definition, len(s.list))
	for i, c := range s.list {
		out[i] = c.def
	}
	return out
}

// newEnv declares the variables expressions may use. record is the API
// form of a record (docs/api.md) as a map, with occurred_at, recorded_at
// and tx.commit_time as timestamps; state is a reduce fold's previous value.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("record", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("state", cel.DynType),
		ext.Strings(),
		ext.Math(),
	)
}

// Compile validates defs and compiles their expressions. Errors are
// *DefinitionError, joined when several definitions are wrong.
func Compile(defs []Definition) (*Set, error) {
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	set := &Set{byName: make(map[string]*compiled, len(defs))}
	var errs []error
	for _, d := range defs {
		c, err := compileOne(env, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := set.byName[d.Name]; dup {
			errs = append(errs, &DefinitionError{d.Name, "name", errors.New("defined twice")})
			continue
		}
		set.byName[d.Name] = c
		set.list = append(set.list, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

func compileOne(env *cel.Env, d Definition) (*compiled, error) {
	bad := func(field string, err error) error { return &DefinitionError{d.Name, field, err} }
	if !validName(d.Name) {
		return nil, bad("name", errors.New("want 1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit"))
	}
	c := &compiled{def: d, hash: d.Hash()}
	var err error
	if d.Filter != "" {
		if c.filter, err = program(env, d.Filter, cel.BoolType, &c.need); err != nil {
			return nil, bad("filter", err)
		}
	}
	if d.Key == "" {
		return nil, bad("key", errors.New("required: a CEL string expression such as string(record.key.id)"))
	}
	if c.key, err = program(env, d.Key, cel.StringType, &c.need); err != nil {
		return nil, bad("key", err)
	}
	switch d.Fold {
	case FoldState, FoldCount, FoldLastChangePerField:
		if d.Value != "" {
			return nil, bad("value", fmt.Errorf("only a reduce fold takes a value expression, not %s", d.Fold))
		}
		if d.Initial != "" {
			return nil, bad("initial", fmt.Errorf("only a reduce fold takes an initial expression, not %s", d.Fold))
		}
	case FoldReduce:
		if d.Value == "" {
			return nil, bad("value", errors.New("required for a reduce fold: a CEL expression over state and record"))
		}
		if c.value, err = program(env, d.Value, nil, &c.need); err != nil {
			return nil, bad("value", err)
		}
		c.initial = []byte("null")
		if d.Initial != "" {
			p, err := program(env, d.Initial, nil, new(fieldMask))
			if err != nil {
				return nil, bad("initial", err)
			}
			v, _, err := p.Eval(map[string]any{"record": map[string]any{}, "state": nil})
			if err != nil {
				return nil, bad("initial", fmt.Errorf("must be a constant expression: %w", err))
			}
			if c.initial, err = appendValueJSON(nil, v); err != nil {
				return nil, bad("initial", err)
			}
		}
	case "":
		return nil, bad("fold", fmt.Errorf("required: one of %v", Folds()))
	default:
		return nil, bad("fold", fmt.Errorf("unknown fold %q: want one of %v", d.Fold, Folds()))
	}
	return c, nil
}

// program compiles one expression, checking its result type when want is
// set (dyn is accepted: the type is then checked on each evaluation).
func program(env *cel.Env, expr string, want *cel.Type, need *fieldMask) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	*need |= recordFields(ast)
	if want != nil {
		out := ast.OutputType()
		if !out.IsExactType(want) && !out.IsExactType(cel.DynType) {
			return nil, fmt.Errorf("must be a %s expression, but %q is %s", want, expr, out)
		}
	}
	p, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// recordFields finds the members of record an expression reads, so only
// those of the costly ones (the JSON images, key, actor, cause) are
// decoded. Any use of record other than record.member — record["after"],
// record passed whole — reads them all.
func recordFields(a *cel.Ast) fieldMask {
	var idents, selects int
	var need fieldMask
	celast.PreOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			if e.AsIdent() == "record" {
				idents++
			}
		case celast.SelectKind:
			sel := e.AsSelect()
			if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == "record" {
				selects++
				need |= fieldBit(sel.FieldName())
			}
		}
	}))
	if idents != selects {
		return allFields
	}
	return need
}
