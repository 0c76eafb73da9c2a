package logstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/vfs"
)

// BatchSealer authenticates each durable batch: the trailer written after
// a group commit's records carries what Seal returns for the log's size and
// root after the batch, and recovery adopts a batch only if Verify accepts
// it. It is defined here, by its consumer; a KMS-backed implementation
// makes a forged batch appended by someone with only the disk detectable.
// Without one the authenticator is empty and accepted: the trailer still
// makes the batch the unit recovery keeps or cuts.
type BatchSealer interface {
	Seal(ctx context.Context, size uint64, root []byte) ([]byte, error)
	Verify(ctx context.Context, size uint64, root, auth []byte) error
}

// A trailer frame's payload starts with trailerTag, a byte no record
// encoding starts with (record.FormatV1 is 1), so one scan tells records
// and trailers apart.
const (
	trailerTag     byte = 0xB7
	trailerVersion byte = 1
	trailerFixed        = 2 + 8 + hashSize + 2
	maxAuthLen          = 4096
)

type trailer struct {
	size uint64
	root []byte
	auth []byte
}

func isTrailer(p []byte) bool { return len(p) > 0 && p[0] == trailerTag }

func appendTrailer(dst []byte, t trailer) []byte {
	dst = append(dst, trailerTag, trailerVersion)
	dst = binary.BigEndian.AppendUint64(dst, t.size)
	dst = append(dst, t.root...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.auth)))
	return append(dst, t.auth...)
}

func parseTrailer(p []byte) (trailer, error) {
	if len(p) < trailerFixed || p[0] != trailerTag {
		return trailer{}, fmt.Errorf("batch trailer is %d bytes, shorter than its %d-byte fixed part", len(p), trailerFixed)
	}
	if p[1] != trailerVersion {
		return trailer{}, fmt.Errorf("batch trailer version %d unknown (this build reads %d)", p[1], trailerVersion)
	}
	t := trailer{size: binary.BigEndian.Uint64(p[2:10]), root: p[10 : 10+hashSize]}
	n := int(binary.BigEndian.Uint16(p[10+hashSize : trailerFixed]))
	if len(p) != trailerFixed+n {
		return trailer{}, fmt.Errorf("batch trailer holds %d bytes after its fixed part, its length field says %d", len(p)-trailerFixed, n)
	}
	t.auth = p[trailerFixed:]
	return t, nil
}

// formatFile records that records.log is written in batches with trailers,
// and from which offset: the records before it were written by a version
// without trailers and are adopted as they are (legacy), every record
// after it only with its batch's trailer.
const formatFile = "FORMAT"

const formatPrefix = "stele-log 2 batches-from "

// readBatchesFrom returns the offset batches with trailers start at, or -1
// for a data directory that never had one (legacy).
func readBatchesFrom(fsys vfs.FS, dir string) (int64, error) {
	b, err := vfs.ReadFile(fsys, filepath.Join(dir, formatFile))
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", formatFile, err)
	}
	s := strings.TrimSpace(string(b))
	off, err := strconv.ParseInt(strings.TrimPrefix(s, formatPrefix), 10, 64)
	if !strings.HasPrefix(s, formatPrefix) || err != nil || off < 0 {
		return 0, fmt.Errorf("%w: %s holds %q, want %q followed by an offset", ErrTampered, formatFile, s, formatPrefix)
	}
	return off, nil
}

func writeBatchesFrom(fsys vfs.FS, dir string, off int64) error {
	return atomicfile.WriteFS(fsys, filepath.Join(dir, formatFile), []byte(formatPrefix+strconv.FormatInt(off, 10)+"\n"), 0o644)
}

// ErrLocked: another process or Store holds the data directory.
var ErrLocked = errors.New("data directory in use")

// lockFile is the lock file inside the data directory.
const lockFile = "LOCK"

// DirLock is a held lock on a data directory: while it is held no other
// Store (in this process or another) opens the directory, because two
// writers would interleave frames.
type DirLock struct {
	dir string
	c   io.Closer
}

// LockDir takes the data directory's lock, for a caller that does more
// than open the log while holding it (cmd/stele's serve, reindex, keys)
// and passes it on in Options.Lock.
func LockDir(fsys vfs.FS, dir string) (*DirLock, error) {
	fsys = vfs.Or(fsys)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	c, err := fsys.Lock(path)
	if errors.Is(err, vfs.ErrLocked) {
		return nil, fmt.Errorf("%w: data directory %s is in use by another stele process (it holds %s); stop it first", ErrLocked, dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return &DirLock{dir: dir, c: c}, nil
}

// Dir is the locked directory.
func (l *DirLock) Dir() string { return l.dir }

// Close releases the lock.
func (l *DirLock) Close() error { return l.c.Close() }

func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}
