package logstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/record"
)

// ErrUnproven: records.log holds more records past the latest signed
// checkpoint than a crash can leave unsigned (see VerifyDir), or
// checkpoints.log holds no checkpoint at all next to a non-empty log. Nothing
// proves those records were written by the log's owner. It comes wrapped in a
// *VerifyError, together with ErrTampered.
var ErrUnproven = errors.New("records not covered by any signed checkpoint")

// VerifyError pinpoints what verification found wrong. Seq is the first bad
// record, or -1 when the fault is not in a record (a checkpoint, a key).
type VerifyError struct {
	Seq    int64
	File   string
	Reason string
	// Kind, when set, narrows ErrTampered (ErrUnproven).
	Kind error
}

func (e *VerifyError) Error() string {
	if e.Seq >= 0 {
		return fmt.Sprintf("first bad seq %d (%s): %s", e.Seq, e.File, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// Unwrap lets errors.Is(err, ErrTampered) match, and Kind when set.
func (e *VerifyError) Unwrap() []error {
	if e.Kind != nil {
		return []error{ErrTampered, e.Kind}
	}
	return []error{ErrTampered}
}

// VerifyOptions tune VerifyDir.
type VerifyOptions struct {
	// VerifierKey pins the checkpoint key; by default the data directory's
	// own verifier key is used (which only proves self-consistency).
	VerifierKey string
	// Progress is called now and then with bytes of records.log checked.
	Progress func(done, total int64)
	// Size stops at this many records (0: all). A running server verifies
	// up to the size it had when it opened.
	Size uint64
	// CheckpointInterval is the interval the log's server signs checkpoints
	// at (its checkpoint_interval; default 500ms, the store's default). It
	// bounds how many records a crash can leave past the latest checkpoint.
	CheckpointInterval time.Duration
	// AllowUnproven accepts up to this many records past the latest
	// checkpoint whatever their timing: the operator knows the server
	// stopped uncleanly under load and has not been restarted since.
	AllowUnproven uint64
}

// VerifyReport summarises a successful verification.
type VerifyReport struct {
	Records     uint64
	Bytes       int64
	Checkpoints int
	Latest      *stele.Checkpoint
	// TornTail is the size of an unacknowledged partial write after the
	// last record, which the next start will cut off.
	TornTail int64
	// Unproven is the number of records past the latest checkpoint, which
	// no signature vouches for yet, and UnprovenSpan the time between the
	// first and the last one's recorded_at. VerifyDir passes only a tail a
	// crash can leave (or one VerifyOptions.AllowUnproven accepts).
	Unproven     uint64
	UnprovenSpan time.Duration
	// TornCheckpoint is the size of a partial final frame in
	// checkpoints.log: a checkpoint whose write a crash interrupted, which
	// the next start cuts off.
	TornCheckpoint int64
	Elapsed        time.Duration
}

// Bounds of an in-flight tail (see VerifyDir).
const (
	// inFlightGrace is what signing a checkpoint may lag behind its tick:
	// syncing records.idx, the tree files and checkpoints.log under load.
	inFlightGrace = time.Second
	// inFlightRate is more records per second than the writer has been
	// measured to commit on this machine class (~220k/s in-process).
	inFlightRate = 1 << 18
	// inFlightBatch is one more group commit (Options.MaxBatchRecords).
	inFlightBatch             = 16384
	defaultCheckpointInterval = 500 * time.Millisecond
)

// maxInFlight is the most records a crash can leave past the latest
// checkpoint when checkpoints are signed every interval.
func maxInFlight(interval time.Duration) uint64 {
	return uint64(inFlightRate*interval.Seconds()) + inFlightBatch
}

// VerifyDir checks a data directory offline, independent of any running
// server: every frame's checksum and position, every leaf and tree node,
// every record index entry, and every checkpoint's signature and root.
//
// Records past the latest checkpoint are proven by nothing: whoever can
// write the directory can rebuild the tree over altered records and drop
// the checkpoints that would contradict them. So such a tail passes only if
// a crash can have left it. The writer signs a checkpoint of everything
// durable on every tick of its interval, so the records a crash leaves
// unsigned were all appended within one interval (plus the time signing
// lags behind its tick, inFlightGrace): the tail must hold at most
// maxInFlight(interval) records (more than the writer commits in one
// interval at its fastest), each stamped with a recorded_at, the last at
// most interval+inFlightGrace after the first. The checkpoint note carries
// no time, so the first unsigned record stands for the moment after the
// last signed tick. A longer tail, or a checkpoints.log with no checkpoint
// next to a non-empty records.log (a store signs its empty log when it is
// created), fails with ErrUnproven unless AllowUnproven accepts its length.
// A partial final frame in checkpoints.log is an interrupted checkpoint
// write only under the same rule; otherwise the file was cut.
//
// This bounds what a disk-only attacker can slip in, and names it; only a
// checkpoint held outside the directory (an auditor's state, a witness)
// proves that no newer checkpoint was removed.
func VerifyDir(ctx context.Context, dir string, opts VerifyOptions) (*VerifyReport, error) {
	start := time.Now()
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = defaultCheckpointInterval
	}
	vkey := opts.VerifierKey
	if vkey == "" {
		k, err := LoadVerifierKey(dir)
		if err != nil {
			return nil, &VerifyError{Seq: -1, File: "keys/" + verifierKeyFile, Reason: err.Error()}
		}
		vkey = k
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, &VerifyError{Seq: -1, File: "keys/" + verifierKeyFile, Reason: "not a valid note verifier key: " + err.Error()}
	}
	if err := checkSignerMatches(dir, verifier); err != nil {
		return nil, err
	}
	cps, torn, err := readCheckpoints(filepath.Join(dir, checkpointsFile), verifier)
	if err != nil {
		return nil, err
	}
	v, err := newDirVerifier(dir, cps, opts)
	if err != nil {
		return nil, err
	}
	defer v.close()
	v.tornCP = torn
	rep, err := v.run(ctx)
	if err != nil {
		return nil, err
	}
	rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		rep.Latest = cps[len(cps)-1]
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func checkSignerMatches(dir string, v note.Verifier) error {
	skey, err := os.ReadFile(filepath.Join(dir, "keys", signerKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil // an auditor's copy need not hold the private key
	}
	if err != nil {
		return &VerifyError{Seq: -1, File: "keys/" + signerKeyFile, Reason: err.Error()}
	}
	signer, err := note.NewSigner(string(bytes.TrimSpace(skey)))
	if err != nil || signer.KeyHash() != v.KeyHash() || signer.Name() != v.Name() {
		return &VerifyError{Seq: -1, File: "keys/" + signerKeyFile, Reason: "signing key is damaged or does not match the verifier key"}
	}
	return nil
}

// tornFrame is a partial final frame of checkpoints.log: it starts at off
// and size bytes of it are in the file.
type tornFrame struct {
	off, size int64
}

// readCheckpoints returns the checkpoints in path, oldest first, and the
// partial final frame after them, if any.
func readCheckpoints(path string, v note.Verifier) ([]*stele.Checkpoint, *tornFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: err.Error()}
	}
	defer f.Close()
	sc, err := newFrameScanner(f, 0, 64<<10)
	if err != nil {
		return nil, nil, err
	}
	var out []*stele.Checkpoint
	var torn *tornFrame
	for i := 0; ; i++ {
		p, off, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTorn) {
			damaged, derr := lengthDamaged(f, off, maxCheckpointFrame)
			if derr != nil {
				return nil, nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: derr.Error()}
			}
			if !damaged {
				// Cut short by a crash, or by someone cutting the file:
				// the caller tells them apart by what follows the last
				// whole checkpoint in records.log.
				torn = &tornFrame{off: off, size: sc.fileSz - off}
				break
			}
			err = errors.New("frame length runs past the end of the file, yet checkpoints follow it")
		}
		if err != nil {
			return nil, nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d at offset %d: %v", i, off, err)}
		}
		cp, err := stele.OpenCheckpoint(p, v)
		if err != nil {
			return nil, nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d at offset %d: %v", i, off, err)}
		}
		if n := len(out); n > 0 && cp.Size < out[n-1].Size {
			return nil, nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d has size %d, smaller than the %d before it", i, cp.Size, out[n-1].Size)}
		}
		out = append(out, cp)
	}
	return out, torn, nil
}

type dirVerifier struct {
	dir string
	// batchesFrom is where batch trailers start in records.log (FORMAT),
	// -1 for a log written before them.
	batchesFrom int64
	opts        VerifyOptions
	cps         []*stele.Checkpoint
	rec         *os.File
	idx         *bufio.Reader
	idxF        *os.File
	levels      []*bufio.Reader
	files       []*os.File
	failed      *VerifyError
	tornCP      *tornFrame
}

func newDirVerifier(dir string, cps []*stele.Checkpoint, opts VerifyOptions) (*dirVerifier, error) {
	v := &dirVerifier{dir: dir, opts: opts, cps: cps}
	var err error
	if v.batchesFrom, err = readBatchesFrom(vfs.Default, dir); err != nil {
		return nil, &VerifyError{Seq: -1, File: formatFile, Reason: err.Error()}
	}
	if v.rec, err = os.Open(filepath.Join(dir, recordsFile)); err != nil {
		return nil, &VerifyError{Seq: -1, File: recordsFile, Reason: err.Error()}
	}
	if v.idxF, err = os.Open(filepath.Join(dir, indexFile)); err != nil {
		v.close()
		return nil, &VerifyError{Seq: -1, File: indexFile, Reason: err.Error()}
	}
	v.idx = bufio.NewReaderSize(v.idxF, 256<<10)
	for level := 0; level < 64; level++ {
		f, err := os.Open(filepath.Join(dir, treeDir, fmt.Sprintf("L%02d", level)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			v.close()
			return nil, &VerifyError{Seq: -1, File: treeDir, Reason: err.Error()}
		}
		v.files = append(v.files, f)
		v.levels = append(v.levels, bufio.NewReaderSize(f, 64<<10))
	}
	return v, nil
}

func (v *dirVerifier) close() {
	for _, f := range append(v.files, v.rec, v.idxF) {
		if f != nil {
			f.Close()
		}
	}
}

// verifyChunk is a run of consecutive frames whose checksums, seq headers
// and leaf hashes have been checked by the hashing stage.
type verifyChunk struct {
	first   uint64
	offsets []int64
	ends    []int64
	leaves  []byte // hashSize per frame
	// err ends the stream: a bad frame at seq first+len(offsets)+pending,
	// or io.EOF.
	err     error
	errOff  int64
	tornEnd bool
	// tail is what the chunk's records from the stage's tailFrom on
	// contribute to the judgement of the unsigned tail.
	tail tailTimes
	// pending records of a batch whose trailer never came precede the end
	// of the stream, from offset pendingOff: an unacknowledged batch that
	// the next start cuts, never part of the log.
	pending    uint64
	pendingOff int64
	// bytes is where the last frame passed on (a record or a trailer) ends.
	bytes int64
	// errTrailer: the bad frame is shaped like a batch trailer, so the
	// fault is reported at the batch's last record.
	errTrailer bool
	// trailers are the batch trailers in the chunk, checked against the
	// rebuilt tree when it reaches their size.
	trailers []trailer
}

// tailTimes gathers the recorded_at stamps of the records past the latest
// checkpoint.
type tailTimes struct {
	first, last time.Time // earliest and latest recorded_at
	unstamped   int64     // first seq without a recorded_at, or -1
}

func (t *tailTimes) add(seq uint64, at time.Time) {
	if at.IsZero() {
		if t.unstamped < 0 {
			t.unstamped = int64(seq)
		}
		return
	}
	if t.first.IsZero() || at.Before(t.first) {
		t.first = at
	}
	if at.After(t.last) {
		t.last = at
	}
}

func (t *tailTimes) merge(o tailTimes) {
	if o.unstamped >= 0 && (t.unstamped < 0 || o.unstamped < t.unstamped) {
		t.unstamped = o.unstamped
	}
	if !o.first.IsZero() {
		t.add(0, o.first)
		t.add(0, o.last)
	}
}

const verifyChunkFrames = 4096

// hashBatch holds the records of a batch until its trailer is read.
type hashBatch struct {
	offsets, ends []int64
	leaves        []byte
}

// hashFrames is the first stage of verification: it reads records.log in
// order, checks each frame's checksum and seq header and computes its leaf
// hash, and notes the recorded_at of records from seq tailFrom on. It runs
// on its own core while the caller rebuilds the tree. From batchesFrom on
// (-1: never) records are passed on only once their batch's trailer is
// read, and each trailer must name the log's size after it.
func hashFrames(ctx context.Context, sc *frameScanner, limit, tailFrom uint64, batchesFrom int64, out chan<- *verifyChunk) {
	defer close(out)
	h := sha256.New()
	var seq uint64 // records passed on
	var b hashBatch
	seen := func() uint64 { return seq + uint64(len(b.offsets)) }
	for {
		c := &verifyChunk{first: seq, leaves: make([]byte, 0, verifyChunkFrames*hashSize), tail: tailTimes{unstamped: -1}}
		for len(c.offsets) < verifyChunkFrames {
			if limit != 0 && seq >= limit {
				c.err = io.EOF
				break
			}
			p, off, err := sc.next()
			if err != nil {
				c.err, c.errOff, c.tornEnd = err, off, errors.Is(err, errTorn)
				c.errTrailer = trailerShaped(sc.f, off)
				break
			}
			if isTrailer(p) {
				t, err := parseTrailer(p)
				if err == nil && t.size != seen() {
					err = fmt.Errorf("batch trailer at offset %d says the log holds %d records, %d precede it", off, t.size, seen())
				}
				if err != nil {
					c.err, c.errOff, c.errTrailer = err, off, true
					break
				}
				t.root = bytes.Clone(t.root)
				c.trailers = append(c.trailers, t)
				c.offsets = append(c.offsets, b.offsets...)
				c.ends = append(c.ends, b.ends...)
				c.leaves = append(c.leaves, b.leaves...)
				seq = seen()
				c.bytes = off + frameHeader + int64(len(p))
				b.offsets, b.ends, b.leaves = b.offsets[:0], b.ends[:0], b.leaves[:0]
				batchesFrom = 0 // once trailers appear, every batch has one
				continue
			}
			got, err := record.Seq(p)
			if err == nil && got != seen() {
				err = fmt.Errorf("offset %d holds the record for seq %d: a record is missing, inserted or out of order", off, got)
			}
			if err != nil {
				c.err, c.errOff = err, off
				break
			}
			if seen() >= tailFrom {
				at, _ := record.RecordedAt(p) // the header was checked by record.Seq
				c.tail.add(seen(), at)
			}
			if batchesFrom >= 0 && off >= batchesFrom {
				b.offsets = append(b.offsets, off)
				b.ends = append(b.ends, off+frameHeader+int64(len(p)))
				b.leaves = appendLeafHash(b.leaves, h, p)
				continue
			}
			c.offsets = append(c.offsets, off)
			c.ends = append(c.ends, off+frameHeader+int64(len(p)))
			c.leaves = appendLeafHash(c.leaves, h, p)
			c.bytes = off + frameHeader + int64(len(p))
			seq++
		}
		if c.err != nil && len(b.offsets) > 0 {
			c.pending, c.pendingOff = uint64(len(b.offsets)), b.offsets[0]
		}
		if ctx.Err() != nil {
			c.err = ctx.Err()
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
		if c.err != nil {
			return
		}
	}
}

func (v *dirVerifier) run(ctx context.Context) (*VerifyReport, error) {
	st, err := v.rec.Stat()
	if err != nil {
		return nil, err
	}
	total := st.Size()
	sc, err := newFrameScanner(v.rec, 0, 4<<20)
	if err != nil {
		return nil, err
	}
	var covered uint64
	if len(v.cps) > 0 {
		covered = v.cps[len(v.cps)-1].Size
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *verifyChunk, 4)
	go hashFrames(ctx, sc, v.opts.Size, covered, v.batchesFrom, chunks)
	tail := tailTimes{unstamped: -1}

	nh := newNodeHasher()
	rng := (&compact.RangeFactory{Hash: nh.hashChildren}).NewEmptyRange(0)
	stored := make([]byte, hashSize)
	var ob [8]byte
	cpi := 0
	rep := &VerifyReport{}
	visit := func(id compact.NodeID, hash []byte) { v.checkNode(id, hash, stored) }
	checkpointsAt := func(size uint64) error {
		for cpi < len(v.cps) && v.cps[cpi].Size == size {
			if err := v.checkRoot(rng, v.cps[cpi], cpi); err != nil {
				return err
			}
			cpi++
		}
		return nil
	}
	var seq uint64
	endAt := uint64(0) // where the log ends for the checkpoint check; seq unless set
	endSet := false
	for c := range chunks {
		for i, off := range c.offsets {
			if err := checkpointsAt(seq); err != nil {
				return nil, err
			}
			if _, err := io.ReadFull(v.idx, ob[:]); err != nil || int64(binary.LittleEndian.Uint64(ob[:])) != off {
				return nil, &VerifyError{Seq: int64(seq), File: indexFile, Reason: fmt.Sprintf("entry does not point at offset %d", off)}
			}
			// The range keeps the slice it is given; the chunk's buffer is
			// never reused, so sub-slices are safe.
			if err := rng.Append(c.leaves[i*hashSize:(i+1)*hashSize:(i+1)*hashSize], visit); err != nil {
				return nil, err
			}
			if v.failed != nil {
				return nil, v.failed
			}
			rep.Bytes = c.ends[i]
			seq++
			// Checkpoints first: a forged record under a rewritten tree is
			// reported against the checkpoints that bracket it.
			if err := checkpointsAt(seq); err != nil {
				return nil, err
			}
			for len(c.trailers) > 0 && c.trailers[0].size <= seq {
				if err := v.checkTrailer(rng, c.trailers[0], seq); err != nil {
					return nil, err
				}
				c.trailers = c.trailers[1:]
			}
		}
		tail.merge(c.tail)
		rep.Bytes = max(rep.Bytes, c.bytes)
		if v.opts.Progress != nil {
			v.opts.Progress(rep.Bytes, total)
		}
		at := seq + c.pending // the position of the bad frame
		tornFrom := c.errOff
		if c.pending > 0 {
			tornFrom = c.pendingOff
		}
		switch {
		case c.err == nil:
			continue
		case errors.Is(c.err, io.EOF):
			switch {
			case c.pending == 0:
			case seq >= covered:
				// A whole batch's records with no trailer: its write was
				// cut short before the trailer reached the disk, so it was
				// never acknowledged and the next start cuts it.
				rep.TornTail = total - tornFrom
			case at < covered:
				endAt, endSet = at, true // the end check below names the first missing seq
			default:
				return nil, &VerifyError{Seq: int64(at) - 1, File: recordsFile, Reason: fmt.Sprintf("the batch ending at seq %d has no trailer, yet a signed checkpoint covers it", at-1)}
			}
		case seq >= covered && (c.tornEnd || errors.Is(c.err, errChecksum)) && !goodFrameFollows(v.rec, c.errOff, at):
			// The same rule recovery applies: a bad final frame past the last
			// checkpoint, with no good record after it, is an interrupted
			// write (ext4 may leave zeros after a power loss) that the next
			// start cuts off.
			rep.TornTail = total - tornFrom
		case errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded):
			return nil, c.err
		default:
			if c.errTrailer && at > 0 {
				return nil, &VerifyError{Seq: int64(at) - 1, File: recordsFile, Reason: fmt.Sprintf("batch trailer after seq %d at offset %d: %v", at-1, c.errOff, c.err)}
			}
			return nil, &VerifyError{Seq: int64(at), File: recordsFile, Reason: fmt.Sprintf("frame at offset %d: %v", c.errOff, c.err)}
		}
		break
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Records = seq
	if err := checkpointsAt(seq); err != nil {
		return nil, err
	}
	if !endSet {
		endAt = seq
	}
	if v.opts.Size == 0 && cpi < len(v.cps) {
		return nil, &VerifyError{Seq: int64(endAt), File: recordsFile, Reason: fmt.Sprintf("log ends after %d records but checkpoint #%d covers %d: records from seq %d on are missing", endAt, cpi, v.cps[cpi].Size, endAt)}
	}
	if err := v.judgeTail(rep, covered, tail); err != nil {
		return nil, err
	}
	if v.opts.Progress != nil {
		v.opts.Progress(total, total)
	}
	return rep, nil
}

// checkNode compares a recomputed node with the stored one; the first
// mismatch is kept and reported at the leaf that completed the node.
func (v *dirVerifier) checkNode(id compact.NodeID, hash, buf []byte) {
	if v.failed != nil {
		return
	}
	first, _ := id.Coverage()
	file := func() string { return fmt.Sprintf("%s/L%02d", treeDir, id.Level) }
	if int(id.Level) >= len(v.levels) {
		v.failed = &VerifyError{Seq: int64(first), File: file(), Reason: "tree level file is missing"}
		return
	}
	if _, err := io.ReadFull(v.levels[id.Level], buf); err != nil {
		v.failed = &VerifyError{Seq: int64(first), File: file(), Reason: fmt.Sprintf("node %d is missing: %v", id.Index, err)}
		return
	}
	if !bytes.Equal(buf, hash) {
		reason := fmt.Sprintf("stored node %d differs from the hash recomputed from records.log", id.Index)
		if id.Level == 0 {
			reason = "stored leaf hash differs from the hash of the record in records.log"
		}
		v.failed = &VerifyError{Seq: int64(first), File: file(), Reason: reason}
	}
}

// trailerShaped reports whether the damaged frame at off has a batch
// trailer's tag and length, so a fault in a trailer is reported at its
// batch's last record rather than at the record after it.
func trailerShaped(f readFile, off int64) bool {
	var b [frameHeader + trailerFixed]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return false
	}
	p := b[frameHeader:]
	n := int(binary.LittleEndian.Uint32(b[0:4]))
	return p[0] == trailerTag && n == trailerFixed+int(binary.BigEndian.Uint16(p[10+hashSize:trailerFixed]))
}

// checkTrailer compares a batch trailer's root with the tree rebuilt up to
// its size.
func (v *dirVerifier) checkTrailer(rng *compact.Range, t trailer, seq uint64) error {
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return err
	}
	if t.size != seq || !bytes.Equal(root, t.root) {
		return &VerifyError{Seq: int64(t.size) - 1, File: recordsFile, Reason: fmt.Sprintf("the batch trailer after seq %d names a tree root the records up to it do not give", t.size-1)}
	}
	return nil
}

func (v *dirVerifier) checkRoot(rng *compact.Range, cp *stele.Checkpoint, i int) error {
	var root []byte
	var err error
	if rng.End() == 0 {
		root = emptyRoot()
	} else if root, err = rng.GetRootHash(nil); err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Root) {
		first := uint64(0)
		if i > 0 {
			first = v.cps[i-1].Size
		}
		return &VerifyError{Seq: int64(first), File: recordsFile, Reason: fmt.Sprintf("records up to seq %d do not match signed checkpoint #%d (size %d); the first bad seq is at or after %d", cp.Size-1, i, cp.Size, first)}
	}
	return nil
}

// LatestCheckpointInDir returns the newest checkpoint stored in a data
// directory, its signature checked with the directory's verifier key,
// without opening the log: a server that refuses to open a tampered store
// can still show auditors the last state it signed.
func LatestCheckpointInDir(dir string) (*stele.Checkpoint, error) {
	vkey, err := LoadVerifierKey(dir)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	cps, _, err := readCheckpoints(filepath.Join(dir, checkpointsFile), v)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint in %s", ErrNotFound, dir)
	}
	return cps[len(cps)-1], nil
}

// judgeTail applies VerifyDir's rule to the records past the latest
// checkpoint (covered records are signed) and to a partial final frame of
// checkpoints.log.
func (v *dirVerifier) judgeTail(rep *VerifyReport, covered uint64, tail tailTimes) error {
	if v.tornCP != nil {
		rep.TornCheckpoint = v.tornCP.size
	}
	if rep.Records <= covered {
		return nil
	}
	n := rep.Records - covered
	rep.Unproven = n
	if !tail.first.IsZero() {
		rep.UnprovenSpan = tail.last.Sub(tail.first)
	}
	if len(v.cps) == 0 {
		return &VerifyError{Seq: 0, File: checkpointsFile, Kind: ErrUnproven, Reason: fmt.Sprintf(
			"holds no checkpoint, yet records.log holds %d records: a store signs a checkpoint of its empty log when it is created, so checkpoints.log was emptied or replaced, and nothing proves any record", n)}
	}
	if n <= v.opts.AllowUnproven {
		return nil
	}
	interval := v.opts.CheckpointInterval
	limit, window := maxInFlight(interval), interval+inFlightGrace
	var why string
	switch {
	case n > limit:
		why = fmt.Sprintf("more than the %d a crash can leave unsigned with checkpoints every %s", limit, interval)
	case tail.unstamped >= 0:
		why = fmt.Sprintf("seq %d has no recorded_at, which the writer stamps on every record", tail.unstamped)
	case rep.UnprovenSpan > window:
		why = fmt.Sprintf("appended over %s (recorded_at %s to %s), while the writer signs every %s, so a crash leaves at most %s unsigned",
			rep.UnprovenSpan.Round(time.Millisecond), tail.first.Format(time.RFC3339Nano), tail.last.Format(time.RFC3339Nano), interval, window)
	default:
		return nil // an in-flight tail: the next start signs it
	}
	cut := "checkpoints.log lost its newest checkpoints"
	if t := v.tornCP; t != nil {
		cut = fmt.Sprintf("checkpoints.log was cut inside the frame at offset %d", t.off)
	}
	cp := v.cps[len(v.cps)-1]
	return &VerifyError{Seq: int64(covered), File: checkpointsFile, Kind: ErrUnproven, Reason: fmt.Sprintf(
		"records %d to %d (%d records) follow the latest checkpoint (size %d) and no signature covers them: %s. "+
			"Either %s, or the records were appended by someone without the signing key. "+
			"If the server was stopped uncleanly and has not run since, and you expect this, accept them with --allow-unproven %d "+
			"(or set --checkpoint-interval to the server's checkpoint_interval)",
		covered, rep.Records-1, n, cp.Size, why, cut, n)}
}
