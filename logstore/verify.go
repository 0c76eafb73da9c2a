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
	"github.com/stele/stele/record"
)

// VerifyError pinpoints what verification found wrong. Seq is the first bad
// record, or -1 when the fault is not in a record (a checkpoint, a key).
type VerifyError struct {
	Seq    int64
	File   string
	Reason string
}

func (e *VerifyError) Error() string {
	if e.Seq >= 0 {
		return fmt.Sprintf("first bad seq %d (%s): %s", e.Seq, e.File, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// Unwrap lets errors.Is(err, ErrTampered) match.
func (e *VerifyError) Unwrap() error { return ErrTampered }

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
	Elapsed  time.Duration
}

// VerifyDir checks a data directory offline, independent of any running
// server: every frame's checksum and position, every leaf and tree node,
// every record index entry, and every checkpoint's signature and root.
func VerifyDir(ctx context.Context, dir string, opts VerifyOptions) (*VerifyReport, error) {
	start := time.Now()
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
	cps, err := readCheckpoints(filepath.Join(dir, checkpointsFile), verifier)
	if err != nil {
		return nil, err
	}
	v, err := newDirVerifier(dir, cps, opts)
	if err != nil {
		return nil, err
	}
	defer v.close()
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

func readCheckpoints(path string, v note.Verifier) ([]*stele.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: err.Error()}
	}
	defer f.Close()
	sc, err := newFrameScanner(f, 0, 64<<10)
	if err != nil {
		return nil, err
	}
	var out []*stele.Checkpoint
	for i := 0; ; i++ {
		p, off, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTorn) {
			damaged, derr := lengthDamaged(f, off, maxCheckpointFrame)
			if derr != nil {
				return nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: derr.Error()}
			}
			if !damaged {
				break // a torn final checkpoint was never relied on
			}
			err = errors.New("frame length runs past the end of the file, yet checkpoints follow it")
		}
		if err != nil {
			return nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d at offset %d: %v", i, off, err)}
		}
		cp, err := stele.OpenCheckpoint(p, v)
		if err != nil {
			return nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d at offset %d: %v", i, off, err)}
		}
		if n := len(out); n > 0 && cp.Size < out[n-1].Size {
			return nil, &VerifyError{Seq: -1, File: checkpointsFile, Reason: fmt.Sprintf("checkpoint #%d has size %d, smaller than the %d before it", i, cp.Size, out[n-1].Size)}
		}
		out = append(out, cp)
	}
	return out, nil
}

type dirVerifier struct {
	dir    string
	opts   VerifyOptions
	cps    []*stele.Checkpoint
	rec    *os.File
	idx    *bufio.Reader
	idxF   *os.File
	levels []*bufio.Reader
	files  []*os.File
	failed *VerifyError
}

func newDirVerifier(dir string, cps []*stele.Checkpoint, opts VerifyOptions) (*dirVerifier, error) {
	v := &dirVerifier{dir: dir, opts: opts, cps: cps}
	var err error
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
	// err ends the stream: a bad frame at seq first+len(offsets), or io.EOF.
	err     error
	errOff  int64
	tornEnd bool
}

const verifyChunkFrames = 4096

// hashFrames is the first stage of verification: it reads records.log in
// order, checks each frame's checksum and seq header and computes its leaf
// hash. It runs on its own core while the caller rebuilds the tree.
func hashFrames(ctx context.Context, sc *frameScanner, limit uint64, out chan<- *verifyChunk) {
	defer close(out)
	h := sha256.New()
	var seq uint64
	for {
		c := &verifyChunk{first: seq, leaves: make([]byte, 0, verifyChunkFrames*hashSize)}
		for len(c.offsets) < verifyChunkFrames {
			if limit != 0 && seq >= limit {
				c.err = io.EOF
				break
			}
			p, off, err := sc.next()
			if err != nil {
				c.err, c.errOff, c.tornEnd = err, off, errors.Is(err, errTorn)
				break
			}
			got, err := record.Seq(p)
			if err == nil && got != seq {
				err = fmt.Errorf("offset %d holds the record for seq %d: a record is missing, inserted or out of order", off, got)
			}
			if err != nil {
				c.err, c.errOff = err, off
				break
			}
			c.offsets = append(c.offsets, off)
			c.ends = append(c.ends, off+frameHeader+int64(len(p)))
			c.leaves = appendLeafHash(c.leaves, h, p)
			seq++
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
	go hashFrames(ctx, sc, v.opts.Size, chunks)

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
		}
		if v.opts.Progress != nil {
			v.opts.Progress(rep.Bytes, total)
		}
		switch {
		case c.err == nil:
			continue
		case errors.Is(c.err, io.EOF):
		case seq >= covered && (c.tornEnd || errors.Is(c.err, errChecksum)) && !validFrameFollows(v.rec, c.errOff, seq+1):
			// The same rule recovery applies: a bad final frame past the last
			// checkpoint, with no good record after it, is an interrupted
			// write (ext4 may leave zeros after a power loss) that the next
			// start cuts off.
			rep.TornTail = total - c.errOff
		case errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded):
			return nil, c.err
		default:
			return nil, &VerifyError{Seq: int64(seq), File: recordsFile, Reason: fmt.Sprintf("frame at offset %d: %v", c.errOff, c.err)}
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
	if v.opts.Size == 0 && cpi < len(v.cps) {
		return nil, &VerifyError{Seq: int64(seq), File: recordsFile, Reason: fmt.Sprintf("log ends after %d records but checkpoint #%d covers %d: records from seq %d on are missing", seq, cpi, v.cps[cpi].Size, seq)}
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
	cps, err := readCheckpoints(filepath.Join(dir, checkpointsFile), v)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint in %s", ErrNotFound, dir)
	}
	return cps[len(cps)-1], nil
}
