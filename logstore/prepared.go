package logstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// Batch is an append prepared in parts: each part is sealed, encoded and
// looked up in the index (what Append does on the caller's side of the
// queue) by whichever goroutine holds it, as soon as it has it, and the
// parts are appended together, atomically, by AppendBatch. A caller that
// builds a batch piece by piece on several cores (the HTTP API parsing a
// body) thus prepares each piece while others are still being built,
// instead of going over the whole batch again once it is complete.
type Batch struct {
	s *Store
	// epoch is the follower's when the batch began, before any of its
	// lookups: the oldest any part's lookups can be (see follower.check).
	epoch uint64
}

// Part is a prepared piece of a Batch.
type Part struct {
	batch *Batch
	req   *appendReq
}

// NewBatch begins a batch for AppendBatch.
func (s *Store) NewBatch() *Batch {
	b := &Batch{s: s}
	if s.opts.Hook != nil {
		b.epoch = s.follow.currentEpoch()
	}
	return b
}

// Seals reports whether preparing a part seals its records, which creates
// the keys of subjects not seen before.
func (b *Batch) Seals() bool { return b.s.opts.Sealer != nil }

// Prepare prepares recs as Append would, on the calling goroutine; parts
// of one batch may be prepared concurrently. The store takes ownership of
// recs, as Append does. Its errors are Append's, with record indexes
// counted from recs[0]. A part never appended holds nothing in the store.
//
// bodies, when not nil, has one entry per record: the body
// record.AppendBody writes for it (record.IsBody says so), which is then
// stored as it is instead of encoding the record again, or nil for one to
// encode. A store with a Sealer keeps a given body only if the record
// still has it once sealed (as records of a table without a schema do).
// The store takes ownership of bodies too; it never changes them.
func (b *Batch) Prepare(ctx context.Context, recs []*record.Record, bodies [][]byte) (*Part, error) {
	s := b.s
	if err := s.canAppend(); err != nil {
		return nil, err
	}
	defer s.appending.enter()()
	req := s.newAppendReq(recs)
	if bodies != nil && len(bodies) != len(recs) {
		return nil, fmt.Errorf("logstore: %d bodies for %d records", len(bodies), len(recs))
	}
	if bodies != nil {
		req.bodies = bodies
	}
	for i := range recs {
		if err := s.prepareOne(ctx, req, i); err != nil {
			return nil, err
		}
	}
	return &Part{batch: b, req: req}, nil
}

// errForeignPart: AppendBatch was given a part of another batch.
var errForeignPart = errors.New("logstore: a part of another batch")

// AppendBatch appends the records of parts, in order, as one Append of
// them all: durable together, with the same answer and the same errors.
func (s *Store) AppendBatch(ctx context.Context, b *Batch, parts []*Part) ([]stele.Appended, error) {
	n := 0
	for _, p := range parts {
		if p.batch != b || b.s != s {
			return nil, errForeignPart
		}
		n += len(p.req.recs)
	}
	if n == 0 {
		return nil, nil
	}
	if err := s.canAppend(); err != nil {
		return nil, err
	}
	defer s.appending.enter()()
	req := &appendReq{recs: make([]*record.Record, 0, n), bodies: make([][]byte, 0, n), done: make(chan appendResult, 1)}
	if s.opts.Hook != nil {
		req.prepared, req.known, req.epoch = make([][]byte, 0, n), make([]uint64, 0, n), b.epoch
	}
	for _, p := range parts {
		req.recs = append(req.recs, p.req.recs...)
		req.bodies = append(req.bodies, p.req.bodies...)
		if req.prepared != nil {
			req.prepared = append(req.prepared, p.req.prepared...)
			req.known = append(req.known, p.req.known...)
		}
	}
	return s.submitPrepared(ctx, req)
}

// canAppend is the error an append is refused with before anything is
// prepared, if any.
func (s *Store) canAppend() error {
	if s.opts.Replica {
		return ErrReplica
	}
	return s.WriteErr()
}

// newAppendReq is the request of an append of recs, before prepare.
func (s *Store) newAppendReq(recs []*record.Record) *appendReq {
	req := &appendReq{recs: recs, bodies: make([][]byte, len(recs)), done: make(chan appendResult, 1)}
	if s.opts.Hook != nil {
		req.prepared = make([][]byte, len(recs))
		req.known = make([]uint64, len(recs))
		req.epoch = s.follow.currentEpoch()
	}
	return req
}

// submitPrepared makes the keys the records were sealed under durable and
// hands the prepared req to the writer.
func (s *Store) submitPrepared(ctx context.Context, req *appendReq) ([]stele.Appended, error) {
	if s.opts.Sealer != nil {
		if err := s.opts.Sealer.Sync(ctx); err != nil {
			return nil, fmt.Errorf("make sealing keys durable: %w", err)
		}
	}
	return s.submit(ctx, req, false, "append")
}
