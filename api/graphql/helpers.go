package graphql

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
)

// Error codes in an error's extensions.code, for clients that branch on
// them.
const (
	CodeBadArgument = "BAD_ARGUMENT"
	CodeInternal    = "INTERNAL"
	// CodeNotWitnessed: under a witness policy no checkpoint cosigned by
	// the quorum covers what was asked yet; retry shortly.
	CodeNotWitnessed = "NOT_WITNESSED"
)

// argError is a GraphQL error naming the argument at fault, in the message
// and in extensions.argument.
func argError(ctx context.Context, arg, msg string) error {
	return &gqlerror.Error{
		Path:       graphql.GetPath(ctx),
		Message:    arg + ": " + msg,
		Extensions: map[string]any{"code": CodeBadArgument, "argument": arg},
	}
}

// internal logs err and answers a message that reveals nothing of it.
func (r *Resolver) internal(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &gqlerror.Error{Path: graphql.GetPath(ctx), Message: "request cancelled or timed out", Extensions: map[string]any{"code": "TIMEOUT"}}
	}
	r.logger.ErrorContext(ctx, "graphql resolver failed", "what", what, "err", err)
	msg := "internal error (" + what + ")"
	if errors.Is(err, logstore.ErrTampered) {
		msg = "a stored record failed its integrity check; run `stele verify`"
	}
	return &gqlerror.Error{Path: graphql.GetPath(ctx), Message: msg, Extensions: map[string]any{"code": CodeInternal}}
}

// queryError turns the query engine's input errors into argument errors.
// The engine names its parameters as the REST API does; prefix places the
// filter fields (filter.source, …).
func (r *Resolver) queryError(ctx context.Context, err error, prefix string) error {
	var fe *query.FieldError
	switch {
	case errors.As(err, &fe):
		arg := prefix + fe.Field
		switch fe.Field {
		case "limit":
			arg = "first"
		case "source", "table":
			if prefix == "" {
				arg = fe.Field
			}
		}
		return argError(ctx, arg, fe.Reason)
	case errors.Is(err, query.ErrBadCursor):
		return argError(ctx, "after", "not a cursor this server issued for this field and order")
	}
	return r.internal(ctx, "query", err)
}

const maxFirst = query.MaxLimit

func pageRequest(ctx context.Context, first *int, after *string) (query.PageRequest, error) {
	req := query.PageRequest{Order: query.Desc, Limit: query.DefaultLimit, Budget: loadBudget(ctx)}
	if first != nil {
		if *first < 1 || *first > maxFirst {
			return req, argError(ctx, "first", strconv.Itoa(*first)+" is not from 1 to "+strconv.Itoa(maxFirst))
		}
		req.Limit = *first
	}
	if after != nil {
		req.Cursor = *after
	}
	return req, nil
}

func pageInfo(next string) *PageInfo {
	if next == "" {
		return &PageInfo{}
	}
	return &PageInfo{HasNextPage: true, EndCursor: &next}
}

// checkpoint returns a signed checkpoint covering at least min records and
// every durable one, signing one first if the latest lags, as GET
// /v1/checkpoint does.
//
// Under a witness policy it serves only what the quorum cosigned, as the
// REST API does, so no client is shown a checkpoint the witnesses have not
// seen.
func (r *Resolver) checkpoint(ctx context.Context, min uint64) (*stele.Checkpoint, error) {
	if r.witnessed != nil {
		if cp := r.witnessed(); cp != nil && cp.Size >= min && cp.Size > 0 {
			return cp, nil
		}
		return nil, &gqlerror.Error{Path: graphql.GetPath(ctx),
			Message:    fmt.Sprintf("no checkpoint cosigned by the witness policy's quorum covers %d records yet; retry shortly", max(min, 1)),
			Extensions: map[string]any{"code": CodeNotWitnessed}}
	}
	cp := r.log.LatestCheckpoint()
	if cp != nil && cp.Size >= min && cp.Size >= r.log.Size() {
		return cp, nil
	}
	fresh, err := r.log.Checkpoint(ctx)
	if err == nil {
		return fresh, nil
	}
	if cp != nil && cp.Size >= min {
		// An older signed checkpoint is still evidence worth serving.
		r.logger.WarnContext(ctx, "serving an older checkpoint: signing a new one failed", "err", err)
		return cp, nil
	}
	return nil, r.internal(ctx, "checkpoint", fmt.Errorf("sign checkpoint: %w", err))
}

func checkpointOf(cp *stele.Checkpoint) *Checkpoint {
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, RootHash: base64.StdEncoding.EncodeToString(cp.Root), Note: string(cp.Note)}
}

func encodeHashes(hashes [][]byte) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
