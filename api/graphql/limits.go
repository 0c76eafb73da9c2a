package graphql

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
)

// The limits, in the order a request meets them:
//
//  1. the body (MaxBodyBytes), before a byte is decoded: 413;
//  2. the document's tokens (MaxTokens), fields (MaxFields, fragments
//     expanded) and aliases (MaxAliases), before gqlparser validates it —
//     its overlapping-fields rule compares same-named fields pairwise, so a
//     document of a few thousand fields takes seconds to validate whatever
//     it asks for;
//  3. the operation's depth (MaxDepth) and complexity (MaxComplexity),
//     introspection counted like any field, before any resolver runs;
//  4. the answer's size (MaxResponseBytes), counted as fields resolve, so
//     an operation stops growing once over it instead of being measured
//     after it has been built.

// documentLimit refuses, before validation, a document too large to
// validate cheaply.
type documentLimit struct {
	maxTokens, maxFields, maxAliases int
	// cache holds documents that passed; a hit needs no second look.
	cache graphql.Cache[*ast.QueryDocument]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = documentLimit{}

func (documentLimit) ExtensionName() string                   { return "DocumentLimit" }
func (documentLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (d documentLimit) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if _, ok := d.cache.Get(ctx, p.Query); ok {
		return nil
	}
	src := &ast.Source{Input: p.Query}
	if n, ok := countTokens(src, d.maxTokens); !ok {
		return limitError(CodeTokenLimit, "query has more than %d tokens, the limit; send a smaller query", n-1)
	}
	doc, err := parser.ParseQuery(src)
	if err != nil {
		return nil // gqlgen parses it again and reports the syntax error
	}
	c := docCounter{frags: map[string]*ast.FragmentDefinition{}, memo: map[string]docCount{}, active: map[string]bool{}}
	for _, f := range doc.Fragments {
		c.frags[f.Name] = f
	}
	var total docCount
	for _, op := range doc.Operations {
		total = total.add(c.set(op.SelectionSet))
	}
	// Fragments no operation uses are refused by validation, but validated
	// first.
	for _, f := range doc.Fragments {
		if _, reached := c.memo[f.Name]; !reached {
			total = total.add(c.spread(f.Name))
		}
	}
	switch {
	case total.aliases > d.maxAliases:
		return limitError(CodeAliasLimit, "query has %d aliases (fragments expanded), which exceeds the limit of %d; ask for fewer aliased fields per request", total.aliases, d.maxAliases)
	case total.fields > d.maxFields:
		return limitError(CodeFieldLimit, "query selects %d fields (fragments expanded), which exceeds the limit of %d; split it into several requests", total.fields, d.maxFields)
	}
	return nil
}

// countTokens counts src's tokens up to max+1; ok is false past max. A
// lexing error stops the count: the parser reports it.
func countTokens(src *ast.Source, max int) (n int, ok bool) {
	lx := lexer.New(src)
	for n <= max {
		tok, err := lx.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return n, true
		}
		n++
	}
	return n, false
}

// docCount saturates rather than overflows: a chain of fragments each
// spreading the previous twice doubles per link.
type docCount struct{ fields, aliases int }

const saturated = 1 << 40

func (a docCount) add(b docCount) docCount {
	return docCount{min(a.fields+b.fields, saturated), min(a.aliases+b.aliases, saturated)}
}

// docCounter counts fields and aliases with fragment spreads expanded,
// each fragment counted once (memo), so the count itself is linear in the
// document.
type docCounter struct {
	frags  map[string]*ast.FragmentDefinition
	memo   map[string]docCount
	active map[string]bool
}

func (c *docCounter) set(set ast.SelectionSet) docCount {
	var n docCount
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			n.fields++
			if s.Alias != s.Name {
				n.aliases++
			}
			n = n.add(c.set(s.SelectionSet))
		case *ast.InlineFragment:
			n = n.add(c.set(s.SelectionSet))
		case *ast.FragmentSpread:
			n = n.add(c.spread(s.Name))
		}
	}
	return n
}

func (c *docCounter) spread(name string) docCount {
	if n, ok := c.memo[name]; ok {
		return n
	}
	f := c.frags[name]
	if f == nil || c.active[name] {
		return docCount{} // unknown or cyclic: validation refuses both
	}
	c.active[name] = true
	n := c.set(f.SelectionSet)
	delete(c.active, name)
	c.memo[name] = n
	return n
}

// operationLimit refuses, after validation and before any resolver runs,
// an operation deeper than maxDepth or costing more than maxComplexity.
type operationLimit struct {
	es                      graphql.ExecutableSchema
	maxDepth, maxComplexity int
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = &operationLimit{}

func (*operationLimit) ExtensionName() string { return "OperationLimit" }

func (l *operationLimit) Validate(es graphql.ExecutableSchema) error {
	l.es = es
	return nil
}

func (l *operationLimit) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet); depth > l.maxDepth {
		return limitError(CodeDepthLimit, "operation has depth %d, which exceeds the limit of %d; nest fewer fields", depth, l.maxDepth)
	}
	w := costWalker{ctx: ctx, es: l.es, schema: l.es.Schema(), vars: oc.Variables, stop: l.maxComplexity}
	if cost := w.set(oc.Operation.SelectionSet); cost > l.maxComplexity {
		// The walk stops soon after the limit, so the figure is a lower
		// bound.
		return limitError(CodeComplexityLimit, "operation has complexity at least %d, which exceeds the limit of %d; ask for fewer fields or smaller pages (first)", cost, l.maxComplexity)
	}
	return nil
}

// selectionDepth is the deepest chain of fields in set, introspection
// fields included; fragments add no level of their own. Validation has
// already refused fragment cycles, and documentLimit bounds the expanded
// size, so the walk is bounded too.
func selectionDepth(set ast.SelectionSet) int {
	deepest := 0
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			d = 1 + selectionDepth(s.SelectionSet)
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				d = selectionDepth(s.Definition.SelectionSet)
			}
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// costWalker computes an operation's complexity. Schema fields cost as
// gqlgen's complexity package costs them (1 plus their children, or the
// schema's complexity functions: a page costs first times a node).
// Introspection fields cost what they answer: the schema is known, so the
// walk counts, for each list, the items it actually holds (every type,
// every field of a type, …), which makes a selection of __schema cost as
// much as the answer it builds. The walk stops once past stop.
type costWalker struct {
	ctx    context.Context
	es     graphql.ExecutableSchema
	schema *ast.Schema
	vars   map[string]any
	stop   int
}

func (w *costWalker) set(set ast.SelectionSet) int {
	cost := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			cost = saturatingAdd(cost, w.field(s))
		case *ast.InlineFragment:
			cost = saturatingAdd(cost, w.set(s.SelectionSet))
		case *ast.FragmentSpread:
			if s.Definition != nil {
				cost = saturatingAdd(cost, w.set(s.Definition.SelectionSet))
			}
		}
		if cost > w.stop {
			break
		}
	}
	return cost
}

func (w *costWalker) field(f *ast.Field) int {
	switch f.Name {
	case "__schema":
		return saturatingAdd(1, w.intro(f.SelectionSet, []any{w.schema}))
	case "__type":
		var items []any
		if name, ok := f.ArgumentMap(w.vars)["name"].(string); ok {
			if def := w.schema.Types[name]; def != nil {
				items = append(items, def)
			}
		}
		return saturatingAdd(1, w.intro(f.SelectionSet, items))
	}
	if f.Definition == nil || f.ObjectDefinition == nil {
		return 1
	}
	child := 0
	if def := w.schema.Types[f.Definition.Type.Name()]; def != nil {
		switch def.Kind {
		case ast.Object, ast.Interface, ast.Union:
			child = w.set(f.SelectionSet)
		}
	}
	args := f.ArgumentMap(w.vars)
	objects := []*ast.Definition{f.ObjectDefinition}
	if f.ObjectDefinition.Kind == ast.Interface {
		// An interface field costs as its dearest implementation.
		objects = w.schema.GetPossibleTypes(f.ObjectDefinition)
	}
	cost := 0
	for _, obj := range objects {
		c, ok := w.es.Complexity(w.ctx, obj.Name, f.Name, child, args)
		if !ok || c < 1 {
			c = saturatingAdd(1, child)
		}
		cost = max(cost, c)
	}
	return cost
}

// intro is the cost of set on each of items, introspection values:
// *ast.Schema, *ast.Definition (a named type), *ast.Type (a type
// reference, possibly a NON_NULL or LIST wrapper), *ast.FieldDefinition
// (a field or an input field), *ast.ArgumentDefinition,
// *ast.EnumValueDefinition, *ast.DirectiveDefinition. Type conditions of
// fragments are ignored, which can only overcount.
func (w *costWalker) intro(set ast.SelectionSet, items []any) int {
	cost := 0
	for _, item := range items {
		cost = saturatingAdd(cost, w.introOne(set, item))
		if cost > w.stop {
			break
		}
	}
	return cost
}

func (w *costWalker) introOne(set ast.SelectionSet, item any) int {
	cost := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			cost = saturatingAdd(cost, 1)
			if len(s.SelectionSet) > 0 {
				cost = saturatingAdd(cost, w.intro(s.SelectionSet, w.introChildren(s.Name, item)))
			}
		case *ast.InlineFragment:
			cost = saturatingAdd(cost, w.introOne(s.SelectionSet, item))
		case *ast.FragmentSpread:
			if s.Definition != nil {
				cost = saturatingAdd(cost, w.introOne(s.Definition.SelectionSet, item))
			}
		}
		if cost > w.stop {
			break
		}
	}
	return cost
}

// introChildren is what field of item answers, as gqlgen's introspection
// answers it; scalar fields answer nothing to walk.
func (w *costWalker) introChildren(field string, item any) []any {
	var out []any
	switch v := item.(type) {
	case *ast.Schema:
		switch field {
		case "types":
			for _, def := range v.Types {
				out = append(out, def)
			}
		case "queryType", "mutationType", "subscriptionType":
			root := map[string]*ast.Definition{"queryType": v.Query, "mutationType": v.Mutation, "subscriptionType": v.Subscription}[field]
			if root != nil {
				out = append(out, root)
			}
		case "directives":
			for _, d := range v.Directives {
				out = append(out, d)
			}
		}
	case *ast.Type:
		switch {
		case v.NonNull:
			if field == "ofType" {
				inner := *v
				inner.NonNull = false
				out = append(out, &inner)
			}
		case v.Elem != nil:
			if field == "ofType" {
				out = append(out, v.Elem)
			}
		default:
			if def := w.schema.Types[v.NamedType]; def != nil {
				out = w.introChildren(field, def)
			}
		}
	case *ast.Definition:
		switch field {
		case "fields":
			if v.Kind == ast.Object || v.Kind == ast.Interface {
				for _, f := range v.Fields {
					if len(f.Name) < 2 || f.Name[:2] != "__" {
						out = append(out, f)
					}
				}
			}
		case "inputFields":
			if v.Kind == ast.InputObject {
				for _, f := range v.Fields {
					out = append(out, f)
				}
			}
		case "interfaces":
			for _, name := range v.Interfaces {
				if def := w.schema.Types[name]; def != nil {
					out = append(out, def)
				}
			}
		case "possibleTypes":
			if v.Kind == ast.Interface || v.Kind == ast.Union {
				for _, def := range w.schema.GetPossibleTypes(v) {
					out = append(out, def)
				}
			}
		case "enumValues":
			for _, e := range v.EnumValues {
				out = append(out, e)
			}
		}
	case *ast.FieldDefinition:
		switch field {
		case "args":
			for _, a := range v.Arguments {
				out = append(out, a)
			}
		case "type":
			out = append(out, v.Type)
		}
	case *ast.ArgumentDefinition:
		if field == "type" {
			out = append(out, v.Type)
		}
	case *ast.DirectiveDefinition:
		if field == "args" {
			for _, a := range v.Arguments {
				out = append(out, a)
			}
		}
	}
	return out
}

func saturatingAdd(a, b int) int {
	return min(a+b, saturated)
}

// responseLimit stops an operation whose answer grows past max bytes and
// answers one error instead of it. Each field adds its estimated share of
// the JSON answer (its name and, for a leaf, its value) as it resolves;
// once over, the fields still to resolve fail at once, so neither the
// resolved values nor the answer grow much beyond max.
type responseLimit struct{ max int64 }

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
	graphql.FieldInterceptor
} = responseLimit{}

func (responseLimit) ExtensionName() string                   { return "ResponseLimit" }
func (responseLimit) Validate(graphql.ExecutableSchema) error { return nil }

type budgetKey struct{}

type responseBudget struct {
	used atomic.Int64
	over atomic.Bool
	// loaded counts the bytes of the records the operation's pages read
	// from the store, up to loadMax, before any field of them resolves.
	loaded  atomic.Int64
	loadMax int64
}

// loadBudget is the query engine's page budget (query.PageRequest.Budget)
// of the operation in ctx, shared by all its list fields: half the answer
// limit, as the answer also carries field names and structure. A page
// that spends it ends early with a cursor (hasNextPage), so a page of
// large records never sits in memory whole. Nil outside an operation.
func loadBudget(ctx context.Context) func(int) bool {
	b, _ := ctx.Value(budgetKey{}).(*responseBudget)
	if b == nil {
		return nil
	}
	return func(n int) bool { return b.loaded.Add(int64(n)) < b.loadMax }
}

func (l responseLimit) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	b := &responseBudget{loadMax: l.max / 2}
	resp := next(context.WithValue(ctx, budgetKey{}, b))
	if resp == nil || (!b.over.Load() && int64(len(resp.Data)) <= l.max) {
		return resp
	}
	return &graphql.Response{Errors: gqlerror.List{limitError(CodeResponseTooLarge,
		"answer is larger than the limit of %d bytes; ask for fewer fields or smaller pages (first), or page through the result", l.max)}}
}

func (l responseLimit) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	b, _ := ctx.Value(budgetKey{}).(*responseBudget)
	if b == nil {
		return next(ctx)
	}
	if b.over.Load() {
		// A fresh error each time: gqlgen sets the path on it. All of them
		// are replaced by one error in InterceptResponse.
		return nil, limitError(CodeResponseTooLarge, "response size limit reached")
	}
	res, err := next(ctx)
	n := int64(8)
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		n += int64(len(fc.Field.Alias))
		if len(fc.Field.Selections) == 0 {
			n += valueSize(res)
		}
	}
	if b.used.Add(n) > l.max {
		b.over.Store(true)
	}
	return res, err
}

// valueSize estimates the JSON size of a leaf value; objects and lists of
// objects count through their own fields.
func valueSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case *string:
		if x != nil {
			return int64(len(*x))
		}
	case json.RawMessage:
		return int64(len(x))
	case []byte:
		return int64(len(x)) * 4 / 3
	case []string:
		n := int64(0)
		for _, s := range x {
			n += int64(len(s)) + 3
		}
		return n
	case time.Time, *time.Time:
		return 32
	case graphql.Marshaler:
		// Introspection and other values gqlgen marshals itself are
		// bounded by the complexity limit; count a nominal share.
		return 16
	}
	return 8
}

// limitBody answers 413 to a POST whose body exceeds max, before any of
// it is decoded; gqlgen alone would answer 400 "could not be decoded".
func limitBody(h http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			h.ServeHTTP(w, r)
			return
		}
		tooLarge := func() {
			writeErrorJSON(w, http.StatusRequestEntityTooLarge, limitError(CodeRequestTooLarge,
				"request body is larger than the %d-byte limit; send a smaller query or fewer variables", max))
		}
		if r.ContentLength > max {
			tooLarge()
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				tooLarge()
				return
			}
			writeErrorJSON(w, http.StatusBadRequest, &gqlerror.Error{Message: "could not read the request body"})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

func writeErrorJSON(w http.ResponseWriter, status int, e *gqlerror.Error) {
	b, err := json.Marshal(graphql.Response{Errors: gqlerror.List{e}})
	if err != nil {
		b = []byte(`{"errors":[{"message":"internal error"}]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func limitError(code, format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code}}
}

// sizedCache keeps documents of at most maxKey bytes: the key is the query
// text, so a cache of 256 large documents would hold hundreds of MiB.
type sizedCache struct {
	graphql.Cache[*ast.QueryDocument]
	maxKey int
}

func (c sizedCache) Add(ctx context.Context, key string, doc *ast.QueryDocument) {
	if len(key) <= c.maxKey {
		c.Cache.Add(ctx, key, doc)
	}
}
