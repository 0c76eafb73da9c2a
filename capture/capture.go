// Package capture defines the one small interface every change-data-capture
// source implements, and the sink it delivers records to. Sources live in
// sub-packages (capture/postgres, …); they import this package and the
// record package, never the other way round, and only cmd/stele wires a
// source to a concrete sink (the log store). Every source passes the
// conformance suite in capture/capturetest against its real backend.
package capture

import (
	"context"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// Sink makes records durable. Append returns only after every record is
// durable (or with an error, after which none of them counts as
// acknowledged); a record whose id is already stored is reported with
// Duplicate set and not stored again, so replaying a source position is
// safe. *logstore.Store satisfies it.
type Sink interface {
	Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error)
}

// Source captures changes from one external system.
type Source interface {
	// Name identifies the source in logs and in records' source.name.
	Name() string
	// Run captures changes into sink until ctx is done, then returns nil.
	// It handles transient failures itself (reconnecting with backoff) and
	// returns an error only for a permanent failure, with a message naming
	// the cause and the fix. A source acknowledges a position to its
	// upstream only after the records up to it were appended.
	Run(ctx context.Context, sink Sink) error
}
