package logstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/record"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrTampered: the stored log contradicts itself or a signed checkpoint.
	ErrTampered = errors.New("log tampered or corrupt")
	// ErrOverloaded: the append queue is full; retry after a short wait.
	// It is the contract's pushback, stele.ErrOverloaded.
	ErrOverloaded = stele.ErrOverloaded
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("log closed")
	// ErrNotFound: no record at that seq.
	ErrNotFound = errors.New("no such record")
	// ErrTooLarge: a record does not fit in one frame; nothing was appended.
	ErrTooLarge = errors.New("record too large")
	// ErrIndexAhead: the index claims more records than the log holds, so
	// it belongs to another data directory; set it aside and rebuild it.
	ErrIndexAhead = errors.New("index is ahead of the log")
	// ErrFailed: a write or sync failed; the store accepts no more appends
	// until it is reopened, because what reached the disk is unknown.
	// Every fsync failure ends here: after one, the kernel may have
	// dropped the dirty pages and a second fsync of the same file can
	// report success for data that never reached the disk ("fsyncgate"),
	// so it is never retried on the same file state; reopening rereads
	// what the disk really holds.
	ErrFailed = errors.New("log failed")
	// ErrNoSpace: the disk (or the quota) is full. The batch that hit it
	// was rolled back, nothing acknowledged is lost, and appends resume by
	// themselves once a probe write in the data directory succeeds.
	ErrNoSpace = errors.New("log storage full")
)

// Hook is what the log needs from the index that follows it. It is defined
// here, by its consumer, so the log never imports an index implementation.
type Hook interface {
	// LookupID returns the seq of the stored record with this id, if any.
	LookupID(id string) (seq uint64, ok bool, err error)
	// Prepare derives a record's index entry. It runs on the appending
	// goroutine, before the record has a seq, so that work spreads over
	// all cores; the entry is what waits in memory while the index lags.
	Prepare(r *record.Record) ([]byte, error)
	// ApplyPrepared indexes durable records with seqs first, first+1, …,
	// from their prepared entries. Calls come in log order from one
	// goroutine, shortly after the records were acknowledged.
	ApplyPrepared(first uint64, entries [][]byte) error
	// Watermark is the number of leading records already indexed.
	Watermark() (uint64, error)
}

// Sealer protects personal data before a record is encoded (the privacy
// layer). It is defined here, by its consumer, so the log never imports it.
type Sealer interface {
	// Seal validates r and replaces its personal fields in place; it runs
	// on the appending goroutine. An error wrapping *record.FieldError
	// means the record itself is unacceptable.
	Seal(ctx context.Context, r *record.Record) error
	// Sync makes durable any key Seal created, before the records sealed
	// under it are acknowledged.
	Sync(ctx context.Context) error
	// Rederive sets r.Derived on a record read back from the log. Derived
	// is never stored, so the records the index replays (after a crash,
	// or to rebuild) get theirs from here, as Seal would have set it,
	// except for values whose keys are gone, which derive nothing.
	Rederive(ctx context.Context, r *record.Record) error
}

// Options configure a Store. Zero values give the documented defaults.
type Options struct {
	// Origin names the log in its checkpoints (default "stele.local/log").
	Origin string
	// Hook is the index. Without one, duplicate ids are recognised only
	// within a single commit; the server always runs with one.
	Hook Hook
	// Sealer, when set, seals personal data in every record before it is
	// encoded and hashed.
	Sealer Sealer
	// CheckpointSigner, when set, signs checkpoints instead of the key file
	// keys/checkpoint.skey (see CheckpointSigner); its verifier key must be
	// the directory's.
	CheckpointSigner CheckpointSigner
	Logger           *slog.Logger
	// CheckpointInterval is how often a checkpoint is issued while records
	// arrive (default 500ms, so every record is covered within a second).
	CheckpointInterval time.Duration
	// QueueDepth bounds waiting append calls before ErrOverloaded (default 4096).
	QueueDepth int
	// MaxBatchRecords bounds one group commit (default 16384).
	MaxBatchRecords int
	Now             func() time.Time
	// FS is the file system the store works in (default the OS); tests
	// inject disk faults through it (internal/vfs.ErrorFS).
	FS vfs.FS
	// Lock is the data directory's lock, when the caller took it itself
	// (LockDir) to hold it beyond the store's life; Open then neither takes
	// nor releases it. Nil: Open takes it and Close releases it.
	Lock *DirLock
	// BatchSealer authenticates each batch trailer (nil: empty
	// authenticators, accepted).
	BatchSealer BatchSealer
	// ProbeInterval is how often a full disk is probed with a small write
	// while appends are refused with ErrNoSpace (default 1s).
	ProbeInterval time.Duration
	// Replica makes the store a cluster node's copy of a log sequenced by
	// the cluster's writer: records arrive only through AppendSequenced
	// (Append returns ErrReplica), and checkpoints are the writer's,
	// adopted after the records they cover; a replica signs one only at
	// Open, for what it recovered past its latest (see Open).
	Replica bool
}

func (o *Options) fill() {
	if o.Origin == "" {
		o.Origin = "stele.local/log"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 500 * time.Millisecond
	}
	if o.QueueDepth <= 0 {
		o.QueueDepth = 4096
	}
	if o.MaxBatchRecords <= 0 {
		o.MaxBatchRecords = 16384
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.FS = vfs.Or(o.FS)
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
}

// File names inside the data directory.
const (
	recordsFile     = "records.log"
	indexFile       = "records.idx"
	treeDir         = "tree"
	checkpointsFile = "checkpoints.log"
	quarantineDir   = "quarantine"
	probeFile       = ".probe"
)

type treeState struct {
	size uint64
	root []byte
}

// Store is an open log. Append is safe for concurrent use; one goroutine
// writes, so seqs follow the order in which batches are committed.
type Store struct {
	dir  string
	opts Options
	fs   vfs.FS
	keys *Keys
	lock *DirLock // released by Close when Open took it

	rec  vfs.File
	idx  vfs.File
	tree *tree
	cps  vfs.File

	state  atomic.Pointer[treeState]
	latest atomic.Pointer[stele.Checkpoint]
	// adopt is a replica's newest received checkpoint, written to
	// checkpoints.log by the checkpoint loop (adoptCheckpoint).
	adopt  atomic.Pointer[stele.Checkpoint]
	failed atomic.Pointer[error]
	// full is set while the disk is full (ErrNoSpace); the probe loop
	// clears it.
	full      atomic.Pointer[error]
	probeKick chan struct{}
	// batchesFrom is the offset of records.log from which every batch
	// ends with a trailer (FORMAT); -1 until recovery settles it.
	batchesFrom int64

	appending busyClock

	reqs    chan *appendReq
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.RWMutex // held for reading by Append while enqueueing
	closed  bool
	cpMu    sync.Mutex
	cpKick  chan struct{}
	cpsEnd  int64 // end of the last whole checkpoint frame; cpMu

	follow *follower
	notify notifier // wakes log followers once per commit (notify.go)

	// writer-owned
	next   uint64
	recEnd int64
	w      writerScratch
}

// Open opens or creates the log in dir, recovering from any crash: a torn
// final frame is cut off (and kept under quarantine/), derived files are
// brought in line with records.log, and the tree is checked against the
// latest checkpoint. It returns an error wrapping ErrTampered when the
// stored data contradicts a signed checkpoint.
//
// Open takes the directory's lock (unless opts.Lock holds it already): a
// second Open of the same directory fails with ErrLocked naming it.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	opts.fill()
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	s := &Store{dir: dir, opts: opts, fs: opts.FS, batchesFrom: -1,
		reqs: make(chan *appendReq, opts.QueueDepth), stop: make(chan struct{}), cpKick: make(chan struct{}, 1),
		probeKick: make(chan struct{}, 1)}
	if opts.Lock != nil {
		if !sameDir(opts.Lock.Dir(), dir) {
			return nil, fmt.Errorf("open log in %s: Options.Lock holds %s, another directory; pass the lock of the directory being opened", dir, opts.Lock.Dir())
		}
	} else {
		l, err := LockDir(opts.FS, dir)
		if err != nil {
			return nil, err
		}
		s.lock = l
	}
	keys, err := loadOrCreateKeys(s.fs, dir, opts.Origin, opts.CheckpointSigner, opts.Logger)
	if err != nil {
		s.closeFiles()
		return nil, err
	}
	s.keys = keys
	if err := s.openFiles(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if err := s.recover(ctx); err != nil {
		s.closeFiles()
		return nil, err
	}
	if err := s.catchUpHook(ctx); err != nil {
		s.closeFiles()
		return nil, err
	}
	// A replica too: what it recovered past its latest adopted checkpoint
	// passed the writer's root check when it was applied, and Ed25519
	// signatures are deterministic, so this is the very note the writer
	// signed for that size. Readers then always find a checkpoint.
	if s.latest.Load() == nil || s.latest.Load().Size < s.Size() {
		s.cpMu.Lock()
		_, err := s.signCurrent(ctx)
		s.cpMu.Unlock()
		if err != nil {
			s.closeFiles()
			return nil, err
		}
	}
	s.follow = newFollower(s)
	s.wg.Add(3)
	go s.writeLoop()
	go s.checkpointLoop()
	go s.probeLoop()
	return s, nil
}

func (s *Store) openFiles() error {
	var err error
	open := func(name string) vfs.File {
		if err != nil {
			return nil
		}
		var f vfs.File
		f, err = s.fs.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			err = fmt.Errorf("open %s: %w", name, err)
		}
		return f
	}
	s.rec = open(recordsFile)
	s.idx = open(indexFile)
	s.cps = open(checkpointsFile)
	if err != nil {
		return err
	}
	s.tree, err = openTree(s.fs, filepath.Join(s.dir, treeDir))
	if err != nil {
		return err
	}
	return vfs.SyncDir(s.fs, s.dir)
}

func (s *Store) closeFiles() {
	for _, f := range []vfs.File{s.rec, s.idx, s.cps} {
		if f != nil {
			f.Close()
		}
	}
	if s.tree != nil {
		s.tree.close()
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Signer returns the checkpoint signing key, for the records the server
// signs with it (erasure receipts).
func (s *Store) Signer() note.Signer { return s.keys.Signer }

// Keys returns the checkpoint keys (the verifier key is public).
func (s *Store) Keys() *Keys { return s.keys }

// Size is the number of durable records.
func (s *Store) Size() uint64 { return s.state.Load().size }

// Root is the root hash of the tree over all durable records.
func (s *Store) Root() (size uint64, root []byte) {
	st := s.state.Load()
	return st.size, st.root
}

// LatestCheckpoint is the most recent signed checkpoint.
func (s *Store) LatestCheckpoint() *stele.Checkpoint { return s.latest.Load() }

// Err reports why the store refuses appends until it is reopened
// (ErrFailed), or nil.
func (s *Store) Err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// WriteErr reports why the store refuses appends now, or nil: ErrFailed
// (reopen required) or ErrNoSpace (resumes by itself once space is free).
// /healthz and /metrics report it as "not accepting writes".
func (s *Store) WriteErr() error {
	if err := s.Err(); err != nil {
		return err
	}
	if p := s.full.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Store) fail(err error) {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	s.failed.CompareAndSwap(nil, &err)
	s.opts.Logger.Error("log write failed; refusing appends until restart", "err", err)
}

// ReadRaw returns the stored bytes of the record at seq, checked against
// their frame checksum and seq header.
func (s *Store) ReadRaw(seq uint64) ([]byte, error) {
	if seq >= s.Size() {
		return nil, fmt.Errorf("%w: seq %d (log size %d)", ErrNotFound, seq, s.Size())
	}
	var ob [8]byte
	if _, err := s.idx.ReadAt(ob[:], int64(seq)*8); err != nil {
		return nil, fmt.Errorf("read offset of seq %d: %w", seq, err)
	}
	off := int64(binary.LittleEndian.Uint64(ob[:]))
	buf := make([]byte, 1024)
	n, err := s.rec.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read seq %d: %w", seq, err)
	}
	buf = buf[:n]
	if n >= frameHeader {
		if need := frameHeader + int(binary.LittleEndian.Uint32(buf[0:4])); need > n && need <= maxFrame+frameHeader {
			buf = make([]byte, need)
			if _, err := s.rec.ReadAt(buf, off); err != nil {
				return nil, fmt.Errorf("read seq %d: %w", seq, err)
			}
		}
	}
	payload, _, err := parseFrame(buf)
	if err != nil {
		return nil, fmt.Errorf("%w: seq %d at offset %d: %w", ErrTampered, seq, off, err)
	}
	if got, err := record.Seq(payload); err != nil || got != seq {
		return nil, fmt.Errorf("%w: seq %d at offset %d holds seq %d (%v)", ErrTampered, seq, off, got, err)
	}
	return payload, nil
}

// Read returns the decoded record at seq.
func (s *Store) Read(seq uint64) (*record.Record, error) {
	raw, err := s.ReadRaw(seq)
	if err != nil {
		return nil, err
	}
	return record.Decode(raw)
}

// LeafHash returns the Merkle leaf hash of the record at seq.
func (s *Store) LeafHash(seq uint64) ([]byte, error) {
	if seq >= s.Size() {
		return nil, fmt.Errorf("%w: seq %d", ErrNotFound, seq)
	}
	return s.tree.node(nodeID(0, seq))
}

// InclusionProof proves the record at seq is in the tree of the given size.
func (s *Store) InclusionProof(seq, size uint64) ([][]byte, error) {
	if size > s.Size() || seq >= size {
		return nil, fmt.Errorf("%w: no inclusion proof for seq %d in tree size %d (log size %d)", ErrNotFound, seq, size, s.Size())
	}
	return s.tree.inclusionProof(seq, size)
}

// ConsistencyProof proves the tree of size from is a prefix of size to.
func (s *Store) ConsistencyProof(from, to uint64) ([][]byte, error) {
	if from > to || to > s.Size() {
		return nil, fmt.Errorf("%w: no consistency proof from %d to %d (log size %d)", ErrNotFound, from, to, s.Size())
	}
	return s.tree.consistencyProof(from, to)
}

// RootAt returns the root hash of the tree of the given size.
func (s *Store) RootAt(size uint64) ([]byte, error) {
	if size > s.Size() {
		return nil, fmt.Errorf("%w: tree size %d (log size %d)", ErrNotFound, size, s.Size())
	}
	return s.tree.rootAt(size)
}

// Close stops the writer after the queued appends, issues a last checkpoint
// and closes the files.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.closeMu.Unlock()
	s.wg.Wait()
	s.follow.close()
	var first error
	if s.Err() == nil {
		if _, err := s.Checkpoint(context.Background()); err != nil {
			first = err
		}
	}
	s.closeFiles()
	return first
}
