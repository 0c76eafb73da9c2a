// Package atomicfile writes small files durably: Write replaces a file so
// that a crash or a power cut leaves either the whole old file or the whole
// new one, and a reader never sees a fragment; WriteSync creates one and
// fsyncs it. Both go through a vfs.FS, so the stores that use them can be
// tested against injected disk faults.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stele/stele/internal/vfs"
)

// Write replaces path with data on the operating system's file system.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFS(vfs.Default, path, data, perm)
}

// WriteFS replaces path with data: a temp file in the same directory is
// written, fsync'd and renamed over path, then the directory is fsync'd so
// the rename itself survives a power cut. The temp file never outlives a
// failure.
func WriteFS(fsys vfs.FS, path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, tmpName, err := createTemp(fsys, path)
	if err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			fsys.Remove(tmpName)
		}
	}()
	// Chmod, not the create mode: the umask must not change what the
	// caller asked for.
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("replace %s: write: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("replace %s: sync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if err = fsys.Rename(tmpName, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return vfs.SyncDir(fsys, dir)
}

func createTemp(fsys vfs.FS, path string) (vfs.File, string, error) {
	base := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	seed := time.Now().UnixNano()
	for i := range 100 {
		name := base + strconv.FormatInt(seed+int64(i), 36)
		f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", fmt.Errorf("no free temp name next to %s", path)
}

// Mode says what WriteSync does when the file exists.
type Mode int

const (
	// Exclusive fails with fs.ErrExist: the file is new or nothing is
	// written (keys, quarantined tails).
	Exclusive Mode = iota
	// Truncate overwrites it in place: for files nobody reads until a
	// later rename or pointer makes them live.
	Truncate
)

// WriteSync writes data to path and fsyncs it; it does not sync the
// directory (callers creating several files sync it once, with SyncDir).
func WriteSync(fsys vfs.FS, path string, data []byte, perm os.FileMode, mode Mode) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if mode == Truncate {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := fsys.OpenFile(path, flag, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// SyncDir makes the renames and removals in dir durable.
func SyncDir(dir string) error { return vfs.SyncDir(vfs.Default, dir) }
