package keystore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/stele/stele/internal/vfs"
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
	// FS is the file system the store works in (default the operating
	// system's); tests pass a vfs.ErrorFS to inject disk faults.
	FS vfs.FS

	// Replicas is the replication of the bucket OpenKV creates (3 in a
	// cluster; 0 means 1). Only OpenKV reads it.
	Replicas int
	// StaleAfter bounds how long OpenKV's store serves keys after it last
	// confirmed it knows every key destroyed in the cluster (0 means
	// DefaultStaleAfter). Only OpenKV reads it.
	StaleAfter time.Duration
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
	f       vfs.File // append handle; guarded by fileMu
	scrub   bool     // must be rewritten: holds a destroyed key, or a rewrite failed
}

// Store is the key store. It is safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	fs   vfs.FS
	lock io.Closer

	// fileMu serialises file I/O (flush, shard rewrite, rotation); it is
	// taken before mu. mu guards the in-memory state and is never held across
	// I/O, except by Rotate.
	fileMu     sync.Mutex
	destroyedF vfs.File // guarded by fileMu
	readBuf    []byte   // shard rewrite buffers, reused; guarded by fileMu
	writeBuf   []byte

	mu          sync.Mutex
	master      MasterKey
	gen         uint64
	genDir      string
	shards      [numShards]*shard
	names       map[nameKey]kidT   // live generation of each name
	older       map[nameKey][]kidT // extra live generations; empty unless a file had duplicates
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
	flushes     int // flushes run; lets tests observe group commit
}

type nameKey struct {
	kind Kind
	name string
}

// kidEncoding writes kids as text: unpadded base64url, 22 characters for
// 16 bytes. A sealed field carries two kids, so every character counts
// on the append path. Strict, so each kid has exactly one text form.
var kidEncoding = base64.RawURLEncoding.Strict()

const (
	kidTextLen    = 22          // kidEncoding of kidSize bytes
	legacyKidText = 2 * kidSize // the hex digits kids were shown as at first
)

func formatKid(k kidT) string { return kidEncoding.EncodeToString(k[:]) }

// String is the kid as callers see it, so errors name it the same way.
func (k kidT) String() string { return formatKid(k) }

// parseKid reads a kid in its text form or as the 32 hex digits of stores
// written before: sealed envelopes keep the kid they were sealed under, so
// both stay readable. The lengths tell the forms apart.
func parseKid(s string) (kidT, bool) {
	var k kidT
	switch len(s) {
	case kidTextLen:
		// Through an array: no []byte copy of the string per lookup.
		var text [kidTextLen]byte
		copy(text[:], s)
		n, err := kidEncoding.Decode(k[:], text[:])
		return k, err == nil && n == kidSize
	case legacyKidText:
		for i := range k { // by hand: hex.Decode would need a []byte copy per lookup
			hi, ok1 := unhex(s[2*i])
			lo, ok2 := unhex(s[2*i+1])
			if !ok1 || !ok2 {
				return k, false
			}
			k[i] = hi<<4 | lo
		}
		return k, true
	}
	return k, false
}

// CanonicalKid returns kid in the text form GetOrCreate and Destroy use
// today, whichever form it came in; ok is false if kid is malformed. A
// caller comparing kids read from old envelopes with kids Destroy returned
// must compare these.
func CanonicalKid(kid string) (canonical string, ok bool) {
	k, ok := parseKid(kid)
	if !ok {
		return "", false
	}
	if len(kid) == kidTextLen {
		return kid, true
	}
	return formatKid(k), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
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
		if k, ok := s.names[nk]; ok {
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
		if key, err = newKey(ctx, master, e); err != nil {
			return "", nil, err
		}

		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			clear(key)
			return "", nil, err
		}
		if _, exists := s.names[nk]; exists || s.master != master {
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
		return nil, fmt.Errorf("keystore: kid %q is malformed, want %d base64url characters (or %d hex digits): %w", truncate(kid, 64), kidTextLen, legacyKidText, ErrUnknownKey)
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
			return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrDestroyed)
		}
		return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrUnknownKey)
	}
	master := s.master
	s.mu.Unlock()

	key, err := unwrapKey(ctx, master, e)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.shards[k[0]].entries[k]; cur != e {
		if _, gone := s.destroyed[k]; gone {
			clear(key)
			return nil, fmt.Errorf("keystore: kid %s: %w", k, ErrDestroyed)
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
	s.flushes++
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
			f, err := s.fs.OpenFile(filepath.Join(s.genDir, shardName(j.i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return fail(j.i, err)
			}
			sh.f, created = f, true
		}
		if _, err := sh.f.Write(j.data); err != nil {
			return fail(j.i, err)
		}
	}
	// fsync the touched shards (and the directory, for new files) at once:
	// concurrent fsyncs on one file system share journal commits.
	errs := make([]error, len(jobs)+1)
	var wg sync.WaitGroup
	for n, j := range jobs {
		wg.Go(func() {
			errs[n] = s.shards[j.i].f.Sync()
		})
	}
	if created {
		wg.Go(func() { errs[len(jobs)] = vfs.SyncDir(s.fs, s.genDir) })
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			i := 0
			if n < len(jobs) {
				i = jobs[n].i
			}
			return fail(i, err)
		}
	}
	for _, i := range scrubs {
		if err := s.rewriteShard(i, nil); err != nil {
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

// errRolledBack marks a write that failed on a full disk and was cut back
// off the file, leaving it as it was before.
var errRolledBack = errors.New("rolled back; retry once space is freed")

// recordDestroyed appends the erasure record rec to DESTROYED. A full disk
// may leave part of it written: it is cut back off, so the store need not
// stop (a half frame at the end would be cut by the next Open anyway). Any
// other write error leaves the file in an unknown state. fileMu held.
func (s *Store) recordDestroyed(rec []byte) error {
	st, err := s.destroyedF.Stat()
	if err != nil {
		return err
	}
	_, err = s.destroyedF.Write(rec)
	if err == nil || !vfs.IsNoSpace(err) {
		return err
	}
	if terr := s.destroyedF.Truncate(st.Size()); terr != nil {
		return errors.Join(err, fmt.Errorf("cut the partial record back off: %w", terr))
	}
	return fmt.Errorf("%w (%w)", err, errRolledBack)
}

// rewriteShard replaces shard i on disk with exactly its live entries
// (pending ones included), erasing destroyed keys physically. If also is
// not nil it is fsynced alongside the new shard file, before the rename.
// fileMu held.
func (s *Store) rewriteShard(i int, also vfs.File) error {
	// Filter the bytes already on disk rather than re-encode from memory:
	// a sequential pass over the file is several times faster than walking
	// thousands of heap entries, and the survivors keep their exact bytes.
	// fileMu is held, so the file cannot change under us.
	// Both buffers are reused: fresh ~1 MB allocations per erasure made the
	// runtime return and re-fault pages (madvise) and doubled the cost.
	path := filepath.Join(s.genDir, shardName(i))
	onDisk, err := readFileInto(s.fs, path, s.readBuf[:0])
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keystore: rewrite %s: %w", shardName(i), err)
	}
	s.readBuf = onDisk
	s.mu.Lock()
	sh := s.shards[i]
	buf, ok := filterFrames(s.writeBuf[:0], onDisk, sh.entries)
	if ok {
		buf, ok = filterFrames(buf, sh.pending, sh.entries)
	}
	if !ok || countFrames(buf) != len(sh.entries) {
		// Not what memory says (should not happen): trust memory.
		s.log.Warn("keystore: shard file disagrees with memory; rewriting it from memory", "shard", shardName(i))
		buf = buf[:0]
		var scratch []byte
		for _, e := range sh.entries {
			buf, scratch = appendEntryFrame(buf, e, scratch)
		}
	}
	sh.pending = nil
	sh.scrub = true // until the rename is durable
	dir := s.genDir
	s.mu.Unlock()
	s.writeBuf = buf
	clear(onDisk) // it held the destroyed wrappings; do not keep them around

	if sh.f != nil {
		sh.f.Close()
		sh.f = nil
	}
	var alsoErr error
	var wg sync.WaitGroup
	if also != nil {
		wg.Go(func() {
			alsoErr = also.Sync()
		})
	}
	if len(buf) == 0 {
		wg.Wait()
		if err = s.fs.Remove(path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		tmp := path + ".tmp"
		err = writeFileSync(s.fs, tmp, buf)
		wg.Wait()
		if err == nil && alsoErr == nil {
			err = s.fs.Rename(tmp, path)
		}
		if err != nil || alsoErr != nil {
			_ = s.fs.Remove(tmp)
		}
	}
	if alsoErr != nil {
		err = fmt.Errorf("keystore: fsync %s: %w", filepath.Base(also.Name()), alsoErr)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		s.log.Error("keystore: fsync failed; store must be reopened", "err", err)
		return err
	}
	if err == nil {
		err = vfs.SyncDir(s.fs, dir)
	}
	if err != nil {
		return fmt.Errorf("keystore: rewrite %s: %w", shardName(i), err)
	}
	s.mu.Lock()
	sh.scrub = false
	s.mu.Unlock()
	return nil
}

// filterFrames appends to dst the frames of src whose kid is in live.
func filterFrames(dst, src []byte, live map[kidT]*entry) ([]byte, bool) {
	for len(src) > 0 {
		body, n, err := nextFrame(src)
		if err != nil || len(body) < 2+kidSize {
			return dst, false
		}
		if _, ok := live[kidT(body[2:2+kidSize])]; ok {
			dst = append(dst, src[:n]...)
		}
		src = src[n:]
	}
	return dst, true
}

func countFrames(b []byte) int {
	n := 0
	for len(b) > 0 {
		_, m, err := nextFrame(b)
		if err != nil {
			return -1
		}
		b, n = b[m:], n+1
	}
	return n
}

// Destroy erases every generation of (kind, name): the destruction is
// recorded in the destroyed list and the shard holding each key is rewritten
// without it, both durably before Destroy returns. It returns the destroyed kids; none if the name had
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
	var ks []kidT
	if k, ok := s.names[nk]; ok {
		ks = append(slices.Clone(s.older[nk]), k)
	}
	s.mu.Unlock()
	if len(ks) == 0 {
		return nil, nil
	}

	// The kids go to DESTROYED, fsynced together with the first rewritten
	// shard and before its rename: a crash before the rename leaves the key
	// on disk but listed as destroyed, and Open finishes the erasure. An
	// I/O error on DESTROYED stops the store, so memory (where the key is
	// already gone) never claims an erasure the disk may not hold; after a
	// reopen the caller's retry finds the key again.
	var rec []byte
	for _, k := range ks {
		rec = appendFrame(rec, appendDestroyedBody(nil, k))
	}
	if err := s.recordDestroyed(rec); err != nil {
		err = fmt.Errorf("keystore: destroy %s key: record in DESTROYED: %w", kind, err)
		if errors.Is(err, errRolledBack) {
			// Nothing was erased and the store stays usable: the caller
			// retries once space is freed.
			return nil, err
		}
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		return nil, err
	}

	s.mu.Lock()
	delete(s.names, nk)
	delete(s.older, nk)
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

	also := s.destroyedF
	for i := range shardsHit {
		err := s.rewriteShard(i, also)
		also = nil
		if errors.Is(err, s.failedErr()) {
			return kids, err
		}
		if err != nil {
			return kids, fmt.Errorf("keystore: destroy %s key: recorded, key no longer served, but erasing it from disk failed (retried on Sync and Open): %w", kind, err)
		}
	}
	s.log.Info("keystore: destroyed", "kind", kind.String(), "generations", len(kids), "took", time.Since(start))
	return kids, nil
}

func (s *Store) failedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		return errNotFailed
	}
	return s.failed
}

var errNotFailed = errors.New("not failed")

// Names lists the live names of kind, sorted (the retention job lists
// period names this way).
func (s *Store) Names(kind Kind) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return namesOf(s.names, kind)
}

// newKey makes a random data key for e (kid, kind and name set) and
// wraps it under master into e.wrapped.
func newKey(ctx context.Context, master MasterKey, e *entry) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keystore: create %s key: %w", e.kind, err)
	}
	plain := wrapPlain(e, key)
	var err error
	e.wrapped, err = master.Wrap(ctx, plain)
	clear(plain)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("keystore: create %s key: wrap under %s: %w", e.kind, master.ID(), err)
	}
	if len(e.wrapped) > 0xffff {
		clear(key)
		return nil, fmt.Errorf("keystore: create %s key: master %s wrapped 32 bytes into %d", e.kind, master.ID(), len(e.wrapped))
	}
	return key, nil
}

// unwrapKey returns a copy of the data key of e, unwrapped under master
// and checked to belong to e.
func unwrapKey(ctx context.Context, master MasterKey, e *entry) ([]byte, error) {
	if e.masterID != master.ID() {
		return nil, fmt.Errorf("keystore: kid %s is wrapped under master %s, store has %s: %w", e.kid, e.masterID, master.ID(), ErrWrongMaster)
	}
	plain, err := master.Unwrap(ctx, e.wrapped)
	if err != nil {
		return nil, fmt.Errorf("keystore: kid %s: %w", e.kid, err)
	}
	defer clear(plain)
	inner, err := keyFromPlain(e, plain)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return append([]byte(nil), inner...), nil
}

// namesOf lists the names of kind in names, sorted.
func namesOf(names map[nameKey]kidT, kind Kind) []string {
	var out []string
	for nk := range names {
		if nk.kind == kind {
			out = append(out, nk.name)
		}
	}
	slices.Sort(out)
	return out
}

// defaults are the logger and cache size opts ask for, defaults filled in.
func (o Options) defaults() (*slog.Logger, int) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	size := o.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	return logger, size
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
		s.lock.Close()
		s.lock = nil
	}
}
