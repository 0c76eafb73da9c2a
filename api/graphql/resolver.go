package graphql

import (
	"context"
	"log/slog"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/query"
)

// Engine is what the resolvers need from the query engine.
type Engine interface {
	Records(ctx context.Context, f query.Filter, page query.PageRequest) (*query.Page, error)
	History(ctx context.Context, source, table, key string, page query.PageRequest) (*query.Page, error)
	StateAt(ctx context.Context, source, table, key string, at time.Time) (*query.State, error)
	TableStatePage(ctx context.Context, source, table string, at time.Time, limit int, cursor string) (*query.UnitPage, error)
}

// Store is what the resolvers need from the store of record.
type Store interface {
	Size() uint64
	ReadRaw(seq uint64) ([]byte, error)
	InclusionProof(seq, size uint64) ([][]byte, error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
	LatestCheckpoint() *stele.Checkpoint
	Checkpoint(ctx context.Context) (*stele.Checkpoint, error)
}

// Resolver resolves the schema's fields; it holds no per-request state.
type Resolver struct {
	log    Store
	query  Engine
	now    func() time.Time
	logger *slog.Logger
	// witnessed is Options.Witnessed.
	witnessed func() *stele.Checkpoint
}
