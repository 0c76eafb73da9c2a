// Package vfs is the file-system seam of the store of record and the
// keystore: every file they open, write, sync, rename or remove goes through
// an FS, so tests can inject the faults a real disk produces (a failed
// fsync, a full disk, a write cut short) in-process, with ErrorFS, instead
// of needing a broken device. pebble's vfs and vfs/errorfs are the model.
//
// The interface holds only what logstore and privacy/keystore use; Default
// is the operating system.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// File is an open file.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// SyncData makes the file's data and its size durable (fdatasync):
	// what an append-only log needs, without the inode's timestamps.
	SyncData() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Chmod(mode fs.FileMode) error
	Name() string
}

// FS is the file system a store works in.
type FS interface {
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	RemoveAll(name string) error
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	// Lock takes an exclusive advisory lock on the file name (created if
	// missing) without waiting: ErrLocked if another holder has it. Close
	// releases it.
	Lock(name string) (io.Closer, error)
}

// ErrLocked is Lock's answer when the file is locked by another holder (in
// this process or another).
var ErrLocked = errors.New("locked by another holder")

// Default is the operating system's file system.
var Default FS = osFS{}

// Or returns fs, or Default when fs is nil: an Options field left unset.
func Or(fs FS) FS {
	if fs == nil {
		return Default
	}
	return fs
}

// Open opens name for reading.
func Open(fsys FS, name string) (File, error) { return fsys.OpenFile(name, os.O_RDONLY, 0) }

// ReadFile reads the whole of name.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := Open(fsys, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return buf[:n], nil
}

// SyncDir makes the renames, creations and removals in dir durable.
func SyncDir(fsys FS, dir string) error {
	d, err := Open(fsys, dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Rename(oldname, newname string) error         { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) RemoveAll(name string) error                  { return os.RemoveAll(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (osFS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }

// Lock uses flock(2): the lock belongs to the open file, so it is released
// when the process exits however it exits, and a second Lock of the same
// file fails even inside one process.
func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", name, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return osLock{f}, nil
}

type osLock struct{ f *os.File }

func (l osLock) Close() error {
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	return errors.Join(err, l.f.Close())
}

type osFile struct{ *os.File }

func (f osFile) SyncData() error {
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// IsNoSpace reports whether err says the disk or the user's quota is full
// (ENOSPC, EDQUOT): the one write failure that goes away by itself once
// space is freed, unlike an I/O error.
func IsNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
