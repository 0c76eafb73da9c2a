package logstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/vfs"
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
	// raws, ids and cp are an AppendSequenced batch: stored bytes with
	// their seqs already set, and the writer's checkpoint after them.
	raws [][]byte
	ids  []string
	cp   *stele.Checkpoint
	// after, when set, reports whether the request queued before this
	// one by the same caller failed (AppendAsync); failed is this one's,
	// set before its answer is sent. It is its own allocation: the next
	// request's after must not keep this request, with its records, alive
	// (nor, through its own after, every request before it).
	after  func() bool
	failed *atomic.Bool
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
	trailer      []byte
	// expectRoot, when set, is the root a sequenced batch must give
	// (its writer's checkpoint); persist refuses the batch otherwise.
	expectRoot []byte
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
	if err := s.canAppend(); err != nil {
		return nil, err
	}
	defer s.appending.enter()()
	req := s.newAppendReq(recs)
	if err := s.prepare(ctx, req); err != nil {
		return nil, err
	}
	return s.submitPrepared(ctx, req)
}

// ErrEarlierFailed: an append queued with AppendAsync was refused because
// the one its caller queued before it failed; storing it would leave a gap
// in the caller's order.
var ErrEarlierFailed = errors.New("an earlier queued append of this caller failed")

// AppendAsync is Append without the wait: it prepares recs on the caller's
// goroutine as Append does (an error doing so, such as a record refused
// by its schema, is returned at once and nothing is queued), queues them
// for the writer and returns. wait then gives the outcome Append would
// have given. Appends one goroutine queues are stored in the order it
// queued them, so a caller can prepare its next batch while the writer
// makes the last one durable, and batches queued while the writer is busy
// share one fsync. after, when set, is the failed function of the
// caller's previous queued append: if that one failed, this one fails too
// (ErrEarlierFailed) instead of being stored after the gap. A full queue
// is ErrOverloaded, as for Append.
func (s *Store) AppendAsync(ctx context.Context, recs []*record.Record, after func() bool) (wait func(context.Context) ([]stele.Appended, error), failed func() bool, err error) {
	if len(recs) == 0 {
		return func(context.Context) ([]stele.Appended, error) { return nil, nil }, after, nil
	}
	if err := s.canAppend(); err != nil {
		return nil, nil, err
	}
	// In progress, for AppendBusy, from now until the caller has its
	// answer, as a synchronous Append is.
	var leave sync.Once
	exit := s.appending.enter()
	done := func() { leave.Do(exit) }
	req := s.newAppendReq(recs)
	req.after, req.failed = after, new(atomic.Bool)
	if err := s.prepare(ctx, req); err != nil {
		done()
		return nil, nil, err
	}
	if s.opts.Sealer != nil {
		if err := s.opts.Sealer.Sync(ctx); err != nil {
			done()
			return nil, nil, fmt.Errorf("make sealing keys durable: %w", err)
		}
	}
	if err := s.enqueue(ctx, req, false); err != nil {
		done()
		return nil, nil, err
	}
	wait = func(ctx context.Context) ([]stele.Appended, error) {
		defer done()
		return s.answer(ctx, req, "append")
	}
	return wait, req.failed.Load, nil
}

// submit hands req to the writer and waits for its answer. A full queue
// is ErrOverloaded, unless wait says to wait for room (a replica's batch
// must be stored, in order, whatever the load).
func (s *Store) submit(ctx context.Context, req *appendReq, wait bool, what string) ([]stele.Appended, error) {
	if err := s.enqueue(ctx, req, wait); err != nil {
		return nil, err
	}
	return s.answer(ctx, req, what)
}

// enqueue hands req to the writer (see submit for wait).
func (s *Store) enqueue(ctx context.Context, req *appendReq, wait bool) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if wait {
		select {
		case s.reqs <- req:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case s.reqs <- req:
		return nil
	default:
		return ErrOverloaded
	}
}

// answer waits for the writer's answer to a queued req.
func (s *Store) answer(ctx context.Context, req *appendReq, what string) ([]stele.Appended, error) {
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s not acknowledged: %w", what, ctx.Err())
	}
}

// prepare encodes each record's body and index entry and looks its id up
// in the index, on the caller's side of the queue; a large batch is shared
// by all cores, so one producer sending big batches is not limited to one
// core.
func (s *Store) prepare(ctx context.Context, req *appendReq) error {
	return forEachChunked(len(req.recs), func(i int) error { return s.prepareOne(ctx, req, i) })
}

// prepareOne seals and encodes req.recs[i], prepares its index entry and
// looks its id up, filling slot i of req's slices.
func (s *Store) prepareOne(ctx context.Context, req *appendReq, i int) error {
	r := req.recs[i]
	if s.opts.Sealer != nil {
		if err := s.opts.Sealer.Seal(ctx, r); err != nil {
			return &stele.RecordError{Index: i, Err: err}
		}
		if req.bodies[i] != nil && !record.IsBody(req.bodies[i], r) {
			// Sealing changed the record (a table with a schema): the
			// body it came with is no longer its stored form.
			req.bodies[i] = nil
		}
	}
	if req.bodies[i] == nil {
		// Not given encoded already (Batch.Prepare).
		req.bodies[i] = record.AppendBody(make([]byte, 0, record.BodySize(r)), r)
	}
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

// forEachChunked runs one(i) for i in [0, n), on every core when n is
// large, and returns the error of the lowest failing i.
func forEachChunked(n int, one func(i int) error) error {
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
					if req.raws != nil {
						s.commitSequenced(req)
						continue
					}
					s.commit([]*appendReq{req})
				default:
					return
				}
			}
		}
		if batch[0].raws != nil {
			// A replica's batches arrive whole from the cluster's writer
			// and are stored as they came (Options.Replica has no Append).
			s.commitSequenced(batch[0])
			continue
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
		// The answered requests hold their records: keep none of them
		// until the next group overwrites the slots.
		clear(batch)
	}
}

// commit writes one group of append requests with a single fsync.
func (s *Store) commit(batch []*appendReq) {
	if err := s.WriteErr(); err != nil {
		s.failBatch(batch, err)
		return
	}
	// A request whose caller's previous one failed is refused, not
	// stored after the gap. The writer answers in queue order, so that
	// one was answered before (a request earlier in this same batch
	// shares this batch's fate).
	kept := batch[:0]
	for _, req := range batch {
		after := req.after
		req.after = nil
		if after != nil && after() {
			s.failBatch([]*appendReq{req}, ErrEarlierFailed)
			continue
		}
		kept = append(kept, req)
	}
	if batch = kept; len(batch) == 0 {
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
			var fatal *fatalError
			switch {
			case errors.As(err, &fatal):
				s.fail(fatal.err)
				err = s.Err()
			case vfs.IsNoSpace(err):
				err = s.setFull(err)
			}
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
	// Room for the batch trailer persist appends, so it never reallocates.
	w.frames = slices.Grow(w.frames[:0], size+frameHeader+trailerFixed+maxAuthLen)[:size]
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
//
// The batch goes to records.log as its frames and then a trailer frame
// carrying the log's size and root after it (and the BatchSealer's
// authenticator), in one write and one fdatasync; recovery keeps a batch
// only with its trailer, so a batch cut short by a crash is absent as a
// whole. If anything fails before the batch is acknowledged, records.log,
// records.idx and the tree are cut back to the last durable batch before
// the callers are answered, so an unacknowledged batch is absent from the
// running store too. A full disk (ENOSPC, EDQUOT on a write) is then
// recoverable; every other failure, and any failed fsync, is a
// *fatalError: the store stops (ErrFailed), see ErrFailed for why.
func (s *Store) persist(next uint64) error {
	w := &s.w
	mark := s.tree.mark()
	pending, err := s.tree.extend(w.hashes)
	if err != nil {
		return s.undo(mark, err, false)
	}
	root, err := s.tree.root()
	if err != nil {
		return s.undo(mark, err, false)
	}
	if err := w.checkRoot(next, root); err != nil {
		s.tree.rollback(mark)
		return err
	}
	var auth []byte
	if s.opts.BatchSealer != nil {
		if auth, err = s.opts.BatchSealer.Seal(context.Background(), next, root); err != nil {
			s.tree.rollback(mark)
			return fmt.Errorf("seal batch trailer at size %d: %w", next, err)
		}
		if len(auth) > maxAuthLen {
			s.tree.rollback(mark)
			return fmt.Errorf("seal batch trailer at size %d: authenticator of %d bytes, at most %d", next, len(auth), maxAuthLen)
		}
	}
	w.trailer = appendTrailer(w.trailer[:0], trailer{size: next, root: root, auth: auth})
	w.frames = appendFrame(w.frames, w.trailer)
	if _, err := s.rec.WriteAt(w.frames, s.recEnd); err != nil {
		return s.undo(mark, fmt.Errorf("write records.log: %w", err), false)
	}
	if err := s.rec.SyncData(); err != nil {
		err = fmt.Errorf("fsync records.log: %w", err)
		if uerr := s.undo(mark, err, false); uerr != nil {
			err = uerr
		}
		return &fatalError{err}
	}
	if _, err := s.idx.WriteAt(w.offsets, int64(s.next)*8); err != nil {
		return s.undo(mark, fmt.Errorf("write records.idx: %w", err), true)
	}
	if err := s.tree.writeNodes(pending); err != nil {
		return s.undo(mark, err, true)
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

// fatalError is a persist failure after which the store must stop.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// undo cuts records.log, records.idx and the tree back to the last durable
// batch after cause. synced says the batch had already been fsync'd, so
// the cut must be made durable too, or a crash would bring the batch back
// after its callers were told it failed. It returns cause, as a
// *fatalError unless the disk was merely full and the cut succeeded.
func (s *Store) undo(mark treeMark, cause error, synced bool) error {
	errs := []error{cause}
	if err := s.rec.Truncate(s.recEnd); err != nil {
		errs = append(errs, fmt.Errorf("cut records.log back to %d: %w", s.recEnd, err))
	} else if synced {
		if err := s.rec.SyncData(); err != nil {
			errs = append(errs, fmt.Errorf("fsync records.log after cutting it back: %w", err))
		}
	}
	if err := s.idx.Truncate(int64(s.next) * 8); err != nil {
		errs = append(errs, fmt.Errorf("cut records.idx back: %w", err))
	}
	if err := s.tree.rollback(mark); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 1 && vfs.IsNoSpace(cause) {
		return cause
	}
	return &fatalError{errors.Join(errs...)}
}

// setFull stops appends until the probe loop finds space again, and
// returns the error callers get meanwhile.
func (s *Store) setFull(cause error) error {
	err := fmt.Errorf("%w: free space in %s (or raise the quota); appends resume by themselves once a test write succeeds: %w", ErrNoSpace, s.dir, cause)
	if s.full.CompareAndSwap(nil, &err) {
		s.opts.Logger.Error("data directory full; refusing appends until space is freed", "dir", s.dir, "err", cause)
		select {
		case s.probeKick <- struct{}{}:
		default:
		}
	}
	return err
}

// probeBytes is the size of the probe write: a little more than a typical
// group commit, so a disk with a few bytes free does not flap between
// full and not.
const probeBytes = 256 << 10

// probeLoop watches a full disk: every ProbeInterval it writes, fsyncs and
// cuts a small file in the data directory, and lifts ErrNoSpace when that
// works. The probe has its own file, so a failed fsync of it says nothing
// about records.log's state (and never retries an fsync of records.log).
func (s *Store) probeLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.probeKick:
			continue // armed; the first probe waits a full interval
		}
		if s.full.Load() == nil || s.Err() != nil {
			continue
		}
		if err := s.probe(); err != nil {
			s.opts.Logger.Debug("data directory still full", "err", err)
			continue
		}
		s.full.Store(nil)
		s.opts.Logger.Info("data directory has space again; accepting appends", "dir", s.dir)
	}
}

func (s *Store) probe() error {
	path := filepath.Join(s.dir, probeFile)
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, probeBytes))
	if err == nil {
		err = f.SyncData()
	}
	err = errors.Join(err, f.Truncate(0), f.Close())
	return errors.Join(err, s.fs.Remove(path))
}

func (s *Store) failBatch(batch []*appendReq, err error) {
	for _, req := range batch {
		if req.failed != nil {
			req.failed.Store(true)
		}
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
	if s.opts.Replica {
		return s.adoptCheckpoint(ctx)
	}
	return s.signCurrent(ctx)
}

// signCurrent signs and stores a checkpoint for the current tree unless the
// latest one already covers it; cpMu is held.
func (s *Store) signCurrent(ctx context.Context) (*stele.Checkpoint, error) {
	st := s.state.Load()
	if cp := s.latest.Load(); cp != nil && cp.Size >= st.size {
		return cp, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cp, err := stele.SignCheckpoint(signerFor(ctx, s.keys.Signer), st.size, st.root)
	if err != nil {
		return nil, err
	}
	return s.storeCheckpoint(cp)
}

// storeCheckpoint makes the derived files durable, then cp the latest
// checkpoint in checkpoints.log; cpMu is held.
func (s *Store) storeCheckpoint(cp *stele.Checkpoint) (*stele.Checkpoint, error) {
	if err := s.syncDerived(); err != nil {
		return nil, err
	}
	if err := s.writeCheckpoint(cp); err != nil {
		return nil, err
	}
	return cp, nil
}

// syncDerived makes the derived files durable: recovery trusts them up to
// the latest checkpoint, so they must be before a checkpoint vouches for
// them. A failed fsync stops the store (see ErrFailed): retrying it could
// report success for pages the kernel already dropped, and a checkpoint
// would then vouch for them.
func (s *Store) syncDerived() error {
	if err := s.idx.Sync(); err != nil {
		err = fmt.Errorf("sync records.idx: %w", err)
		s.fail(err)
		return err
	}
	if err := s.tree.sync(); err != nil {
		s.fail(err)
		return err
	}
	return nil
}

// writeCheckpoint appends cp to checkpoints.log, fsyncs it and makes it
// the latest; cpMu is held.
func (s *Store) writeCheckpoint(cp *stele.Checkpoint) error {
	fr := appendFrame(nil, cp.Note)
	if _, err := s.cps.WriteAt(fr, s.cpsEnd); err != nil {
		// Cut the partial frame: the next checkpoint is written at
		// cpsEnd, never after a torn one (which recovery would read as
		// damage).
		err = fmt.Errorf("write checkpoints.log: %w", err)
		if terr := s.cps.Truncate(s.cpsEnd); terr != nil {
			s.fail(errors.Join(err, terr))
		} else if vfs.IsNoSpace(err) {
			s.setFull(err)
		}
		return err
	}
	if err := s.cps.SyncData(); err != nil {
		err = fmt.Errorf("fsync checkpoints.log: %w", err)
		s.fail(err)
		return err
	}
	s.cpsEnd += int64(len(fr))
	s.latest.Store(cp)
	return nil
}

// KickCheckpoint asks for a checkpoint soon without waiting for it.
func (s *Store) KickCheckpoint() {
	select {
	case s.cpKick <- struct{}{}:
	default:
	}
}
