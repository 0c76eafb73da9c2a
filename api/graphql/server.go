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

	"github.com/stele/stele"
	"github.com/stele/stele/ui"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxComplexity allows, for example, one list of 1,000 records
	// with 20 fields each, or ten lists of the default 100. GraphiQL's
	// introspection query costs about 2,100 on this schema.
	DefaultMaxComplexity = 25_000
	// DefaultMaxDepth is what GraphiQL's introspection query needs
	// (__schema.types.fields.args.type and nine levels of ofType, then a
	// leaf); the schema's own deepest useful selection is 4.
	DefaultMaxDepth = 15
	// DefaultMaxBodyBytes bounds a POSTed query document and its variables.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxTokens bounds the query document; GraphiQL's introspection
	// query has about 190.
	DefaultMaxTokens = 10_000
	// DefaultMaxFields bounds the fields a document selects, fragments
	// expanded; GraphiQL's introspection query selects 230.
	DefaultMaxFields = 500
	// DefaultMaxAliases bounds the aliased fields of a document.
	DefaultMaxAliases = 50
	// DefaultMaxResponseBytes bounds the answer of one operation, and with
	// it what one request holds in memory.
	DefaultMaxResponseBytes = 16 << 20

	// Paths the handler answers.
	Path           = "/graphql"
	PlaygroundPath = "/graphql/playground"
)

// Error codes of the limits, in extensions.code.
const (
	CodeRequestTooLarge  = "REQUEST_TOO_LARGE" // with status 413
	CodeTokenLimit       = "TOKEN_LIMIT_EXCEEDED"
	CodeFieldLimit       = "FIELD_LIMIT_EXCEEDED"
	CodeAliasLimit       = "ALIAS_LIMIT_EXCEEDED"
	CodeDepthLimit       = "DEPTH_LIMIT_EXCEEDED"
	CodeComplexityLimit  = "COMPLEXITY_LIMIT_EXCEEDED"
	CodeResponseTooLarge = "RESPONSE_TOO_LARGE"
)

// Options wire the handler. Log and Query are required.
type Options struct {
	Log   Store
	Query Engine
	// Now is the default "at" of state fields (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Witnessed, when set, is the latest checkpoint cosigned by the
	// witness policy's quorum (nil until one is); checkpoint and proof
	// fields then serve only it.
	Witnessed func() *stele.Checkpoint
	// The limits of one request (defaults above; limits.go says where each
	// applies).
	MaxComplexity    int
	MaxDepth         int
	MaxTokens        int
	MaxFields        int
	MaxAliases       int
	MaxBodyBytes     int64
	MaxResponseBytes int64
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
	orDefault(&cfg.MaxComplexity, DefaultMaxComplexity)
	orDefault(&cfg.MaxDepth, DefaultMaxDepth)
	orDefault(&cfg.MaxTokens, DefaultMaxTokens)
	orDefault(&cfg.MaxFields, DefaultMaxFields)
	orDefault(&cfg.MaxAliases, DefaultMaxAliases)
	orDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	orDefault(&cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	r := &Resolver{log: cfg.Log, query: cfg.Query, now: cfg.Now, logger: cfg.Logger, witnessed: cfg.Witnessed}
	es := NewExecutableSchema(Config{Resolvers: r, Complexity: complexity()})

	srv := handler.New(es)
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	cache := sizedCache{Cache: lru.New[*ast.QueryDocument](256), maxKey: 16 << 10}
	srv.SetQueryCache(cache)
	srv.Use(extension.Introspection{})
	srv.Use(documentLimit{maxTokens: cfg.MaxTokens, maxFields: cfg.MaxFields, maxAliases: cfg.MaxAliases, cache: cache})
	srv.Use(&operationLimit{maxDepth: cfg.MaxDepth, maxComplexity: cfg.MaxComplexity})
	srv.Use(responseLimit{max: cfg.MaxResponseBytes})
	srv.SetErrorPresenter(presentError)
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		cfg.Logger.ErrorContext(ctx, "graphql resolver panicked", "panic", fmt.Sprint(p))
		return &gqlerror.Error{Message: "internal error", Extensions: map[string]any{"code": CodeInternal}}
	})

	mux := http.NewServeMux()
	mux.Handle(Path, limitBody(srv, cfg.MaxBodyBytes))
	// The playground's page comes from the binary like the web UI's; its
	// script and style are served under ui.AssetPrefix by the API.
	mux.Handle(PlaygroundPath, ui.New())
	return mux
}

func orDefault[T int | int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
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
