package keystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/vfs"
)

// Open opens (or creates) the store in dir. master must be the master key the
// store is wrapped under; any other fails with ErrWrongMaster before any key
// is served.
func Open(ctx context.Context, dir string, master MasterKey, opts Options) (*Store, error) {
	if master == nil {
		return nil, errors.New("keystore: open: master key is nil")
	}
	logger, cacheSize := opts.defaults()
	fsys := vfs.Or(opts.FS)
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	lock, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if errors.Is(err, vfs.ErrLocked) {
		return nil, fmt.Errorf("keystore: open %s: %w (%v)", dir, ErrLocked, err)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	s := &Store{
		dir:       dir,
		fs:        fsys,
		log:       logger.With("component", "keystore"),
		lock:      lock,
		master:    master,
		names:     make(map[nameKey]kidT),
		older:     make(map[nameKey][]kidT),
		destroyed: make(map[kidT]struct{}),
		cache:     newKeyCache(cacheSize),
	}
	for i := range s.shards {
		s.shards[i] = &shard{entries: make(map[kidT]*entry)}
	}
	if err := s.load(ctx); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func genName(gen uint64) string { return fmt.Sprintf("g%08d", gen) }

func shardName(i int) string { return fmt.Sprintf("%02x.keys", i) }

const canaryPrefix = "stele-keystore-canary-v1:"

func (s *Store) load(ctx context.Context) error {
	cur, err := vfs.ReadFile(s.fs, filepath.Join(s.dir, "CURRENT"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := s.refuseOrphanKeys(); err != nil {
			return err
		}
		if err := s.initGen(ctx); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("keystore: open %s: CURRENT: %w", s.dir, err)
	default:
		name := strings.TrimSpace(string(cur))
		var gen uint64
		if _, err := fmt.Sscanf(name, "g%08d", &gen); err != nil || genName(gen) != name {
			return fmt.Errorf("keystore: open %s: CURRENT names %q, want a generation like g00000001: %w", s.dir, name, ErrCorrupt)
		}
		s.gen, s.genDir = gen, filepath.Join(s.dir, name)
	}
	if err := s.removeStale(); err != nil {
		return err
	}
	if err := s.checkMaster(ctx); err != nil {
		return err
	}
	if err := s.loadDestroyed(); err != nil {
		return err
	}
	var torn, scrubbed int
	for i := range s.shards {
		t, err := s.loadShard(i)
		if err != nil {
			return err
		}
		if t {
			torn++
		}
	}
	for i, sh := range s.shards {
		if sh.scrub {
			if err := s.rewriteShard(i, nil); err != nil {
				return fmt.Errorf("keystore: open %s: erase destroyed keys left by an interrupted Destroy: %w", s.dir, err)
			}
			scrubbed++
		}
	}
	s.log.Info("keystore opened", "dir", s.dir, "generation", s.gen, "master", s.master.ID(),
		"keys", s.liveEntries, "destroyed", len(s.destroyed), "torn_tails_cut", torn, "shards_scrubbed", scrubbed)
	return nil
}

// refuseOrphanKeys stops Open from initialising over key files whose
// CURRENT pointer is missing: that would erase every key. The only
// generation that may exist without CURRENT is an empty first one left by a
// crash during creation.
func (s *Store) refuseOrphanKeys() error {
	ents, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: open %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "g") {
			continue
		}
		if e.Name() != genName(1) || s.holdsKeys(filepath.Join(s.dir, e.Name())) {
			return fmt.Errorf("keystore: open %s: CURRENT is missing but %s holds keys; refusing to create a new store over them (restore CURRENT with the generation name, e.g. %q): %w",
				s.dir, e.Name(), e.Name(), ErrCorrupt)
		}
	}
	return nil
}

// initGen creates generation 1 of a new store.
func (s *Store) initGen(ctx context.Context) error {
	s.gen, s.genDir = 1, filepath.Join(s.dir, genName(1))
	if err := s.fs.RemoveAll(s.genDir); err != nil {
		return fmt.Errorf("keystore: create %s: %w", s.dir, err)
	}
	if err := s.writeGenHeader(ctx, s.genDir, s.master, nil); err != nil {
		return fmt.Errorf("keystore: create %s: %w", s.dir, err)
	}
	return s.commitGen(genName(1))
}

// writeGenHeader makes dir with its MASTER canary and DESTROYED list.
func (s *Store) writeGenHeader(ctx context.Context, dir string, master MasterKey, destroyed map[kidT]struct{}) error {
	if err := s.fs.Mkdir(dir, 0o700); err != nil {
		return err
	}
	mb, err := masterBody(ctx, master)
	if err != nil {
		return err
	}
	if err := writeFileSync(s.fs, filepath.Join(dir, "MASTER"), appendFrame(nil, mb)); err != nil {
		return err
	}
	var buf []byte
	for kid := range destroyed {
		buf = appendFrame(buf, appendDestroyedBody(nil, kid))
	}
	if err := writeFileSync(s.fs, filepath.Join(dir, "DESTROYED"), buf); err != nil {
		return err
	}
	return nil
}

// commitGen points CURRENT at name atomically and durably.
func (s *Store) commitGen(name string) error {
	if err := vfs.SyncDir(s.fs, filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("keystore: %s: %w", name, err)
	}
	tmp := filepath.Join(s.dir, "CURRENT.tmp")
	if err := writeFileSync(s.fs, tmp, []byte(name+"\n")); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	if err := s.fs.Rename(tmp, filepath.Join(s.dir, "CURRENT")); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	if err := vfs.SyncDir(s.fs, s.dir); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	return nil
}

// removeStale deletes generations other than the current one (a rotation
// cut short, or an old generation not yet removed) and leftover temp files,
// so no stale wrapping stays on disk.
func (s *Store) removeStale() error {
	cur := filepath.Base(s.genDir)
	ents, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: open %s: %w", s.dir, err)
	}
	removed := false
	for _, e := range ents {
		n := e.Name()
		if n == "LOCK" || n == "CURRENT" || n == cur {
			continue
		}
		if (e.IsDir() && strings.HasPrefix(n, "g")) || strings.HasSuffix(n, ".tmp") {
			if err := s.fs.RemoveAll(filepath.Join(s.dir, n)); err != nil {
				return fmt.Errorf("keystore: open %s: remove stale %s: %w", s.dir, n, err)
			}
			removed = true
		}
	}
	ents, err = s.fs.ReadDir(s.genDir)
	if err != nil {
		return fmt.Errorf("keystore: open %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := s.fs.Remove(filepath.Join(s.genDir, e.Name())); err != nil {
				return fmt.Errorf("keystore: open %s: remove stale %s: %w", s.dir, e.Name(), err)
			}
			removed = true
		}
	}
	if removed {
		if err := vfs.SyncDir(s.fs, s.dir); err != nil {
			return err
		}
		return vfs.SyncDir(s.fs, s.genDir)
	}
	return nil
}

func (s *Store) checkMaster(ctx context.Context) error {
	data, err := vfs.ReadFile(s.fs, filepath.Join(s.genDir, "MASTER"))
	if err != nil {
		return fmt.Errorf("keystore: open %s: MASTER: %w", s.dir, err)
	}
	body, n, err := nextFrame(data)
	if err != nil || n != len(data) {
		return fmt.Errorf("keystore: open %s: MASTER: damaged frame: %w", s.dir, ErrCorrupt)
	}
	if err := checkMasterBody(ctx, s.master, body); err != nil {
		return fmt.Errorf("keystore: open %s: %w", s.dir, err)
	}
	return nil
}

// readFrames reads every frame of path. A torn tail (a frame cut short, or a
// bad last frame, or zero fill) is cut from the file; a bad frame with data
// after it is ErrCorrupt. A missing file reads as empty.
func readFrames(fsys vfs.FS, path string, fn func(body []byte) error) (torn bool, err error) {
	data, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	off := 0
	for off < len(data) {
		body, n, ferr := nextFrame(data[off:])
		if ferr == nil && len(body) == 0 {
			ferr = errBadFrame // an empty body is never written; it is zero fill
		}
		if ferr != nil {
			if ferr == errTorn || allZero(data[off:]) || endsAtEOF(data[off:]) {
				if err := truncateSync(fsys, path, int64(off)); err != nil {
					return false, fmt.Errorf("cut torn tail at offset %d: %w", off, err)
				}
				return true, nil
			}
			return false, fmt.Errorf("damaged frame at offset %d of %d bytes: %w", off, len(data), ErrCorrupt)
		}
		if err := fn(body); err != nil {
			return false, fmt.Errorf("frame at offset %d: %w", off, err)
		}
		off += n
	}
	return false, nil
}

// endsAtEOF reports whether the bad frame at the start of b is the final one
// by its own length field: a final frame whose body did not fully reach disk
// is a torn write. A bad frame with data after it is not cut: on ext4
// (data=ordered) the file size only grows once the data is written, so that
// pattern is damage, and cutting it could drop durable keys.
func endsAtEOF(b []byte) bool {
	if len(b) < frameHeader {
		return true
	}
	return frameHeader+int(binary.LittleEndian.Uint32(b[0:4])) == len(b)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func truncateSync(fsys vfs.FS, path string, size int64) error {
	f, err := fsys.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) loadDestroyed() error {
	path := filepath.Join(s.genDir, "DESTROYED")
	torn, err := readFrames(s.fs, path, func(body []byte) error {
		kid, err := decodeDestroyed(body)
		if err != nil {
			return fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		s.destroyed[kid] = struct{}{}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keystore: open %s: DESTROYED: %w", s.dir, err)
	}
	if torn {
		s.log.Warn("keystore: cut a torn tail from the destroyed list", "file", path)
	}
	f, err := s.fs.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("keystore: open %s: DESTROYED: %w", s.dir, err)
	}
	s.destroyedF = f
	return nil
}

func (s *Store) loadShard(i int) (bool, error) {
	path := filepath.Join(s.genDir, shardName(i))
	sh := s.shards[i]
	torn, err := readFrames(s.fs, path, func(body []byte) error {
		e, err := decodeEntry(body)
		if err != nil {
			return fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		if int(e.kid[0]) != i {
			return fmt.Errorf("kid %s does not belong in this shard: %w", e.kid, ErrCorrupt)
		}
		if e.masterID == s.master.ID() {
			e.masterID = s.master.ID() // share one string, not one per key
		} else {
			return fmt.Errorf("kid %s is wrapped under master %s, the store under %s: %w", e.kid, e.masterID, s.master.ID(), ErrCorrupt)
		}
		if _, dup := sh.entries[e.kid]; dup {
			return fmt.Errorf("kid %s appears twice: %w", e.kid, ErrCorrupt)
		}
		if _, gone := s.destroyed[e.kid]; gone {
			sh.scrub = true // Destroy recorded it but crashed before rewriting the shard
			return nil
		}
		s.addEntry(e)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("keystore: open %s: %s: %w", s.dir, shardName(i), err)
	}
	if torn {
		s.log.Warn("keystore: cut a torn tail (keys created but never synced)", "file", path)
	}
	return torn, nil
}

func (s *Store) addEntry(e *entry) {
	s.shards[e.kid[0]].entries[e.kid] = e
	nk := nameKey{e.kind, e.name}
	if old, dup := s.names[nk]; dup {
		// Never written by this code (GetOrCreate checks under the lock),
		// but if a file holds two live generations, Destroy must get both.
		s.older[nk] = append(s.older[nk], old)
	}
	s.names[nk] = e.kid
	s.liveEntries++
}

// writeFileSync writes a file nobody reads until a rename or CURRENT makes
// it live (a shard's .tmp, a new generation's files), and fsyncs it.
func writeFileSync(fsys vfs.FS, path string, data []byte) error {
	return atomicfile.WriteSync(fsys, path, data, 0o600, atomicfile.Truncate)
}

// holdsKeys reports whether the generation directory dir has a shard file.
func (s *Store) holdsKeys(dir string) bool {
	ents, _ := s.fs.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".keys") {
			return true
		}
	}
	return false
}

// readFileInto reads path into buf, reusing its capacity.
func readFileInto(fsys vfs.FS, path string, buf []byte) ([]byte, error) {
	f, err := vfs.Open(fsys, path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return buf, err
	}
	n := int(st.Size())
	buf = slices.Grow(buf[:0], n)[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf[:0], err
	}
	return buf, nil
}
