// Package api serves Stele's HTTP API v1 (docs/api.md): ingest of lineage
// records, record reads with inclusion proofs, entity history and state,
// signed checkpoints, consistency proofs, health and metrics.
//
// The package defines the small interfaces it needs from the log and the
// query engine (Log, Query) so it depends on their behaviour, not on their
// implementations; only cmd/stele wires the real ones in.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele"
	"github.com/stele/stele/follow"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes int64 = 16 << 20
	DefaultMaxBatch           = 10000
)

// Log is what the API needs from the store of record.
type Log interface {
	// Append makes recs durable and returns their seqs in order.
	Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error)
	// Size is the number of durable records.
	Size() uint64
	// ReadRaw returns the stored (hashed) bytes of the record at seq.
	ReadRaw(seq uint64) ([]byte, error)
	// InclusionProof proves seq is in the tree of the given size.
	InclusionProof(seq, size uint64) ([][]byte, error)
	// ConsistencyProof proves the tree of size from is a prefix of size to.
	ConsistencyProof(from, to uint64) ([][]byte, error)
	// LatestCheckpoint is the most recent signed checkpoint, or nil.
	LatestCheckpoint() *stele.Checkpoint
	// Checkpoint returns a checkpoint covering every durable record,
	// signing one if needed.
	Checkpoint(ctx context.Context) (*stele.Checkpoint, error)
	// Keys holds the public verifier key of the checkpoints.
	Keys() *logstore.Keys
	// Changed is closed once the log grows past the size it had when
	// Changed was called (the live stream follows the log with it).
	Changed() <-chan struct{}
}

// Query is what the API needs from the query engine.
type Query interface {
	Records(ctx context.Context, f query.Filter, page query.PageRequest) (*query.Page, error)
	History(ctx context.Context, source, table, key string, page query.PageRequest) (*query.Page, error)
	StateAt(ctx context.Context, source, table, key string, at time.Time) (*query.State, error)
	// TableStateAt calls fn with each unit of a table as it was at at.
	TableStateAt(ctx context.Context, source, table string, at time.Time, fn func(query.Unit) error) error
}

// HealthFunc reports the server's health: "ok" when the log verified, or
// "verifying", "tampered" or another status with a human-readable detail.
type HealthFunc func() (status string, detail string)

// Health statuses with a meaning to the API.
const (
	StatusOK        = "ok"
	StatusVerifying = "verifying"
	StatusTampered  = "tampered"
	// StatusNotAcceptingWrites: the log refuses appends (a full disk, or
	// a storage failure that needs a restart).
	StatusNotAcceptingWrites = "not accepting writes"
)

// Config wires a Server. Log is required; zero values of the other fields
// give the documented defaults.
type Config struct {
	Log   Log
	Query Query
	// Health is consulted by /healthz and, for "tampered", by every /v1/
	// endpoint but the checkpoint and the key. Nil means always "ok".
	Health HealthFunc
	// Witnessed, when set, is the latest checkpoint cosigned by the
	// witness policy's quorum (witness.Submitter.Witnessed), nil until one
	// is. GET /v1/checkpoint then serves only that: a checkpoint is
	// published as witnessed or not at all.
	Witnessed func() *stele.Checkpoint
	// Exporter serves GET /v1/export; nil answers 503.
	Exporter Exporter
	Logger   *slog.Logger
	// Registry receives the API's metrics and is served at /metrics. Nil
	// means a fresh registry. Metrics are never put in the global registry,
	// so two servers in one process (tests) do not collide.
	Registry *prometheus.Registry
	// MaxBodyBytes bounds a POST body (default 16 MiB).
	MaxBodyBytes int64
	// MaxBatch bounds the records in one POST (default 10000).
	MaxBatch int
	// Auth checks bearer tokens; nil (or no tokens) admits every request
	// as admin, for a server that listens on loopback only, unless
	// ClientCerts is set.
	Auth Authenticator
	// ClientCerts, when set, gives a request without a bearer token the
	// role its verified TLS client certificate maps to; a request with
	// neither is refused even when no token exists.
	ClientCerts CertAuthenticator
	// Privacy reveals personal data by role and erases data subjects; nil
	// serves records as stored.
	Privacy Privacy
	// GraphQL, when set, serves /graphql (GET, POST) and
	// /graphql/playground (GET); cmd/stele passes api/graphql's handler,
	// which keeps this package free of the GraphQL library. It is gated
	// like /v1/ on a tampered log, and its requests carry the read hook
	// that reveals personal data by role (graphql.go).
	GraphQL http.Handler
	// FollowMetrics receives the live streams' lag (follower "sse"). Nil
	// means a fresh set registered in Registry; a caller passing its own
	// registers it itself (it is shared with the other followers).
	FollowMetrics *follow.Metrics
	// StreamHeartbeat is how often an idle live stream (GET /v1/stream)
	// sends a comment to keep proxies from closing it (default 15s).
	StreamHeartbeat time.Duration
	// Now gives occurred_at for records that carry none and the default
	// "at" of state queries (default time.Now).
	Now func() time.Time
	// Schemas serves /v1/schemas when set (nil: those routes answer 404).
	Schemas SchemaRegistry
	// DeadLetters serves /v1/deadletters (admin) when set.
	DeadLetters DeadLetters
	// Projections serves the read models under /v1/projections; nil means
	// none are configured.
	Projections Projections
	// UI, when set, serves the web interface: GET / for browsers (a
	// request that accepts text/html), its assets under /ui/, and the
	// GraphQL playground's page. It reads through the API like any
	// client, so this package knows nothing of it (cmd/stele passes
	// ui.New()).
	UI http.Handler
	// StreamSubjects is the NATS subject prefix of the lineage stream
	// when it runs (GET /v1/lineage shows it as a consumer); empty: off.
	StreamSubjects string
}

// Server is the HTTP API v1 handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	streams streams // live streams, ended by CloseStreams (sse.go)
	follow  *follow.Metrics
	// bodies are request-body buffers of ingest, reused across requests
	// (ingest.go readBody).
	bodies sync.Pool
}

// New builds the API handler. It panics if cfg.Log is nil, a wiring mistake
// that no request could recover from.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		panic("api: Config.Log is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), follow: cfg.FollowMetrics}
	if s.follow == nil {
		s.follow = follow.NewMetrics(nil)
		cfg.Registry.MustRegister(s.follow)
	}
	s.metrics = newMetrics(cfg.Registry, cfg.Log, cfg.Logger)
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	// Each path gets its method-qualified patterns plus a method-less
	// fallback that answers 405 in JSON: the mux's own 405 is plain text,
	// and no method may ever update or delete a record.
	s.handle("POST /v1/records", s.gated(s.authorize(writeRoles, s.postRecords)))
	s.handle("POST /v1/events", s.gated(s.authorize(writeRoles, s.postEvents)))
	s.handle("GET /v1/records", s.gated(s.authorize(anyRole, s.listRecords)))
	s.handle("/v1/records", recordMethodNotAllowed("GET, HEAD, POST"))
	s.handle("GET /v1/records/{seq}", s.gated(s.authorize(anyRole, s.getRecord)))
	s.handle("/v1/records/{seq}", recordMethodNotAllowed("GET, HEAD"))

	// Exports are bulk reads of records as stored (sealed fields stay
	// sealed), open to every role that may read records; view=clear
	// reveals them to the roles that see personal data (export.go).
	s.handle("GET /v1/export", s.gated(s.authorize(anyRole, s.exportData)))
	s.handle("/v1/export", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/export/proof", s.gated(s.authorize(anyRole, s.exportProof)))
	s.handle("/v1/export/proof", methodNotAllowed("GET, HEAD"))

	s.handle("GET /v1/stream", s.gated(s.authorize(anyRole, s.streamRecords)))
	s.handle("/v1/stream", methodNotAllowed("GET, HEAD"))

	s.handle("GET /v1/entities/{source}/{table}/{key}/history", s.gated(s.authorize(anyRole, s.entityHistory)))
	s.handle("/v1/entities/{source}/{table}/{key}/history", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/entities/{source}/{table}/{key}/state", s.gated(s.authorize(anyRole, s.entityState)))
	s.handle("/v1/entities/{source}/{table}/{key}/state", methodNotAllowed("GET, HEAD"))

	s.handle("GET /v1/tables/{source}/{table}/state", s.gated(s.authorize(anyRole, s.tableState)))
	s.handle("/v1/tables/{source}/{table}/state", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/projections", s.gated(s.authorize(anyRole, s.listProjections)))
	s.handle("/v1/projections", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/projections/{name}", s.gated(s.authorize(anyRole, s.projectionEntries)))
	s.handle("/v1/projections/{name}", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/projections/{name}/{key}", s.gated(s.authorize(anyRole, s.projectionEntry)))
	s.handle("/v1/projections/{name}/{key}", methodNotAllowed("GET, HEAD"))

	// The checkpoint and the key stay available on a tampered log: they
	// are what an auditor needs to prove what the log signed before.
	s.handle("GET /v1/checkpoint", s.getCheckpoint)
	s.handle("/v1/checkpoint", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/log/key", s.getKey)
	s.handle("/v1/log/key", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/proof/consistency", s.gated(s.consistencyProof))
	s.handle("/v1/proof/consistency", methodNotAllowed("GET, HEAD"))

	if s.cfg.Privacy != nil {
		s.handle("POST /v1/subjects/{id}/erase", s.gated(s.authorize(adminRole, s.eraseSubject)))
		s.handle("/v1/subjects/{id}/erase", methodNotAllowed("POST"))
	}
	if s.cfg.Schemas != nil {
		s.schemaRoutes()
	}
	if s.cfg.DeadLetters != nil {
		s.handle("GET /v1/deadletters", s.gated(s.authorize(adminRole, s.listDeadLetters)))
		s.handle("/v1/deadletters", methodNotAllowed("GET, HEAD"))
		s.handle("POST /v1/deadletters/replay", s.gated(s.authorize(adminRole, s.replayDeadLetters)))
		s.handle("/v1/deadletters/replay", methodNotAllowed("POST"))
	}
	if s.cfg.GraphQL != nil {
		s.handle("GET /graphql", s.gated(s.authorize(anyRole, s.graphQL)))
		s.handle("POST /graphql", s.gated(s.authorize(anyRole, s.graphQL)))
		s.handle("/graphql", methodNotAllowed("GET, HEAD, POST"))
		s.handle("GET /graphql/playground", s.cfg.GraphQL.ServeHTTP)
		s.handle("/graphql/playground", methodNotAllowed("GET, HEAD"))
	}

	s.handle("GET /healthz", s.healthz)
	s.handle("/healthz", methodNotAllowed("GET, HEAD"))
	s.handle("GET /metrics", s.metrics.handler().ServeHTTP)
	s.handle("/metrics", methodNotAllowed("GET, HEAD"))

	s.handle("GET /v1/lineage", s.gated(s.authorize(anyRole, s.lineage)))
	s.handle("/v1/lineage", methodNotAllowed("GET, HEAD"))
	s.handle("GET /v1/whoami", s.gated(s.authorize(anyRole, s.whoami)))
	s.handle("/v1/whoami", methodNotAllowed("GET, HEAD"))
	if s.cfg.UI != nil {
		s.handle("GET /ui/", s.cfg.UI.ServeHTTP)
		s.handle("/ui/", methodNotAllowed("GET, HEAD"))
	}
	s.handle("GET /{$}", s.root)
	s.handle("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &apiError{Msg: "no such endpoint " + r.Method + " " + r.URL.Path + "; GET / lists the endpoints, docs/api.md describes them"})
	})
}

// handle registers h under pattern, labelled by the pattern for metrics and
// logs so label cardinality stays bounded whatever paths clients send.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	route := pattern
	if pattern == "/" {
		route = "unmatched"
	}
	// An unhealthy /healthz is a report, not a server error: monitors poll
	// it, and logging each poll at Error would bury real errors.
	quiet := pattern == "GET /healthz"
	s.mux.Handle(pattern, s.instrument(route, quiet, s.recovering(route, h)))
}

// recovering turns a panic in h into a logged 500 in the API's error
// format, instead of net/http's dropped connection: a client sees an answer
// it can report, and the stack reaches the log. http.ErrAbortHandler is
// net/http's deliberate abort and passes through.
func (s *Server) recovering(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// The route, not the path, and not the panic's value in the
			// answer: either may carry personal data.
			// A runtime error's text is safe to log; another value may hold
			// request data, so only its type is.
			what := fmt.Sprintf("%T", p)
			if re, ok := p.(runtime.Error); ok {
				what = re.Error()
			}
			s.log.ErrorContext(r.Context(), "handler panicked", "route", route, "panic", what, "stack", string(debug.Stack()))
			rec, _ := w.(*statusRecorder)
			if rec != nil && rec.status != 0 {
				// The answer has begun; all that is left is to end it.
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, &apiError{Msg: "internal error in " + route + "; see the server log"})
		}()
		h(w, r)
	}
}

// gated refuses service on a log that failed verification: answering from
// it would present tampered data as evidence.
func (s *Server) gated(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Health != nil {
			if status, detail := s.cfg.Health(); status == StatusTampered {
				writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "log failed verification: " + detail})
				return
			}
		}
		h(w, r)
	}
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, &apiError{
			Msg: "method " + r.Method + " is not allowed on " + r.URL.Path + " (allowed: " + allow + ")",
		})
	}
}

// recordMethodNotAllowed is methodNotAllowed on the record paths, where a
// PUT, PATCH or DELETE means to change a record: none ever changes.
func recordMethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, &apiError{
			Msg: "method " + r.Method + " is not allowed on " + r.URL.Path + " (allowed: " + allow + "); records are never updated or deleted",
		})
	}
}

// rootText is what GET / answers a client that does not ask for HTML:
// where the API is described and its main endpoints.
const rootText = `Stele: an append-only, verifiable change log. This is its HTTP API (v1);
docs/api.md in the source tree describes it, docs/openapi.yaml is its OpenAPI form.

  POST /v1/records                               append records (JSON, a JSON array, or NDJSON as application/x-ndjson)
  GET  /v1/records?source=&table=&actor=&op=     search
  GET  /v1/records/{seq}                         one record and its inclusion proof
  GET  /v1/entities/{source}/{table}/{key}/history
  GET  /v1/entities/{source}/{table}/{key}/state?at=TIME
  GET  /v1/tables/{source}/{table}/state?at=TIME
  GET  /v1/checkpoint                            the latest signed checkpoint
  GET  /v1/log/key                               the checkpoints' verifier key
  GET  /v1/proof/consistency?from=N&to=M
  GET  /v1/export                                records with proofs, to verify offline
  GET  /v1/stream                                live records (Server-Sent Events)
  POST /graphql                                  GraphQL (playground at /graphql/playground)
  GET  /v1/lineage                               tables with counts and last change, and their consumers
  GET  /v1/whoami                                the caller's token name and role
  GET  /healthz, GET /metrics
A browser asking for / gets the web UI (docs/ui.md).
`

// root answers GET / with the web UI to a browser and with a pointer to
// the docs to curl and scripts, which do not ask for HTML.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if s.cfg.UI != nil && strings.Contains(r.Header.Get("Accept"), "text/html") {
		s.cfg.UI.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(rootText))
}
