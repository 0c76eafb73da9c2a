package logstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/record"
)

func nodeID(level uint, index uint64) compact.NodeID { return compact.NewNodeID(level, index) }

// recover brings the store to a consistent state after any shutdown.
func (s *Store) recover(ctx context.Context) error {
	cp, err := s.loadLatestCheckpoint()
	if err != nil {
		return err
	}
	var covered uint64
	if cp != nil {
		covered = cp.Size
		s.latest.Store(cp)
	}
	if s.batchesFrom, err = readBatchesFrom(s.fs, s.dir); err != nil {
		return err
	}
	n, end, trailers, err := s.findEnd(ctx, covered)
	if err != nil {
		return err
	}
	if n < covered {
		return fmt.Errorf("%w: checkpoint covers %d records but records.log holds %d; first missing seq %d", ErrTampered, covered, n, n)
	}
	if err := s.cutTail(end); err != nil {
		return err
	}
	if err := s.idx.Truncate(int64(n) * 8); err != nil {
		return fmt.Errorf("truncate records.idx: %w", err)
	}
	// Trust stored tree nodes only up to the last checkpoint: they were
	// fsync'd before it was signed. Everything after is recomputed.
	base := covered
	if err := s.tree.reset(base); err != nil {
		s.opts.Logger.Warn("tree files incomplete; rebuilding the tree from records.log", "err", err)
		base = 0
		if err := s.tree.reset(0); err != nil {
			return err
		}
	}
	if err := s.rehashFrom(ctx, base, n); err != nil {
		return err
	}
	if cp != nil {
		root, err := s.tree.rootAt(cp.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, cp.Root) {
			return fmt.Errorf("%w: tree root at size %d differs from the signed checkpoint; run `stele verify` to find the first bad seq", ErrTampered, cp.Size)
		}
	}
	if err := s.checkTrailers(ctx, trailers, covered); err != nil {
		return err
	}
	root, err := s.tree.root()
	if err != nil {
		return err
	}
	if s.batchesFrom < 0 {
		// A data directory from before batch trailers: what it holds was
		// adopted as it always was; every batch from here on has one.
		if err := writeBatchesFrom(s.fs, s.dir, end); err != nil {
			return err
		}
		s.batchesFrom = end
	}
	s.next, s.recEnd = n, end
	s.state.Store(&treeState{size: n, root: root})
	return nil
}

// checkTrailers checks each batch trailer recovery met against the tree
// rebuilt from the records before it, and the authenticator of each batch
// no signed checkpoint covers against the BatchSealer: a trailer is a
// claim about the log, not proof by itself. A covered batch is proven by
// the checkpoint's signature (its root was checked), so a batch written
// before sealing was switched on, or by a writer without the keystore,
// stays adoptable once a checkpoint covers it.
func (s *Store) checkTrailers(ctx context.Context, trailers []trailer, covered uint64) error {
	for _, t := range trailers {
		root, err := s.tree.rootAt(t.size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, t.root) {
			return fmt.Errorf("%w: the batch trailer after seq %d names a tree root the records before it do not give; run `stele verify`", ErrTampered, t.size-1)
		}
		if s.opts.BatchSealer != nil && t.size > covered {
			if err := s.opts.BatchSealer.Verify(ctx, t.size, t.root, t.auth); err != nil {
				return fmt.Errorf("%w: the batch ending at seq %d is not sealed by this log's writer: %w", ErrTampered, t.size-1, err)
			}
		}
	}
	return nil
}

// loadLatestCheckpoint reads checkpoints.log, cutting a torn final frame.
func (s *Store) loadLatestCheckpoint() (*stele.Checkpoint, error) {
	sc, err := newFrameScanner(s.cps, 0, 64<<10)
	if err != nil {
		return nil, err
	}
	var last []byte
	var end int64
	for {
		p, off, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTorn) {
			damaged, derr := lengthDamaged(s.cps, off, maxCheckpointFrame)
			if derr != nil {
				return nil, derr
			}
			if damaged {
				return nil, fmt.Errorf("%w: checkpoints.log at offset %d: frame length runs past the end of the file, yet checkpoints follow it", ErrTampered, off)
			}
			s.opts.Logger.Warn("cutting torn final checkpoint frame", "offset", off)
			if err := s.cps.Truncate(off); err != nil {
				return nil, fmt.Errorf("truncate checkpoints.log: %w", err)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoints.log at offset %d: %w", ErrTampered, off, err)
		}
		last = bytes.Clone(p)
		end = off + frameHeader + int64(len(p))
	}
	s.cpsEnd = end
	if last == nil {
		return nil, nil
	}
	cp, err := stele.OpenCheckpoint(last, s.keys.Verifier)
	if err != nil {
		return nil, fmt.Errorf("%w: latest checkpoint (ending at offset %d): %w", ErrTampered, end, err)
	}
	return cp, nil
}

// findEnd returns the number of whole records and the offset where they end.
// records.idx is only a hint: it is checked against the frames and the scan
// continues from the last entry that agrees. From batchesFrom on, a record
// counts only once its batch's trailer follows it: records after the last
// trailer are an unacknowledged batch cut short, and end stops before them
// (cutTail quarantines them). The trailers met are returned for
// checkTrailers.
//
// A hint inside the batched part is confirmed by the next trailer: if none
// follows (the trailer after the hinted record is gone), the hint may sit
// inside a batch that never completed, and the scan starts over from the
// beginning.
func (s *Store) findEnd(ctx context.Context, covered uint64) (n uint64, end int64, trailers []trailer, err error) {
	n, end, trailers, confirmed, err := s.scanEnd(ctx, covered, true)
	if err == nil && !confirmed {
		s.opts.Logger.Warn("no batch trailer after the last record records.idx names; rescanning records.log from the start")
		n, end, trailers, _, err = s.scanEnd(ctx, covered, false)
	}
	return n, end, trailers, err
}

func (s *Store) scanEnd(ctx context.Context, covered uint64, useHint bool) (n uint64, end int64, trailers []trailer, confirmed bool, err error) {
	st, err := s.idx.Stat()
	if err != nil {
		return 0, 0, nil, false, fmt.Errorf("stat records.idx: %w", err)
	}
	k := uint64(st.Size() / 8)
	if !useHint {
		k = 0
	}
	for tries := 0; k > 0; tries++ {
		if tries == 64 {
			k = 0
			break
		}
		if e, ok := s.frameEndAt(k - 1); ok {
			end = e
			break
		}
		k--
	}
	sc, err := newFrameScanner(s.rec, end, 1<<20)
	if err != nil {
		return 0, 0, nil, false, err
	}
	// A hint at the end of a legacy record, or none, needs no trailer.
	confirmed = k == 0 || s.batchesFrom < 0 || end <= s.batchesFrom
	// offs are the index entries of adopted records not yet written;
	// pending those of records still waiting for their batch's trailer,
	// which are never written to records.idx, so that the idx hint never
	// points into a batch that may be cut.
	var offs, pending []byte
	seen := k // records met, pending ones included
	trailered := false
	flush := func() error {
		if len(offs) == 0 {
			return nil
		}
		_, err := s.idx.WriteAt(offs, int64(k-uint64(len(offs)/8))*8)
		offs = offs[:0]
		return err
	}
	for {
		if seen%65536 == 0 && ctx.Err() != nil {
			return 0, 0, nil, false, ctx.Err()
		}
		p, off, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && isTrailer(p) {
			t, terr := parseTrailer(p)
			if terr == nil && t.size != seen {
				terr = fmt.Errorf("batch trailer says the log holds %d records, %d precede it", t.size, seen)
			}
			if terr == nil {
				t.root, t.auth = bytes.Clone(t.root), bytes.Clone(t.auth)
				trailers = append(trailers, t)
				offs = append(offs, pending...)
				pending = pending[:0]
				k = seen
				end = off + frameHeader + int64(len(p))
				trailered, confirmed = true, true
				if len(offs) >= 1<<16 {
					if err := flush(); err != nil {
						return 0, 0, nil, false, fmt.Errorf("write records.idx: %w", err)
					}
				}
				continue
			}
			err = terr
		} else if err == nil {
			seq, serr := record.Seq(p)
			if serr == nil && seq == seen {
				seen++
				if trailered || (s.batchesFrom >= 0 && off >= s.batchesFrom) {
					pending = binary.LittleEndian.AppendUint64(pending, uint64(off))
					continue
				}
				// Legacy: written before trailers, adopted as it is.
				offs = binary.LittleEndian.AppendUint64(offs, uint64(off))
				k = seen
				end = off + frameHeader + int64(len(p))
				if len(offs) >= 1<<16 {
					if err := flush(); err != nil {
						return 0, 0, nil, false, fmt.Errorf("write records.idx: %w", err)
					}
				}
				continue
			}
			if serr != nil {
				err = serr
			} else {
				err = fmt.Errorf("it holds the record for seq %d", seq)
			}
		}
		// A bad frame: a torn tail after a crash, or damage. Damage inside
		// the checkpointed prefix, or followed by a good next frame, is
		// never cut: that would destroy acknowledged records.
		if seen < covered || goodFrameFollows(s.rec, off, seen) {
			if !confirmed {
				return 0, 0, nil, false, nil
			}
			return 0, 0, nil, false, fmt.Errorf("%w: seq %d at offset %d of records.log is damaged: %w; run `stele verify`", ErrTampered, seen, off, err)
		}
		break
	}
	if err := flush(); err != nil {
		return 0, 0, nil, false, fmt.Errorf("write records.idx: %w", err)
	}
	if len(pending) > 0 {
		s.opts.Logger.Warn("records after the last batch trailer belong to a batch that was never acknowledged; cutting them", "records", len(pending)/8, "from_seq", k)
	}
	return k, end, trailers, confirmed, nil
}

// frameEndAt checks the frame records.idx names for seq and returns where it ends.
func (s *Store) frameEndAt(seq uint64) (int64, bool) {
	var ob [8]byte
	if _, err := s.idx.ReadAt(ob[:], int64(seq)*8); err != nil {
		return 0, false
	}
	off := int64(binary.LittleEndian.Uint64(ob[:]))
	p, ok := frameAt(s.rec, off)
	if !ok {
		return 0, false
	}
	if got, err := record.Seq(p); err != nil || got != seq {
		return 0, false
	}
	return off + frameHeader + int64(len(p)), true
}

func frameAt(f readFile, off int64) ([]byte, bool) {
	var hdr [frameHeader]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return nil, false
	}
	length := binary.LittleEndian.Uint32(hdr[0:4])
	if length > maxFrame {
		return nil, false
	}
	buf := make([]byte, frameHeader+int(length))
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, false
	}
	p, _, err := parseFrame(buf)
	return p, err == nil
}

// goodFrameFollows reports whether, assuming the frame at off has an intact
// length, a good frame follows it. The damaged frame at off was record
// seen (so a good record seen+1 may follow) or a trailer (so record seen,
// or another trailer, may).
func goodFrameFollows(f readFile, off int64, seen uint64) bool {
	p, ok := nextFrameAfter(f, off)
	if !ok {
		return false
	}
	if isTrailer(p) {
		_, err := parseTrailer(p)
		return err == nil
	}
	seq, err := record.Seq(p)
	return err == nil && (seq == seen || seq == seen+1)
}

func nextFrameAfter(f readFile, off int64) ([]byte, bool) {
	var hdr [frameHeader]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return nil, false
	}
	length := binary.LittleEndian.Uint32(hdr[0:4])
	if length > maxFrame {
		return nil, false
	}
	return frameAt(f, off+frameHeader+int64(length))
}

// cutTail removes bytes after the last whole record, keeping a copy under
// quarantine/ so nothing is destroyed without a trace.
func (s *Store) cutTail(end int64) error {
	st, err := s.rec.Stat()
	if err != nil {
		return fmt.Errorf("stat records.log: %w", err)
	}
	if st.Size() == end {
		return nil
	}
	tail := make([]byte, st.Size()-end)
	if _, err := s.rec.ReadAt(tail, end); err != nil && err != io.EOF {
		return fmt.Errorf("read torn tail: %w", err)
	}
	qdir := filepath.Join(s.dir, quarantineDir)
	if err := s.fs.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("create quarantine directory: %w", err)
	}
	name := filepath.Join(qdir, fmt.Sprintf("records-tail-%d-%d.bin", end, time.Now().UnixNano()))
	if err := atomicfile.WriteSync(s.fs, name, tail, 0o600, atomicfile.Exclusive); err != nil {
		return err
	}
	s.opts.Logger.Warn("cut torn tail of records.log (an unacknowledged write interrupted by a crash)", "offset", end, "bytes", len(tail), "kept_as", name)
	if err := s.rec.Truncate(end); err != nil {
		return fmt.Errorf("truncate records.log: %w", err)
	}
	return s.rec.SyncData()
}

// rehashFrom appends leaves [from, to) to the tree, reading records.log.
func (s *Store) rehashFrom(ctx context.Context, from, to uint64) error {
	if from == to {
		return nil
	}
	start, ok := s.offsetOf(from)
	if !ok {
		return fmt.Errorf("%w: no offset for seq %d", ErrTampered, from)
	}
	sc, err := newFrameScanner(s.rec, start, 1<<20)
	if err != nil {
		return err
	}
	h := sha256.New()
	hashes := make([]byte, 0, 4096*hashSize)
	for seq := from; seq < to; seq++ {
		p, _, err := sc.next()
		for err == nil && isTrailer(p) {
			p, _, err = sc.next()
		}
		if err != nil {
			return fmt.Errorf("%w: rehash seq %d: %w", ErrTampered, seq, err)
		}
		hashes = appendLeafHash(hashes, h, p)
		if len(hashes) == cap(hashes) || seq+1 == to {
			if err := s.tree.appendLeaves(hashes); err != nil {
				return err
			}
			hashes = hashes[:0]
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

func (s *Store) offsetOf(seq uint64) (int64, bool) {
	var ob [8]byte
	if _, err := s.idx.ReadAt(ob[:], int64(seq)*8); err != nil {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(ob[:])), true
}

// catchUpHook replays records the index has not seen (it is not fsync'd,
// so after a crash it may trail the log). Their personal-data entries come
// from the Sealer: without one, a log holding sealed records would be
// indexed without its blind-index terms and subject counts.
func (s *Store) catchUpHook(ctx context.Context) error {
	if s.opts.Hook == nil {
		return nil
	}
	w, err := s.opts.Hook.Watermark()
	if err != nil {
		return fmt.Errorf("read index watermark: %w", err)
	}
	n := s.Size()
	if w > n {
		return fmt.Errorf("%w (%d > %d records): it belongs to another data directory; run `stele reindex`", ErrIndexAhead, w, n)
	}
	if w < n {
		s.opts.Logger.Info("indexing records the index missed", "from", w, "to", n)
	}
	h := s.opts.Hook
	return s.Replay(ctx, w, n, 4096, func(recs []*record.Record) error {
		entries := make([][]byte, len(recs))
		for i, r := range recs {
			if s.opts.Sealer != nil {
				if err := s.opts.Sealer.Rederive(ctx, r); err != nil {
					return fmt.Errorf("index seq %d: %w", r.Seq, err)
				}
			}
			e, err := h.Prepare(r)
			if err != nil {
				return err
			}
			entries[i] = e
		}
		return h.ApplyPrepared(recs[0].Seq, entries)
	})
}

// Replay decodes records [from, to) in order and hands them to fn in batches.
func (s *Store) Replay(ctx context.Context, from, to uint64, batch int, fn func([]*record.Record) error) error {
	if to > s.Size() {
		to = s.Size()
	}
	if from >= to {
		return nil
	}
	start, ok := s.offsetOf(from)
	if !ok {
		return fmt.Errorf("%w: no offset for seq %d", ErrTampered, from)
	}
	sc, err := newFrameScanner(s.rec, start, 1<<20)
	if err != nil {
		return err
	}
	recs := make([]*record.Record, 0, batch)
	for seq := from; seq < to; seq++ {
		p, _, err := sc.next()
		for err == nil && isTrailer(p) {
			p, _, err = sc.next()
		}
		if err != nil {
			return fmt.Errorf("%w: replay seq %d: %w", ErrTampered, seq, err)
		}
		r, err := record.Decode(p)
		if err != nil {
			return fmt.Errorf("replay seq %d: %w", seq, err)
		}
		recs = append(recs, r)
		if len(recs) == batch || seq+1 == to {
			if err := fn(recs); err != nil {
				return err
			}
			recs = make([]*record.Record, 0, batch)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}
