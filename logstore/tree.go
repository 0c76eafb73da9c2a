package logstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/stele/stele/internal/vfs"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

const hashSize = sha256.Size

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// HashLeaf returns the RFC 6962 leaf hash of stored record bytes.
func HashLeaf(stored []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(stored)
}

func appendLeafHash(dst []byte, h hashWriter, stored []byte) []byte {
	h.Reset()
	h.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
	h.Write(stored)
	return h.Sum(dst)
}

type hashWriter interface {
	Reset()
	Write([]byte) (int, error)
	Sum([]byte) []byte
}

// tree keeps every perfect subtree hash on disk, one file per level, so any
// inclusion or consistency proof is a handful of positioned reads and start
// up needs no rebuild. The writer goroutine owns rng and counts; readers use
// only node(), which reads completed nodes.
type tree struct {
	fs     vfs.FS
	dir    string
	mu     sync.RWMutex // guards files
	files  []vfs.File
	counts []uint64 // nodes on disk per level; writer-owned
	rng    *compact.Range
}

func openTree(fsys vfs.FS, dir string) (*tree, error) {
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create tree directory: %w", err)
	}
	t := &tree{fs: fsys, dir: dir}
	for level := 0; level < 64; level++ {
		path := t.levelPath(level)
		if _, err := t.fs.Stat(path); err != nil {
			// Levels above a missing one are never opened here, so reset
			// would not cut them, and when the tree grows back into them
			// file() would append rebuilt nodes after their stale ones.
			for l := level + 1; l < 64; l++ {
				if err := t.fs.Remove(t.levelPath(l)); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.close()
					return nil, fmt.Errorf("remove orphaned tree level %d: %w", l, err)
				}
			}
			break
		}
		if _, err := t.file(level); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

func (t *tree) levelPath(level int) string {
	return filepath.Join(t.dir, fmt.Sprintf("L%02d", level))
}

// file returns the level's file, creating it when the tree first grows
// that tall.
func (t *tree) file(level int) (vfs.File, error) {
	t.mu.RLock()
	if level < len(t.files) {
		f := t.files[level]
		t.mu.RUnlock()
		return f, nil
	}
	t.mu.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.files) <= level {
		l := len(t.files)
		f, err := t.fs.OpenFile(t.levelPath(l), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open tree level %d: %w", l, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("stat tree level %d: %w", l, err)
		}
		t.files = append(t.files, f)
		t.counts = append(t.counts, uint64(st.Size())/hashSize)
	}
	return t.files[level], nil
}

// reset cuts every level to what a tree of size leaves holds and loads the
// compact range for [0,size). Nodes past size are dropped because they may
// be unsynced garbage after a crash; the caller re-appends those leaves.
func (t *tree) reset(size uint64) error {
	for level := range t.files {
		want := size >> uint(level)
		if t.counts[level] < want {
			return fmt.Errorf("tree level %d holds %d nodes, %d needed for %d leaves", level, t.counts[level], want, size)
		}
		if err := t.files[level].Truncate(int64(want) * hashSize); err != nil {
			return fmt.Errorf("truncate tree level %d: %w", level, err)
		}
		t.counts[level] = want
	}
	rng, err := t.rangeAt(size)
	if err != nil {
		return err
	}
	// Appends run on the writer goroutine only, so its range may reuse one
	// hash state; ranges built for readers use the stateless hasher.
	t.rng, err = (&compact.RangeFactory{Hash: newNodeHasher().hashChildren}).NewRange(0, size, rng.Hashes())
	return err
}

// rangeAt builds the compact range [0,size) from the stored perfect subtrees.
func (t *tree) rangeAt(size uint64) (*compact.Range, error) {
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := t.node(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return rangeFactory.NewRange(0, size, hashes)
}

// rootAt returns the root hash of the tree's first size leaves.
func (t *tree) rootAt(size uint64) ([]byte, error) {
	if size == 0 {
		return emptyRoot(), nil
	}
	rng, err := t.rangeAt(size)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

func (t *tree) node(id compact.NodeID) ([]byte, error) {
	f, err := t.existing(int(id.Level))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, hashSize)
	if _, err := f.ReadAt(buf, int64(id.Index)*hashSize); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read tree node level %d index %d: %w", id.Level, id.Index, err)
	}
	return buf, nil
}

func (t *tree) existing(level int) (vfs.File, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if level >= len(t.files) {
		return nil, fmt.Errorf("tree level %d does not exist", level)
	}
	return t.files[level], nil
}

// appendLeaves extends the tree and writes every completed node.
func (t *tree) appendLeaves(leafHashes []byte) error {
	pending, err := t.extend(leafHashes)
	if err != nil {
		return err
	}
	return t.writeNodes(pending)
}

// extend appends leaves to the in-memory range only and returns the
// completed nodes by level, for writeNodes. The writer extends first so the
// new root is known before the batch (and its trailer, which carries the
// root) is written, and writes the nodes once the batch is durable.
func (t *tree) extend(leafHashes []byte) (map[uint][]byte, error) {
	pending := make(map[uint][]byte, 8)
	visit := func(id compact.NodeID, hash []byte) {
		pending[id.Level] = append(pending[id.Level], hash...)
	}
	// The compact range keeps references to the hashes it is given, and
	// callers reuse their buffers.
	leafHashes = bytes.Clone(leafHashes)
	for off := 0; off < len(leafHashes); off += hashSize {
		if err := t.rng.Append(leafHashes[off:off+hashSize:off+hashSize], visit); err != nil {
			return nil, fmt.Errorf("extend tree: %w", err)
		}
	}
	return pending, nil
}

// writeNodes writes nodes extend completed.
func (t *tree) writeNodes(pending map[uint][]byte) error {
	for level, buf := range pending {
		f, err := t.file(int(level))
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(buf, int64(t.counts[level])*hashSize); err != nil {
			return fmt.Errorf("write tree level %d: %w", level, err)
		}
		t.counts[level] += uint64(len(buf) / hashSize)
	}
	return nil
}

// treeMark is the tree as it was before a batch, for rollback.
type treeMark struct {
	end    uint64
	hashes [][]byte
	counts []uint64
}

func (t *tree) mark() treeMark {
	return treeMark{end: t.rng.End(), hashes: slices.Clone(t.rng.Hashes()), counts: slices.Clone(t.counts)}
}

// rollback returns the tree to m: a batch that was not made durable is
// forgotten, in memory and in the level files.
func (t *tree) rollback(m treeMark) error {
	rng, err := (&compact.RangeFactory{Hash: newNodeHasher().hashChildren}).NewRange(0, m.end, m.hashes)
	if err != nil {
		return fmt.Errorf("roll back tree: %w", err)
	}
	t.rng = rng
	var errs []error
	for level := range t.files {
		want := uint64(0)
		if level < len(m.counts) {
			want = m.counts[level]
		}
		if t.counts[level] != want {
			if err := t.files[level].Truncate(int64(want) * hashSize); err != nil {
				errs = append(errs, fmt.Errorf("truncate tree level %d: %w", level, err))
				continue
			}
			t.counts[level] = want
		}
	}
	return errors.Join(errs...)
}

func (t *tree) root() ([]byte, error) {
	if t.rng.End() == 0 {
		return emptyRoot(), nil
	}
	return t.rng.GetRootHash(nil)
}

func (t *tree) sync() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// One file per level, some twenty for a million records: fsynced one
	// after another they cost a journal commit each, fsynced at once they
	// share them.
	errs := make([]error, len(t.files))
	var wg sync.WaitGroup
	for level, f := range t.files {
		wg.Go(func() {
			if err := f.Sync(); err != nil {
				errs[level] = fmt.Errorf("sync tree level %d: %w", level, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *tree) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first error
	for _, f := range t.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	t.files = nil
	return first
}

// proofHashes fetches the nodes a proof needs and folds in its ephemeral node.
func (t *tree) proofHashes(nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := t.node(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

func (t *tree) inclusionProof(index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return t.proofHashes(nodes)
}

func (t *tree) consistencyProof(from, to uint64) ([][]byte, error) {
	if from == 0 {
		// Every tree extends the empty one, with an empty proof (merkle
		// v0.0.3 refuses size 0 as meaningless; the API answers it).
		return [][]byte{}, nil
	}
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return nil, err
	}
	return t.proofHashes(nodes)
}

// nodeHasher computes RFC 6962 interior node hashes with one reused SHA-256
// state; it is for a single goroutine (the writer, or a verifier).
type nodeHasher struct {
	h hashWriter
}

func newNodeHasher() *nodeHasher { return &nodeHasher{h: sha256.New()} }

func (n *nodeHasher) hashChildren(l, r []byte) []byte {
	n.h.Reset()
	n.h.Write([]byte{rfc6962.RFC6962NodeHashPrefix})
	n.h.Write(l)
	n.h.Write(r)
	return n.h.Sum(make([]byte, 0, hashSize))
}

func emptyRoot() []byte { return rfc6962.DefaultHasher.EmptyRoot() }
