package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Kind separates key namespaces: a subject and a period may share a name.
type Kind uint8

const (
	KindSubject Kind = 1 // one key per data subject; destroying it erases the person
	KindPeriod  Kind = 2 // one key per retention period, e.g. "P7Y/2019-05"
	KindSystem  Kind = 3 // keys Stele itself needs (blind-index keys, …)
)

func (k Kind) valid() bool { return k >= KindSubject && k <= KindSystem }

func (k Kind) String() string {
	switch k {
	case KindSubject:
		return "subject"
	case KindPeriod:
		return "period"
	case KindSystem:
		return "system"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// KeySize is the size of a data key (AES-256).
const KeySize = 32

// DefaultCacheSize bounds the unwrapped keys kept in memory when
// Options.CacheSize is 0.
const DefaultCacheSize = 65536

var (
	ErrDestroyed   = errors.New("keystore: key destroyed")
	ErrUnknownKey  = errors.New("keystore: unknown key")
	ErrWrongMaster = errors.New("keystore: wrong master key")
	ErrCorrupt     = errors.New("keystore: store damaged")
	ErrClosed      = errors.New("keystore: closed")
	ErrLocked      = errors.New("keystore: directory in use by another process")
)

// Options tune a Store.
type Options struct {
	// CacheSize bounds how many unwrapped keys stay in memory (LRU).
	// 0 means DefaultCacheSize; negative means none are kept.
	CacheSize int
	Logger    *slog.Logger
}

const (
	numShards = 256
	// shardRun is how many consecutive new keys go to one shard before the
	// least-filled shard is picked again. Keys are placed in runs, not at
	// random, so a group commit of 1,000 new keys fsyncs one or two shard
	// files instead of all 256, while shards stay balanced for erasure.
	shardRun = 1024
)

type shard struct {
	entries map[kidT]*entry
	pending []byte   // frames created but not yet written
	f       *os.File // append handle; guarded by fileMu
	scrub   bool     // must be rewritten: holds a destroyed key, or a rewrite failed
}

// Store is the key store. It is safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	lock *os.File

	// fileMu serialises file I/O (flush, shard rewrite, rotation); it is
	// taken before mu. mu guards the in-memory state and is never held across
	// I/O, except by Rotate.
	fileMu     sync.Mutex
	destroyedF *os.File // guarded by fileMu

	mu          sync.Mutex
	master      MasterKey
	gen         uint64
	genDir      string
	shards      [numShards]*shard
	names       map[nameKey][]kidT
	destroyed   map[kidT]struct{}
	cache       *keyCache
	active      int
	activeLeft  int
	seq         uint64 // keys created so far
	durable     uint64 // keys created and made durable
	flushing    bool
	flushDone   chan struct{}
	failed      error
	closed      bool
	liveEntries int
}

type nameKey struct {
	kind Kind
	name string
}

// Open opens (or creates) the store in dir. master must be the master key the
// store is wrapped under; any other fails with ErrWrongMaster before any key
// is served.
func Open(ctx context.Context, dir string, master MasterKey, opts Options) (*Store, error) {
	if master == nil {
		return nil, errors.New("keystore: open: master key is nil")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("keystore: open %s: %w (%v)", dir, ErrLocked, err)
	}
	s := &Store{
		dir:       dir,
		log:       logger.With("component", "keystore"),
		lock:      lock,
		master:    master,
		names:     make(map[nameKey][]kidT),
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
	cur, err := os.ReadFile(filepath.Join(s.dir, "CURRENT"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
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
			if err := s.rewriteShard(i); err != nil {
				return fmt.Errorf("keystore: open %s: erase destroyed keys left by an interrupted Destroy: %w", s.dir, err)
			}
			scrubbed++
		}
	}
	s.log.Info("keystore opened", "dir", s.dir, "generation", s.gen, "master", s.master.ID(),
		"keys", s.liveEntries, "destroyed", len(s.destroyed), "torn_tails_cut", torn, "shards_scrubbed", scrubbed)
	return nil
}

// initGen creates generation 1 of a new store.
func (s *Store) initGen(ctx context.Context) error {
	s.gen, s.genDir = 1, filepath.Join(s.dir, genName(1))
	if err := os.RemoveAll(s.genDir); err != nil {
		return fmt.Errorf("keystore: create %s: %w", s.dir, err)
	}
	if err := s.writeGenHeader(ctx, s.genDir, s.master, nil); err != nil {
		return fmt.Errorf("keystore: create %s: %w", s.dir, err)
	}
	return s.commitGen(genName(1))
}

// writeGenHeader makes dir with its MASTER canary and DESTROYED list.
func (s *Store) writeGenHeader(ctx context.Context, dir string, master MasterKey, destroyed map[kidT]struct{}) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	canary := make([]byte, len(canaryPrefix)+16)
	copy(canary, canaryPrefix)
	if _, err := rand.Read(canary[len(canaryPrefix):]); err != nil {
		return err
	}
	wrapped, err := master.Wrap(ctx, canary)
	if err != nil {
		return fmt.Errorf("wrap canary under %s: %w", master.ID(), err)
	}
	if len(wrapped) > 0xffff || len(master.ID()) > 0xff {
		return fmt.Errorf("master %s: id or wrapping too long", master.ID())
	}
	if err := writeFileSync(filepath.Join(dir, "MASTER"), appendFrame(nil, appendMasterBody(nil, master.ID(), wrapped))); err != nil {
		return err
	}
	var buf []byte
	for kid := range destroyed {
		buf = appendFrame(buf, appendDestroyedBody(nil, kid))
	}
	if err := writeFileSync(filepath.Join(dir, "DESTROYED"), buf); err != nil {
		return err
	}
	return nil
}

// commitGen points CURRENT at name atomically and durably.
func (s *Store) commitGen(name string) error {
	if err := syncDir(filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("keystore: %s: %w", name, err)
	}
	tmp := filepath.Join(s.dir, "CURRENT.tmp")
	if err := writeFileSync(tmp, []byte(name+"\n")); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "CURRENT")); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("keystore: CURRENT: %w", err)
	}
	return nil
}

// removeStale deletes generations other than the current one (a rotation
// cut short, or an old generation not yet removed) and leftover temp files,
// so no stale wrapping stays on disk.
func (s *Store) removeStale() error {
	cur := filepath.Base(s.genDir)
	ents, err := os.ReadDir(s.dir)
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
			if err := os.RemoveAll(filepath.Join(s.dir, n)); err != nil {
				return fmt.Errorf("keystore: open %s: remove stale %s: %w", s.dir, n, err)
			}
			removed = true
		}
	}
	ents, err = os.ReadDir(s.genDir)
	if err != nil {
		return fmt.Errorf("keystore: open %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.Remove(filepath.Join(s.genDir, e.Name())); err != nil {
				return fmt.Errorf("keystore: open %s: remove stale %s: %w", s.dir, e.Name(), err)
			}
			removed = true
		}
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		return syncDir(s.genDir)
	}
	return nil
}

func (s *Store) checkMaster(ctx context.Context) error {
	data, err := os.ReadFile(filepath.Join(s.genDir, "MASTER"))
	if err != nil {
		return fmt.Errorf("keystore: open %s: MASTER: %w", s.dir, err)
	}
	body, n, err := nextFrame(data)
	if err != nil || n != len(data) {
		return fmt.Errorf("keystore: open %s: MASTER: damaged frame: %w", s.dir, ErrCorrupt)
	}
	id, wrapped, err := decodeMaster(body)
	if err != nil {
		return fmt.Errorf("keystore: open %s: %v: %w", s.dir, err, ErrCorrupt)
	}
	if id != s.master.ID() {
		return fmt.Errorf("keystore: open %s: store is wrapped under master %s, but master %s was given: %w", s.dir, id, s.master.ID(), ErrWrongMaster)
	}
	pt, err := s.master.Unwrap(ctx, wrapped)
	if err != nil {
		return fmt.Errorf("keystore: open %s: master %s cannot unwrap the store's canary: %w", s.dir, id, errors.Join(ErrWrongMaster, err))
	}
	if !bytes.HasPrefix(pt, []byte(canaryPrefix)) {
		return fmt.Errorf("keystore: open %s: master %s unwrapped the canary to unexpected bytes: %w", s.dir, id, ErrWrongMaster)
	}
	return nil
}

// readFrames reads every frame of path. A torn tail (a frame cut short, or a
// bad last frame, or zero fill) is cut from the file; a bad frame with data
// after it is ErrCorrupt. A missing file reads as empty.
func readFrames(path string, fn func(body []byte) error) (torn bool, err error) {
	data, err := os.ReadFile(path)
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
				if err := truncateSync(path, int64(off)); err != nil {
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

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
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
	torn, err := readFrames(path, func(body []byte) error {
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
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("keystore: open %s: DESTROYED: %w", s.dir, err)
	}
	s.destroyedF = f
	return nil
}

func (s *Store) loadShard(i int) (bool, error) {
	path := filepath.Join(s.genDir, shardName(i))
	sh := s.shards[i]
	torn, err := readFrames(path, func(body []byte) error {
		e, err := decodeEntry(body)
		if err != nil {
			return fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		if int(e.kid[0]) != i {
			return fmt.Errorf("kid %x does not belong in this shard: %w", e.kid, ErrCorrupt)
		}
		if e.masterID != s.master.ID() {
			return fmt.Errorf("kid %x is wrapped under master %s, the store under %s: %w", e.kid, e.masterID, s.master.ID(), ErrCorrupt)
		}
		if _, dup := sh.entries[e.kid]; dup {
			return fmt.Errorf("kid %x appears twice: %w", e.kid, ErrCorrupt)
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
	s.names[nk] = append(s.names[nk], e.kid)
	s.liveEntries++
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// A kid travels as 32 hex digits (callers keep it in sealed envelopes).
func formatKid(k kidT) string { return hex.EncodeToString(k[:]) }

func parseKid(s string) (kidT, bool) {
	var k kidT
	if len(s) != 2*kidSize {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, false
	}
	return k, true
}

func validName(kind Kind, name string) error {
	if !kind.valid() {
		return fmt.Errorf("keystore: kind %d unknown; want subject, period or system", uint8(kind))
	}
	if name == "" {
		return fmt.Errorf("keystore: %s name is empty", kind)
	}
	if len(name) > MaxNameLen {
		// The name itself is never echoed: for subjects it identifies a person.
		return fmt.Errorf("keystore: %s name is %d bytes, at most %d", kind, len(name), MaxNameLen)
	}
	return nil
}

// usable reports why the store cannot serve; s.mu held.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

// GetOrCreate returns the live key of (kind, name), creating a new
// generation with a fresh random kid if there is none. A created key is not
// durable until Sync returns; do not seal anything durable under it before.
func (s *Store) GetOrCreate(ctx context.Context, kind Kind, name string) (kid string, key []byte, err error) {
	if err := validName(kind, name); err != nil {
		return "", nil, err
	}
	nk := nameKey{kind, name}
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return "", nil, err
		}
		if kids := s.names[nk]; len(kids) > 0 {
			k := kids[len(kids)-1]
			s.mu.Unlock()
			key, err := s.key(ctx, k)
			if errors.Is(err, ErrDestroyed) {
				continue // destroyed meanwhile: make the next generation
			}
			return formatKid(k), key, err
		}
		master := s.master
		if s.activeLeft == 0 {
			s.active, s.activeLeft = s.leastFilledShard(), shardRun
		}
		s.activeLeft--
		shardByte := byte(s.active)
		s.mu.Unlock()

		// Wrap outside the lock: with Vault it is a network round trip.
		// The kid is random except its first byte, which names the shard.
		e := &entry{kind: kind, name: name, masterID: master.ID()}
		if _, err := rand.Read(e.kid[:]); err != nil {
			return "", nil, fmt.Errorf("keystore: create %s key: kid: %w", kind, err)
		}
		e.kid[0] = shardByte
		key = make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return "", nil, fmt.Errorf("keystore: create %s key: %w", kind, err)
		}
		plain := wrapPlain(e, key)
		e.wrapped, err = master.Wrap(ctx, plain)
		clear(plain)
		if err != nil {
			clear(key)
			return "", nil, fmt.Errorf("keystore: create %s key: wrap under %s: %w", kind, master.ID(), err)
		}
		if len(e.wrapped) > 0xffff {
			clear(key)
			return "", nil, fmt.Errorf("keystore: create %s key: master %s wrapped 32 bytes into %d", kind, master.ID(), len(e.wrapped))
		}

		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			clear(key)
			return "", nil, err
		}
		if s.master != master || len(s.names[nk]) > 0 {
			// Rotated, or another caller created it first: use theirs.
			s.mu.Unlock()
			clear(key)
			continue
		}
		sh := s.shards[e.kid[0]]
		if _, taken := sh.entries[e.kid]; taken {
			s.mu.Unlock()
			clear(key)
			continue
		}
		if _, gone := s.destroyed[e.kid]; gone {
			s.mu.Unlock()
			clear(key)
			continue
		}
		s.addEntry(e)
		var scratch [256]byte
		sh.pending, _ = appendEntryFrame(sh.pending, e, scratch[:0])
		s.seq++
		s.cache.put(e.kid, key)
		s.mu.Unlock()
		return formatKid(e.kid), key, nil
	}
}

func (s *Store) leastFilledShard() int {
	best, n := 0, -1
	for i, sh := range s.shards {
		if l := len(sh.entries); n < 0 || l < n {
			best, n = i, l
		}
	}
	return best
}

// Key returns the data key for kid: ErrDestroyed if it was destroyed,
// ErrUnknownKey if it never existed (or was never made durable before a
// crash).
func (s *Store) Key(ctx context.Context, kid string) ([]byte, error) {
	k, ok := parseKid(kid)
	if !ok {
		return nil, fmt.Errorf("keystore: kid %q is malformed, want %d hex digits: %w", truncate(kid, 64), 2*kidSize, ErrUnknownKey)
	}
	return s.key(ctx, k)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (s *Store) key(ctx context.Context, k kidT) ([]byte, error) {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if key, ok := s.cache.get(k); ok {
		s.mu.Unlock()
		return key, nil
	}
	e := s.shards[k[0]].entries[k]
	if e == nil {
		_, gone := s.destroyed[k]
		s.mu.Unlock()
		if gone {
			return nil, fmt.Errorf("keystore: kid %x: %w", k, ErrDestroyed)
		}
		return nil, fmt.Errorf("keystore: kid %x: %w", k, ErrUnknownKey)
	}
	master := s.master
	s.mu.Unlock()

	if e.masterID != master.ID() {
		return nil, fmt.Errorf("keystore: kid %x is wrapped under master %s, store has %s: %w", k, e.masterID, master.ID(), ErrWrongMaster)
	}
	plain, err := master.Unwrap(ctx, e.wrapped)
	if err != nil {
		return nil, fmt.Errorf("keystore: kid %x: %w", k, err)
	}
	defer clear(plain)
	inner, err := keyFromPlain(e, plain)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	key := append([]byte(nil), inner...)

	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.shards[k[0]].entries[k]; cur != e {
		if _, gone := s.destroyed[k]; gone {
			clear(key)
			return nil, fmt.Errorf("keystore: kid %x: %w", k, ErrDestroyed)
		}
		return key, nil // re-wrapped by Rotate meanwhile: the key is the same
	}
	s.cache.put(k, key)
	return key, nil
}

// Sync makes every key created before the call durable. Concurrent callers
// share one write and one fsync per touched shard (group commit).
func (s *Store) Sync(ctx context.Context) error {
	s.mu.Lock()
	want := s.seq
	for {
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return err
		}
		if s.durable >= want && !s.needsScrub() {
			s.mu.Unlock()
			return nil
		}
		if !s.flushing {
			s.flushing = true
			done := make(chan struct{})
			s.flushDone = done
			s.mu.Unlock()
			err := s.flush()
			s.mu.Lock()
			s.flushing = false
			close(done)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			continue
		}
		done := s.flushDone
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
}

func (s *Store) needsScrub() bool {
	for _, sh := range s.shards {
		if sh.scrub {
			return true
		}
	}
	return false
}

// flush writes pending frames and fsyncs the shards they went to.
func (s *Store) flush() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	upto := s.seq
	type job struct {
		i    int
		data []byte
	}
	var jobs []job
	var scrubs []int
	for i, sh := range s.shards {
		if sh.scrub {
			scrubs = append(scrubs, i)
		} else if len(sh.pending) > 0 {
			jobs = append(jobs, job{i, sh.pending})
			sh.pending = nil
		}
	}
	s.mu.Unlock()

	created := false
	fail := func(i int, err error) error {
		// A failed write or fsync leaves the file in an unknown state
		// (a later fsync may report success for lost pages), so the store
		// stops accepting work; reopening recovers from what is on disk.
		err = fmt.Errorf("keystore: sync %s: %w", shardName(i), err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		s.log.Error("keystore: sync failed; store must be reopened", "err", err)
		return err
	}
	for _, j := range jobs {
		sh := s.shards[j.i]
		if sh.f == nil {
			f, err := os.OpenFile(filepath.Join(s.genDir, shardName(j.i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return fail(j.i, err)
			}
			sh.f, created = f, true
		}
		if _, err := sh.f.Write(j.data); err != nil {
			return fail(j.i, err)
		}
	}
	for _, j := range jobs {
		if err := s.shards[j.i].f.Sync(); err != nil {
			return fail(j.i, err)
		}
	}
	if created {
		if err := syncDir(s.genDir); err != nil {
			return fail(jobs[0].i, err)
		}
	}
	for _, i := range scrubs {
		if err := s.rewriteShard(i); err != nil {
			return err
		}
	}
	// Keep only the shards being filled open; at most a couple of fds.
	written := map[int]bool{}
	for _, j := range jobs {
		written[j.i] = true
	}
	for i, sh := range s.shards {
		if sh.f != nil && !written[i] {
			sh.f.Close()
			sh.f = nil
		}
	}
	s.mu.Lock()
	if s.durable < upto {
		s.durable = upto
	}
	s.mu.Unlock()
	return nil
}

// rewriteShard replaces shard i on disk with exactly its live entries
// (pending ones included), erasing destroyed keys physically. fileMu held.
func (s *Store) rewriteShard(i int) error {
	s.mu.Lock()
	sh := s.shards[i]
	var buf, scratch []byte
	for _, e := range sh.entries {
		buf, scratch = appendEntryFrame(buf, e, scratch)
	}
	sh.pending = nil
	sh.scrub = true // until the rename is durable
	dir := s.genDir
	s.mu.Unlock()

	if sh.f != nil {
		sh.f.Close()
		sh.f = nil
	}
	path := filepath.Join(dir, shardName(i))
	var err error
	if len(buf) == 0 {
		if err = os.Remove(path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		tmp := path + ".tmp"
		if err = writeFileSync(tmp, buf); err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("keystore: rewrite %s: %w", shardName(i), err)
	}
	s.mu.Lock()
	sh.scrub = false
	s.mu.Unlock()
	return nil
}

// Destroy erases every generation of (kind, name): the destruction is first
// recorded durably in the destroyed list, then the shard holding each key is
// rewritten without it. It returns the destroyed kids; none if the name had
// no key. If the rewrite fails the destruction stands (the key is already
// unservable) and the rewrite is retried by Sync and by Open.
func (s *Store) Destroy(ctx context.Context, kind Kind, name string) (kids []string, err error) {
	if err := validName(kind, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	nk := nameKey{kind, name}
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	ks := slices.Clone(s.names[nk])
	s.mu.Unlock()
	if len(ks) == 0 {
		return nil, nil
	}

	var rec []byte
	for _, k := range ks {
		rec = appendFrame(rec, appendDestroyedBody(nil, k))
	}
	if _, err := s.destroyedF.Write(rec); err != nil {
		return nil, fmt.Errorf("keystore: destroy %s key: record in DESTROYED: %w", kind, err)
	}
	if err := s.destroyedF.Sync(); err != nil {
		return nil, fmt.Errorf("keystore: destroy %s key: fsync DESTROYED: %w", kind, err)
	}

	s.mu.Lock()
	delete(s.names, nk)
	shardsHit := map[int]bool{}
	for _, k := range ks {
		sh := s.shards[k[0]]
		if _, ok := sh.entries[k]; ok {
			delete(sh.entries, k)
			s.liveEntries--
		}
		s.cache.remove(k)
		s.destroyed[k] = struct{}{}
		sh.scrub = true
		shardsHit[int(k[0])] = true
		kids = append(kids, formatKid(k))
	}
	s.mu.Unlock()

	for i := range shardsHit {
		if err := s.rewriteShard(i); err != nil {
			return kids, fmt.Errorf("keystore: destroy %s key: recorded, key no longer served, but erasing it from disk failed (retried on Sync and Open): %w", kind, err)
		}
	}
	s.log.Info("keystore: destroyed", "kind", kind.String(), "generations", len(kids), "took", time.Since(start))
	return kids, nil
}

// Names lists the live names of kind, sorted (the retention job lists
// period names this way).
func (s *Store) Names(kind Kind) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for nk := range s.names {
		if nk.kind == kind {
			out = append(out, nk.name)
		}
	}
	slices.Sort(out)
	return out
}

// Len is the number of live keys.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveEntries
}

// MasterID is the id of the master key the store is wrapped under.
func (s *Store) MasterID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master.ID()
}

// Rotate re-wraps every live key under to, writing a complete new generation
// and switching to it atomically; the old generation (every wrapping under
// the old master) is then deleted. Keys created but not yet synced become
// durable too. The store is blocked for the duration: rotation is a rare,
// operator-driven event.
func (s *Store) Rotate(ctx context.Context, to MasterKey) error {
	if to == nil {
		return errors.New("keystore: rotate: new master key is nil")
	}
	start := time.Now()
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	from := s.master
	newName := genName(s.gen + 1)
	newDir := filepath.Join(s.dir, newName)
	abort := func(err error) error {
		_ = os.RemoveAll(newDir)
		return fmt.Errorf("keystore: rotate %s -> %s: %w", from.ID(), to.ID(), err)
	}
	if err := os.RemoveAll(newDir); err != nil {
		return abort(err)
	}
	if err := s.writeGenHeader(ctx, newDir, to, s.destroyed); err != nil {
		return abort(err)
	}
	var newEntries [numShards]map[kidT]*entry
	var scratch []byte
	n := 0
	for i, sh := range s.shards {
		newEntries[i] = make(map[kidT]*entry, len(sh.entries))
		var buf []byte
		for k, e := range sh.entries {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return abort(err)
				}
			}
			plain, err := from.Unwrap(ctx, e.wrapped)
			if err != nil {
				return abort(fmt.Errorf("kid %x: %w", k, err))
			}
			key, err := keyFromPlain(e, plain)
			if err != nil {
				clear(plain)
				return abort(err)
			}
			ne := &entry{kind: e.kind, kid: e.kid, name: e.name, masterID: to.ID()}
			np := wrapPlain(ne, key)
			clear(plain)
			ne.wrapped, err = to.Wrap(ctx, np)
			clear(np)
			if err != nil {
				return abort(fmt.Errorf("kid %x: wrap: %w", k, err))
			}
			newEntries[i][k] = ne
			buf, scratch = appendEntryFrame(buf, ne, scratch)
		}
		if len(buf) > 0 {
			if err := writeFileSync(filepath.Join(newDir, shardName(i)), buf); err != nil {
				return abort(err)
			}
		}
	}
	if err := s.commitGen(newName); err != nil {
		return abort(err)
	}
	// Committed: from here the new generation is the store.
	oldDir := s.genDir
	for i, sh := range s.shards {
		if sh.f != nil {
			sh.f.Close()
			sh.f = nil
		}
		sh.entries, sh.pending, sh.scrub = newEntries[i], nil, false
	}
	s.destroyedF.Close()
	s.destroyedF = nil
	s.master, s.gen, s.genDir = to, s.gen+1, newDir
	s.durable = s.seq
	f, err := os.OpenFile(filepath.Join(newDir, "DESTROYED"), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.failed = fmt.Errorf("keystore: after rotation: DESTROYED: %w", err)
		return s.failed
	}
	s.destroyedF = f
	if err := os.RemoveAll(oldDir); err != nil {
		return fmt.Errorf("keystore: rotated to %s, but removing the old generation failed (Open retries): %w", to.ID(), err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("keystore: rotated to %s: %w", to.ID(), err)
	}
	s.log.Info("keystore: rotated master key", "from", from.ID(), "to", to.ID(), "keys", n, "took", time.Since(start))
	return nil
}

// Close makes pending keys durable, drops every unwrapped key from memory and
// releases the directory.
func (s *Store) Close() error {
	err := s.Sync(context.Background())
	if errors.Is(err, ErrClosed) {
		return nil
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cache.clearAll()
	s.closeFiles()
	return err
}

func (s *Store) closeFiles() {
	for _, sh := range s.shards {
		if sh != nil && sh.f != nil {
			sh.f.Close()
			sh.f = nil
		}
	}
	if s.destroyedF != nil {
		s.destroyedF.Close()
		s.destroyedF = nil
	}
	if s.lock != nil {
		_ = unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
}
