package query

import (
	"context"

	"github.com/stele/stele/record"
)

// ReadHook sees every record a query returns or folds, before the caller
// does. The API uses it to show personal data as the reader's role allows:
// the role belongs to the request, so the hook travels in its context.
type ReadHook func(ctx context.Context, r *record.Record) error

type readHookKey struct{}

// WithReadHook returns a context whose queries pass records through h.
func WithReadHook(ctx context.Context, h ReadHook) context.Context {
	return context.WithValue(ctx, readHookKey{}, h)
}

// ApplyReadHook passes r through ctx's read hook, if any; for callers that
// read records themselves.
func ApplyReadHook(ctx context.Context, r *record.Record) error {
	if h := readHook(ctx); h != nil {
		return h(ctx, r)
	}
	return nil
}

// readHook is ctx's read hook, or nil.
func readHook(ctx context.Context) ReadHook {
	h, _ := ctx.Value(readHookKey{}).(ReadHook)
	return h
}
