package graphql

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/stele/stele/ui"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxComplexity allows, for example, one list of 1,000 records
	// with 20 fields each, or ten lists of the default 100.
	DefaultMaxComplexity = 25_000
	// DefaultMaxDepth is well above the schema's deepest useful selection
	// (records.nodes.source.name is 4); introspection fields do not count.
	DefaultMaxDepth = 10
	// DefaultMaxBodyBytes bounds a POSTed query document and its variables.
	DefaultMaxBodyBytes = 1 << 20

	// Paths the handler answers.
	Path           = "/graphql"
	PlaygroundPath = "/graphql/playground"
)

// Error codes of the limits, in extensions.code.
const (
	CodeDepthLimit      = "DEPTH_LIMIT_EXCEEDED"
	CodeComplexityLimit = "COMPLEXITY_LIMIT_EXCEEDED" // set by gqlgen's extension
)

// Options wire the handler. Log and Query are required.
type Options struct {
	Log   Store
	Query Engine
	// Now is the default "at" of state fields (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// MaxComplexity and MaxDepth bound each operation (defaults above).
	MaxComplexity int
	MaxDepth      int
}

// New returns the handler of Path (GET and POST, JSON) and PlaygroundPath
// (a small playground embedded in the binary, package ui). It panics without Log or
// Query, a wiring mistake.
func New(cfg Options) http.Handler {
	if cfg.Log == nil || cfg.Query == nil {
		panic("graphql: Options.Log and Options.Query are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxComplexity <= 0 {
		cfg.MaxComplexity = DefaultMaxComplexity
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = DefaultMaxDepth
	}
	r := &Resolver{log: cfg.Log, query: cfg.Query, now: cfg.Now, logger: cfg.Logger}
	es := NewExecutableSchema(Config{Resolvers: r, Complexity: complexity()})

	srv := handler.New(es)
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](256))
	srv.Use(extension.Introspection{})
	srv.Use(depthLimit{max: cfg.MaxDepth})
	srv.Use(extension.FixedComplexityLimit(cfg.MaxComplexity))
	srv.SetErrorPresenter(presentError)
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		cfg.Logger.ErrorContext(ctx, "graphql resolver panicked", "panic", fmt.Sprint(p))
		return &gqlerror.Error{Message: "internal error", Extensions: map[string]any{"code": CodeInternal}}
	})

	mux := http.NewServeMux()
	mux.Handle(Path, http.MaxBytesHandler(srv, DefaultMaxBodyBytes))
	// The playground's page comes from the binary like the web UI's; its
	// script and style are served under ui.AssetPrefix by the API.
	mux.Handle(PlaygroundPath, ui.New())
	return mux
}

// presentError names the argument in errors gqlgen raises while decoding
// arguments (a malformed Time, a negative Uint64): those arrive without a
// code, with the path field, argument[, input field…]. Resolver errors
// carry a code already (argError, internal).
func presentError(ctx context.Context, err error) *gqlerror.Error {
	ge := graphql.DefaultErrorPresenter(ctx, err)
	if _, coded := ge.Extensions["code"]; coded || len(ge.Path) < 2 {
		return ge
	}
	parts := make([]string, 0, len(ge.Path)-1)
	for _, el := range ge.Path[1:] {
		parts = append(parts, fmt.Sprint(el))
	}
	arg := strings.Join(parts, ".")
	if !strings.HasPrefix(ge.Message, arg+": ") {
		ge.Message = arg + ": " + ge.Message
	}
	if ge.Extensions == nil {
		ge.Extensions = map[string]any{}
	}
	ge.Extensions["code"], ge.Extensions["argument"] = CodeBadArgument, arg
	return ge
}

// complexity makes a list field cost its page size times the cost of one
// node, so a client cannot ask for many large pages in one operation.
func complexity() ComplexityRoot {
	var c ComplexityRoot
	size := func(first *int) int {
		if first == nil || *first < 1 {
			return 100
		}
		return *first
	}
	c.Query.Records = func(child int, _ *RecordFilter, _ *Order, first *int, _ *string) int {
		return 1 + size(first)*child
	}
	c.Query.EntityHistory = func(child int, _, _, _ string, first *int, _ *string) int {
		return 1 + size(first)*child
	}
	c.Query.TableState = func(child int, _, _ string, _ *time.Time, first *int, _ *string) int {
		return 1 + size(first)*child
	}
	return c
}

// depthLimit refuses operations nested deeper than max fields, before any
// resolver runs. Introspection (__schema, __type) is not counted, so
// GraphiQL's own introspection query passes.
type depthLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (d depthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet); depth > d.max {
		return &gqlerror.Error{
			Message:    fmt.Sprintf("operation has depth %d, which exceeds the limit of %d; nest fewer fields", depth, d.max),
			Extensions: map[string]any{"code": CodeDepthLimit},
		}
	}
	return nil
}

// selectionDepth is the deepest chain of fields in set; fragments add no
// level of their own. Validation has already refused fragment cycles.
func selectionDepth(set ast.SelectionSet) int {
	deepest := 0
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				continue
			}
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
