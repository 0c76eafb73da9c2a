package logstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// Errors of a replica store (Options.Replica).
var (
	// ErrReplica: Append was called on a replica, whose records are
	// sequenced elsewhere (the cluster's writer) and arrive through
	// AppendSequenced.
	ErrReplica = errors.New("log is a replica: records are sequenced by the cluster's writer")
	// ErrOutOfSequence: a sequenced batch does not start at the log's end,
	// or its checkpoint is not for the size after it. Nothing of it was
	// stored; the caller's position in the replicated log is wrong.
	ErrOutOfSequence = errors.New("sequenced batch out of order")
)

// AppendSequenced stores a batch sequenced by another node's writer,
// byte for byte: each of raws is a record's stored bytes (record.Encode,
// header with seq and recorded_at included), their seqs must run on from
// the log's size, and cp is the checkpoint the writer signed for the log
// after the batch. The batch becomes one group commit (one trailer), so
// replicas fed the same batches hold the same records.log. Before anything
// is written the tree's root after the batch is compared with cp's: a
// difference is an error wrapping ErrTampered and nothing is stored; a seq
// or size out of line is ErrOutOfSequence. cp is adopted into
// checkpoints.log by the checkpoint loop (a replica signs checkpoints only at
// Open, see Options.Replica).
func (s *Store) AppendSequenced(ctx context.Context, raws [][]byte, cpNote []byte) ([]stele.Appended, error) {
	if !s.opts.Replica {
		return nil, errors.New("AppendSequenced on a store that is not a replica (Options.Replica)")
	}
	if len(raws) == 0 {
		return nil, nil
	}
	if err := s.WriteErr(); err != nil {
		return nil, err
	}
	cp, err := stele.OpenCheckpoint(cpNote, s.keys.Verifier)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint of the sequenced batch from seq %d: %w", ErrTampered, firstSeq(raws), err)
	}
	req := &appendReq{raws: raws, cp: cp, ids: make([]string, len(raws)), done: make(chan appendResult, 1)}
	if s.opts.Hook != nil {
		req.prepared = make([][]byte, len(raws))
	}
	// Decoding and index entries are the replica's largest cost per
	// record; they spread over every core as Append's prepare does.
	err = forEachChunked(len(raws), func(i int) error {
		r, err := record.Decode(raws[i])
		if err != nil {
			return fmt.Errorf("%w: sequenced record %d of the batch: %w", ErrTampered, i, err)
		}
		req.ids[i] = r.ID
		if s.opts.Hook == nil {
			return nil
		}
		if s.opts.Sealer != nil {
			if err := s.opts.Sealer.Rederive(ctx, r); err != nil {
				return fmt.Errorf("index seq %d: %w", r.Seq, err)
			}
		}
		if req.prepared[i], err = s.opts.Hook.Prepare(r); err != nil {
			return fmt.Errorf("prepare index entry: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.submit(ctx, req, true, "sequenced batch")
}

func firstSeq(raws [][]byte) uint64 {
	seq, _ := record.Seq(raws[0])
	return seq
}

// commitSequenced writes one AppendSequenced batch as one group commit.
func (s *Store) commitSequenced(req *appendReq) {
	fail := func(err error) { req.done <- appendResult{err: err} }
	if err := s.WriteErr(); err != nil {
		fail(err)
		return
	}
	w := &s.w
	w.offsets, w.frames, w.hashes = w.offsets[:0], w.frames[:0], w.hashes[:0]
	w.freshIDs, w.freshEntries = nil, nil
	if len(w.shas) == 0 {
		w.shas = append(w.shas, sha256.New())
	}
	seq := s.next
	res := make([]stele.Appended, len(req.raws))
	for i, raw := range req.raws {
		got, err := record.Seq(raw)
		if err != nil || got != seq {
			fail(fmt.Errorf("%w: record %d of the batch holds seq %d (%v), the log's next is %d", ErrOutOfSequence, i, got, err, seq))
			return
		}
		w.offsets = binary.LittleEndian.AppendUint64(w.offsets, uint64(s.recEnd)+uint64(len(w.frames)))
		w.frames = appendFrame(w.frames, raw)
		w.hashes = appendLeafHash(w.hashes, w.shas[0], raw)
		w.freshIDs = append(w.freshIDs, req.ids[i])
		if req.prepared != nil {
			w.freshEntries = append(w.freshEntries, req.prepared[i])
		}
		res[i] = stele.Appended{Seq: seq, ID: req.ids[i]}
		seq++
	}
	if req.cp.Size != seq {
		fail(fmt.Errorf("%w: the batch's checkpoint is for size %d, the log after it holds %d", ErrOutOfSequence, req.cp.Size, seq))
		return
	}
	w.expectRoot = req.cp.Root
	err := s.persist(seq)
	w.expectRoot = nil
	if err != nil {
		var fatal *fatalError
		if errors.As(err, &fatal) {
			s.fail(fatal.err)
			err = s.Err()
		}
		fail(err)
		return
	}
	s.adopt.Store(req.cp)
	req.done <- appendResult{res: res}
}

// adoptCheckpoint writes the latest checkpoint a replica received, once
// its records are durable, in place of signing one (Checkpoint on a
// replica).
func (s *Store) adoptCheckpoint(ctx context.Context) (*stele.Checkpoint, error) {
	cp := s.adopt.Load()
	if cp == nil || cp.Size > s.Size() {
		// Open left a checkpoint for everything recovered, so latest is
		// never nil here.
		return s.latest.Load(), nil
	}
	if l := s.latest.Load(); l != nil && l.Size >= cp.Size {
		return l, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.storeCheckpoint(cp)
}

// RootAfter is the root hash the tree would have with raws (stored record
// bytes, as AppendSequenced takes them) in place of every leaf after its
// first base; base must not exceed the log's size (the tree's first base
// leaves never change, so a commit meanwhile does not matter). The
// cluster's writer signs the checkpoint of a batch with it before
// publishing the batch.
func (s *Store) RootAfter(base uint64, raws [][]byte) ([]byte, error) {
	if base > s.Size() {
		return nil, fmt.Errorf("%w: root after a batch on size %d asked of a log of %d records", ErrOutOfSequence, base, s.Size())
	}
	rng, err := s.tree.rangeAt(base)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, raw := range raws {
		if err := rng.Append(appendLeafHash(nil, h, raw), nil); err != nil {
			return nil, fmt.Errorf("extend tree: %w", err)
		}
	}
	if rng.End() == 0 {
		return emptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

// checkRoot is persist's test of a sequenced batch's root against the
// checkpoint that came with it.
func (w *writerScratch) checkRoot(next uint64, root []byte) error {
	if w.expectRoot != nil && !bytes.Equal(root, w.expectRoot) {
		return fmt.Errorf("%w: the tree root after seq %d differs from the root the writer signed for that size; this node's copy of the log has diverged", ErrTampered, next-1)
	}
	return nil
}
