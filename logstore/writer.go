package logstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

type appendReq struct {
	recs []*record.Record
	// bodies are encoded by the caller, so the single writer only stamps
	// each record's header; prepared holds the index entries (Hook.Prepare).
	bodies   [][]byte
	prepared [][]byte
	// known[i] is the seq+1 of an already indexed record with recs[i]'s id
	// (0: none), looked up at follower epoch.
	known []uint64
	epoch uint64
	done  chan appendResult
}

type appendResult struct {
	res []stele.Appended
	err error
}

type writerScratch struct {
	frames  []byte
	hashes  []byte
	offsets []byte
	ids     map[string]uint64
	// fresh are this commit's new records, framed and hashed together
	// once their seqs are known (frameAll); shas are the hash states of
	// the goroutines that share that work.
	fresh []freshRecord
	shas  []hashWriter
	// for the index follower: ids and prepared entries of this commit's
	// new records, whose seqs are consecutive from the commit's first.
	freshIDs     []string
	freshEntries [][]byte
}

// Append makes recs durable and returns their seqs, in order. The store
// takes ownership of recs: it sets Seq and RecordedAt. A record whose id is
// already stored (or appears earlier in the same commit) is not stored again.
// Append returns only after the records are fsync'd, or with an
// error, in which case none of them was acknowledged (a retry with the same
// ids is safe: duplicates are recognised).
func (s *Store) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	req := &appendReq{recs: recs, bodies: make([][]byte, len(recs)), done: make(chan appendResult, 1)}
	if s.opts.Hook != nil {
		req.prepared = make([][]byte, len(recs))
		req.known = make([]uint64, len(recs))
		req.epoch = s.follow.currentEpoch()
	}
	if err := s.prepare(ctx, req); err != nil {
		return nil, err
	}
	if s.opts.Sealer != nil {
		if err := s.opts.Sealer.Sync(ctx); err != nil {
			return nil, fmt.Errorf("make sealing keys durable: %w", err)
		}
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- req:
	default:
		s.closeMu.RUnlock()
		return nil, ErrOverloaded
	}
	s.closeMu.RUnlock()
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("append not acknowledged: %w", ctx.Err())
	}
}

// prepare encodes each record's body and index entry and looks its id up
// in the index, on the caller's side of the queue; a large batch is shared
// by all cores, so one producer sending big batches is not limited to one
// core.
func (s *Store) prepare(ctx context.Context, req *appendReq) error {
	one := func(i int) error {
		r := req.recs[i]
		if s.opts.Sealer != nil {
			if err := s.opts.Sealer.Seal(ctx, r); err != nil {
				return &stele.RecordError{Index: i, Err: err}
			}
		}
		req.bodies[i] = record.AppendBody(make([]byte, 0, record.BodySize(r)), r)
		if size := record.HeaderSize + len(req.bodies[i]); size > MaxRecordSize {
			return fmt.Errorf("%w: record %d of the batch encodes to %d bytes, more than %d", ErrTooLarge, i, size, MaxRecordSize)
		}
		if req.prepared != nil {
			e, err := s.opts.Hook.Prepare(r)
			if err != nil {
				return fmt.Errorf("prepare index entry: %w", err)
			}
			req.prepared[i] = e
			seq, ok, err := s.opts.Hook.LookupID(r.ID)
			if err != nil {
				// No id in the message: clients may choose ids from
				// personal data.
				return fmt.Errorf("look up a record id: %w", err)
			}
			if ok {
				req.known[i] = seq + 1
			}
		}
		return nil
	}
	n := len(req.recs)
	workers := min(runtime.GOMAXPROCS(0), n/prepareChunk)
	if workers <= 1 {
		for i := range n {
			if err := one(i); err != nil {
				return err
			}
		}
		return nil
	}
	// Workers take chunks in turn rather than a fixed share each: a core
	// taken by the garbage collector or another process then slows the
	// batch by one chunk, not by a share. The lowest failing index is
	// reported, as one goroutine going through the batch would.
	var (
		next   atomic.Int64
		mu     sync.Mutex
		first  error
		firstI = n
	)
	work := func() {
		for {
			lo := int(next.Add(prepareChunk)) - prepareChunk
			if lo >= n {
				return
			}
			for i := lo; i < min(lo+prepareChunk, n); i++ {
				if err := one(i); err != nil {
					mu.Lock()
					if i < firstI {
						first, firstI = err, i
					}
					mu.Unlock()
					// Chunks after this one cannot hold the lowest
					// failure; earlier ones taken by others still run.
					next.Store(int64(n))
					return
				}
			}
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return first
}

// prepareChunk is how many records a prepare worker takes at a time: a
// batch smaller than two chunks is prepared by its caller alone.
const prepareChunk = 128

func (s *Store) writeLoop() {
	defer s.wg.Done()
	s.w.ids = make(map[string]uint64)
	var batch []*appendReq
	for {
		batch = batch[:0]
		select {
		case req := <-s.reqs:
			batch = append(batch, req)
		case <-s.stop:
			// Finish what was enqueued before Close.
			for {
				select {
				case req := <-s.reqs:
					s.commit([]*appendReq{req})
				default:
					return
				}
			}
		}
		n := len(batch[0].recs)
	drain:
		for n < s.opts.MaxBatchRecords {
			select {
			case req := <-s.reqs:
				batch = append(batch, req)
				n += len(req.recs)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// commit writes one group of append requests with a single fsync.
func (s *Store) commit(batch []*appendReq) {
	if err := s.Err(); err != nil {
		for _, req := range batch {
			req.done <- appendResult{err: err}
		}
		return
	}
	w := &s.w
	w.offsets, w.fresh = w.offsets[:0], w.fresh[:0]
	w.freshIDs, w.freshEntries = nil, nil
	size := 0 // of the frames so far
	clear(w.ids)
	now := s.opts.Now().UTC()
	seq := s.next
	results := make([][]stele.Appended, len(batch))
	for bi, req := range batch {
		res := make([]stele.Appended, len(req.recs))
		for i, r := range req.recs {
			if prev, ok := w.ids[r.ID]; ok {
				res[i] = stele.Appended{Seq: prev, ID: r.ID, Duplicate: true}
				continue
			}
			prev, ok, stale := s.follow.check(r.ID, req.epoch)
			if ok {
				res[i] = stele.Appended{Seq: prev, ID: r.ID, Duplicate: true}
				continue
			}
			if req.known != nil && req.known[i] != 0 {
				res[i] = stele.Appended{Seq: req.known[i] - 1, ID: r.ID, Duplicate: true}
				continue
			}
			if s.opts.Hook != nil && stale {
				// Too many index batches since the appender's lookup: ids
				// indexed meanwhile may have left pending.
				prev, ok, err := s.opts.Hook.LookupID(r.ID)
				if err != nil {
					s.failBatch(batch, fmt.Errorf("look up a record id: %w", err))
					return
				}
				if ok {
					res[i] = stele.Appended{Seq: prev, ID: r.ID, Duplicate: true}
					continue
				}
			}
			r.Seq, r.RecordedAt = seq, now
			w.ids[r.ID] = seq
			w.offsets = binary.LittleEndian.AppendUint64(w.offsets, uint64(s.recEnd)+uint64(size))
			w.fresh = append(w.fresh, freshRecord{r: r, body: req.bodies[i], at: size})
			size += frameHeader + record.HeaderSize + len(req.bodies[i])
			w.freshIDs = append(w.freshIDs, r.ID)
			if req.prepared != nil {
				w.freshEntries = append(w.freshEntries, req.prepared[i])
			}
			res[i] = stele.Appended{Seq: seq, ID: r.ID}
			seq++
		}
		results[bi] = res
	}
	if len(w.freshIDs) > 0 {
		w.frameAll(size)
		if err := s.persist(seq); err != nil {
			s.fail(err)
			s.failBatch(batch, err)
			return
		}
	}
	for bi, req := range batch {
		req.done <- appendResult{res: results[bi]}
	}
}

// freshRecord is a record a commit stores: its frame starts at byte at of
// the commit's frames.
type freshRecord struct {
	r    *record.Record
	body []byte
	at   int
}

// minFrameShare is the fewest bytes worth handing to another goroutine
// when framing a commit: far more than starting one costs.
const minFrameShare = 64 << 10

// frameAll writes the frames of w.fresh (size bytes in all) into w.frames
// and their leaf hashes into w.hashes. Hashing every stored byte is the
// writer's largest cost and the records are independent once their seqs
// are set, so a large commit shares the work between goroutines; the bytes
// come out the same as framing them one by one, and nothing is written
// until all of them are done.
func (w *writerScratch) frameAll(size int) {
	w.frames = slices.Grow(w.frames[:0], size)[:size]
	w.hashes = slices.Grow(w.hashes[:0], hashSize*len(w.fresh))[:hashSize*len(w.fresh)]
	parts := max(1, min(runtime.GOMAXPROCS(0), size/minFrameShare, len(w.fresh)))
	for len(w.shas) < parts {
		w.shas = append(w.shas, sha256.New())
	}
	frame := func(part int) {
		lo, hi := part*len(w.fresh)/parts, (part+1)*len(w.fresh)/parts
		for i := lo; i < hi; i++ {
			f := w.fresh[i]
			n := frameHeader + record.HeaderSize + len(f.body)
			writeRecordFrame(w.frames[f.at:f.at+n], f.r, f.body)
			appendLeafHash(w.hashes[i*hashSize:i*hashSize:(i+1)*hashSize], w.shas[part], w.frames[f.at+frameHeader:f.at+n])
		}
	}
	var wg sync.WaitGroup
	for part := 1; part < parts; part++ {
		wg.Go(func() { frame(part) })
	}
	frame(0)
	wg.Wait()
	// Keep no record of this commit until the next one.
	clear(w.fresh)
}

// writeRecordFrame writes r's frame into dst, which is exactly its size:
// the frame header, then r's stored bytes.
func writeRecordFrame(dst []byte, r *record.Record, body []byte) {
	record.AppendHeader(dst[frameHeader:frameHeader], r.Seq, r.RecordedAt)
	copy(dst[frameHeader+record.HeaderSize:], body)
	putFrameHeader(dst, dst[frameHeader:])
}

// persist makes the commit durable, then updates derived files and the
// index, then publishes the new size.
func (s *Store) persist(next uint64) error {
	w := &s.w
	if _, err := s.rec.WriteAt(w.frames, s.recEnd); err != nil {
		return fmt.Errorf("write records.log: %w", err)
	}
	if err := unix.Fdatasync(int(s.rec.Fd())); err != nil {
		return fmt.Errorf("fsync records.log: %w", err)
	}
	if _, err := s.idx.WriteAt(w.offsets, int64(s.next)*8); err != nil {
		return fmt.Errorf("write records.idx: %w", err)
	}
	if err := s.tree.appendLeaves(w.hashes); err != nil {
		return err
	}
	root, err := s.tree.root()
	if err != nil {
		return err
	}
	s.recEnd += int64(len(w.frames))
	s.next = next
	s.state.Store(&treeState{size: next, root: root})
	s.notify.signal()
	// The batch is durable; indexing follows without holding up the ack.
	// The follower's queue is bounded, so a slow index pushes back here.
	s.follow.enqueue(followItem{first: s.next - uint64(len(w.freshIDs)), ids: w.freshIDs, entries: w.freshEntries})
	return nil
}

func (s *Store) failBatch(batch []*appendReq, err error) {
	for _, req := range batch {
		req.done <- appendResult{err: err}
	}
}

func (s *Store) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.cpKick:
		}
		if _, err := s.Checkpoint(context.Background()); err != nil {
			s.opts.Logger.Error("issue checkpoint", "err", err)
		}
	}
}

// Checkpoint signs and stores a checkpoint for the current tree unless the
// latest one already covers it, and returns the latest checkpoint.
func (s *Store) Checkpoint(ctx context.Context) (*stele.Checkpoint, error) {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	st := s.state.Load()
	if cp := s.latest.Load(); cp != nil && cp.Size >= st.size {
		return cp, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Derived files must be durable before a checkpoint vouches for them:
	// recovery trusts them up to the latest checkpoint.
	if err := s.idx.Sync(); err != nil {
		return nil, fmt.Errorf("sync records.idx: %w", err)
	}
	if err := s.tree.sync(); err != nil {
		return nil, err
	}
	cp, err := stele.SignCheckpoint(signerFor(ctx, s.keys.Signer), st.size, st.root)
	if err != nil {
		return nil, err
	}
	off, err := s.cps.Seek(0, 2)
	if err != nil {
		return nil, fmt.Errorf("seek checkpoints.log: %w", err)
	}
	if _, err := s.cps.WriteAt(appendFrame(nil, cp.Note), off); err != nil {
		return nil, fmt.Errorf("write checkpoints.log: %w", err)
	}
	if err := unix.Fdatasync(int(s.cps.Fd())); err != nil {
		return nil, fmt.Errorf("fsync checkpoints.log: %w", err)
	}
	s.latest.Store(cp)
	return cp, nil
}

// KickCheckpoint asks for a checkpoint soon without waiting for it.
func (s *Store) KickCheckpoint() {
	select {
	case s.cpKick <- struct{}{}:
	default:
	}
}
