package vfs

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Op is a kind of file-system operation a fault can hit.
type Op int

const (
	OpWrite    Op = iota + 1 // Write and WriteAt
	OpSync                   // Sync and SyncData (of files and directories)
	OpTruncate               // File.Truncate
	OpRename                 // FS.Rename (matched on the old name)
	OpRemove                 // FS.Remove and FS.RemoveAll
	OpCreate                 // OpenFile with O_CREATE, Mkdir, MkdirAll
)

// Fault is one injected failure. It hits operations of kind Op on paths
// whose base name contains Match (every path if Match is empty), while it
// is on.
type Fault struct {
	Op    Op
	Match string
	// Err is returned by the operation (wrap a syscall.Errno, e.g.
	// syscall.ENOSPC, so callers see what a real disk would say).
	Err error
	// After lets this many bytes of writes through before failing (OpWrite
	// only): the write that crosses the limit stores its first bytes up
	// to the limit and returns Err, a short (torn) write as a full disk
	// leaves it.
	After int64

	on      atomic.Bool
	written atomic.Int64
	hits    atomic.Int64
}

// On arms the fault (a fault is on when added).
func (f *Fault) On() { f.on.Store(true) }

// Off disarms the fault: the disk has been repaired, space freed.
func (f *Fault) Off() { f.on.Store(false) }

// Hits is how many operations the fault failed.
func (f *Fault) Hits() int64 { return f.hits.Load() }

func (f *Fault) matches(op Op, path string) bool {
	return f.on.Load() && f.Op == op && (f.Match == "" || strings.Contains(filepath.Base(path), f.Match))
}

// ErrorFS wraps an FS and fails the operations its armed faults match. It
// is for tests; faults are added, switched on and off at run time from any
// goroutine.
type ErrorFS struct {
	inner  FS
	mu     sync.Mutex
	faults []*Fault
}

// NewErrorFS wraps inner (Default if nil).
func NewErrorFS(inner FS) *ErrorFS { return &ErrorFS{inner: Or(inner)} }

// Add arms f and returns it, for Off and On later.
func (e *ErrorFS) Add(f *Fault) *Fault {
	f.On()
	e.mu.Lock()
	e.faults = append(e.faults, f)
	e.mu.Unlock()
	return f
}

// Clear disarms and forgets every fault.
func (e *ErrorFS) Clear() {
	e.mu.Lock()
	for _, f := range e.faults {
		f.Off()
	}
	e.faults = nil
	e.mu.Unlock()
}

func (e *ErrorFS) find(op Op, path string) *Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.faults {
		if f.matches(op, path) {
			return f
		}
	}
	return nil
}

func (e *ErrorFS) check(op Op, path string) error {
	if f := e.find(op, path); f != nil {
		f.hits.Add(1)
		return &fs.PathError{Op: "injected", Path: path, Err: f.Err}
	}
	return nil
}

// allow returns how many of n bytes a write to path may store, and the
// error to return after storing them (nil: all of them, no error).
func (e *ErrorFS) allow(path string, n int) (int, error) {
	f := e.find(OpWrite, path)
	if f == nil {
		return n, nil
	}
	if f.After > 0 {
		before := f.written.Add(int64(n)) - int64(n)
		if before+int64(n) <= f.After {
			return n, nil
		}
		f.hits.Add(1)
		return int(max(0, f.After-before)), &fs.PathError{Op: "injected write", Path: path, Err: f.Err}
	}
	f.hits.Add(1)
	return 0, &fs.PathError{Op: "injected write", Path: path, Err: f.Err}
}

func (e *ErrorFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 {
		if err := e.check(OpCreate, name); err != nil {
			return nil, err
		}
	}
	f, err := e.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errFile{File: f, fs: e}, nil
}

func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.check(OpRename, oldname); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.check(OpRemove, name); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

func (e *ErrorFS) RemoveAll(name string) error {
	if err := e.check(OpRemove, name); err != nil {
		return err
	}
	return e.inner.RemoveAll(name)
}

func (e *ErrorFS) Mkdir(name string, perm fs.FileMode) error {
	if err := e.check(OpCreate, name); err != nil {
		return err
	}
	return e.inner.Mkdir(name, perm)
}

func (e *ErrorFS) MkdirAll(name string, perm fs.FileMode) error {
	if err := e.check(OpCreate, name); err != nil {
		return err
	}
	return e.inner.MkdirAll(name, perm)
}

func (e *ErrorFS) ReadDir(name string) ([]fs.DirEntry, error) { return e.inner.ReadDir(name) }
func (e *ErrorFS) Stat(name string) (fs.FileInfo, error)      { return e.inner.Stat(name) }
func (e *ErrorFS) Lock(name string) (io.Closer, error)        { return e.inner.Lock(name) }

type errFile struct {
	File
	fs *ErrorFS
}

func (f *errFile) Write(p []byte) (int, error) {
	n, ferr := f.fs.allow(f.Name(), len(p))
	m, err := f.File.Write(p[:n])
	if err != nil {
		return m, err
	}
	return m, ferr
}

func (f *errFile) WriteAt(p []byte, off int64) (int, error) {
	n, ferr := f.fs.allow(f.Name(), len(p))
	m, err := f.File.WriteAt(p[:n], off)
	if err != nil {
		return m, err
	}
	return m, ferr
}

func (f *errFile) Sync() error {
	if err := f.fs.check(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errFile) SyncData() error {
	if err := f.fs.check(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *errFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
