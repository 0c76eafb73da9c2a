package projection

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stele/stele/record"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrUnknown: no projection of that name is defined.
	ErrUnknown = errors.New("no such projection")
	// ErrNotFound: the projection holds no value for that key.
	ErrNotFound = errors.New("no value for that key")
	// ErrDamaged: the database's files are corrupt. It is derived data:
	// move it aside and rebuild.
	ErrDamaged = errors.New("projection database damaged")
	// ErrGap: records were offered that do not continue where a projection
	// stopped; the caller must replay from the projection's watermark.
	ErrGap = errors.New("records do not continue the projection")
)

const (
	pMeta = 'm'
	pData = 'd'
)

// meta is the stored state of one projection, written in the same batch as
// the value changes it accounts for.
type meta struct {
	Hash    string `json:"hash"`
	Applied uint64 `json:"applied"` // leading log records folded
	Keys    int64  `json:"keys"`    // keys holding a value
	Skipped uint64 `json:"skipped"` // records skipped because an expression failed
}

// Options configure a Store. Zero values give the defaults.
type Options struct {
	Logger *slog.Logger
	// FS is the file system Pebble uses (default the OS's); tests inject a
	// crashable in-memory one.
	FS vfs.FS
	// ReadOnly opens the database for inspection while nothing else has it
	// open: nothing is cleared or written, and a projection whose
	// definition changed reports nothing applied.
	ReadOnly bool
}

// Store holds the projections of one Set in a Pebble database.
type Store struct {
	db  *pebble.DB
	set *Set
	log *slog.Logger

	applyMu  sync.Mutex // one Apply or Rebuild at a time
	readOnly bool

	mu   sync.RWMutex
	meta map[string]meta
}

// Open opens or creates the projection database in dir for set. A stored
// projection whose definition hash differs from set's is cleared so that it
// is rebuilt from the log; one no longer defined is deleted. Both are
// logged.
func Open(dir string, set *Set, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	popts := &pebble.Options{Logger: pebbleLogger{opts.Logger}, FS: opts.FS, ReadOnly: opts.ReadOnly}
	popts.EnsureDefaults()
	db, err := pebble.Open(dir, popts)
	if err != nil {
		if pebble.IsCorruptionError(err) {
			return nil, fmt.Errorf("%w: open %s: %w", ErrDamaged, dir, err)
		}
		return nil, fmt.Errorf("open projections %s: %w", dir, err)
	}
	s := &Store{db: db, set: set, log: opts.Logger, meta: make(map[string]meta), readOnly: opts.ReadOnly}
	if err := s.reconcile(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) reconcile() error {
	stored := map[string]meta{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pMeta}, UpperBound: []byte{pMeta + 1}})
	if err != nil {
		return fmt.Errorf("read projection metadata: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		var m meta
		name := string(it.Key()[1:])
		if err := json.Unmarshal(it.Value(), &m); err != nil {
			// Derived data: a damaged entry is rebuilt, not fatal.
			s.log.Warn("projection metadata unreadable; rebuilding the projection", "projection", name, "err", err)
			m = meta{}
		}
		stored[name] = m
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read projection metadata: %w", err)
	}
	if s.readOnly {
		for _, c := range s.set.list {
			if m, ok := stored[c.def.Name]; ok && m.Hash == c.hash {
				s.meta[c.def.Name] = m
			} else {
				s.meta[c.def.Name] = meta{Hash: c.hash}
			}
		}
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for name := range stored {
		if _, ok := s.set.byName[name]; !ok {
			s.log.Info("projection no longer defined; deleting its stored values", "projection", name)
			if err := clear(b, name); err != nil {
				return err
			}
			if err := b.Delete(metaKey(name), nil); err != nil {
				return err
			}
		}
	}
	for _, c := range s.set.list {
		name := c.def.Name
		m, ok := stored[name]
		switch {
		case !ok:
			s.log.Info("new projection; building it from the log", "projection", name)
		case m.Hash != c.hash:
			s.log.Info("projection definition changed; rebuilding it from the log", "projection", name, "was_applied", m.Applied)
			if err := clear(b, name); err != nil {
				return err
			}
		default:
			s.meta[name] = m
			continue
		}
		m = meta{Hash: c.hash}
		if err := putMeta(b, name, m); err != nil {
			return err
		}
		s.meta[name] = m
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("write projection metadata: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.readOnly {
		return s.db.Close()
	}
	if err := s.db.Flush(); err != nil {
		s.db.Close()
		return fmt.Errorf("flush projections: %w", err)
	}
	return s.db.Close()
}

func metaKey(name string) []byte { return append([]byte{pMeta}, name...) }

// dataPrefix is 'd' name 0x00; every key of the projection follows it.
func dataPrefix(name string) []byte {
	p := make([]byte, 0, len(name)+2)
	p = append(p, pData)
	p = append(p, name...)
	return append(p, 0)
}

// dataEnd is the first key after every key of the projection.
func dataEnd(name string) []byte {
	p := dataPrefix(name)
	p[len(p)-1] = 1
	return p
}

func clear(b *pebble.Batch, name string) error {
	if err := b.DeleteRange(dataPrefix(name), dataEnd(name), nil); err != nil {
		return fmt.Errorf("clear projection %s: %w", name, err)
	}
	return nil
}

func putMeta(b *pebble.Batch, name string, m meta) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(metaKey(name), v, nil)
}

// Applied is the number of leading log records every projection has
// folded: the point from which the follower must read.
func (s *Store) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	first := true
	var low uint64
	for _, m := range s.meta {
		if first || m.Applied < low {
			low, first = m.Applied, false
		}
	}
	return low
}

// Apply folds recs, which must hold consecutive seqs, into every projection
// that has not yet seen them. A projection's values and its new watermark
// are committed in one batch (one batch for all projections), so a crash
// keeps either all of these records' effects or none. Records a projection
// already folded are skipped; a projection that stopped before recs[0]
// gets ErrGap.
func (s *Store) Apply(recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.apply(recs, nil)
}

// apply folds recs into the projections in only (all when nil).
func (s *Store) apply(recs []*record.Record, only *compiled) error {
	first := recs[0].Seq
	end := first + uint64(len(recs))
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			return fmt.Errorf("apply records: seq %d follows seq %d", r.Seq, first+uint64(i)-1)
		}
	}
	s.mu.RLock()
	metas := make(map[string]meta, len(s.meta))
	for k, v := range s.meta {
		metas[k] = v
	}
	s.mu.RUnlock()

	lazy := make([]lazyRecord, len(recs))
	for i, r := range recs {
		lazy[i].r = r
	}
	b := s.db.NewBatch()
	defer b.Close()
	changed := map[string]meta{}
	for _, c := range s.set.list {
		if only != nil && c != only {
			continue
		}
		name := c.def.Name
		m := metas[name]
		if m.Applied >= end {
			continue
		}
		if m.Applied < first {
			return fmt.Errorf("%w: projection %s has folded %d records, offered seqs %d..%d", ErrGap, name, m.Applied, first, end-1)
		}
		ov := &overlay{db: s.db, prefix: dataPrefix(name), entries: map[string]*entry{}}
		var skipped []uint64
		var lastErr *evalError
		for i := m.Applied - first; i < uint64(len(recs)); i++ {
			err := c.step(ov, &lazy[i])
			var ee *evalError
			if errors.As(err, &ee) {
				skipped = append(skipped, recs[i].Seq)
				lastErr = ee
				continue
			}
			if err != nil {
				return fmt.Errorf("projection %s: seq %d: %w", name, recs[i].Seq, err)
			}
		}
		if len(skipped) > 0 {
			// The CEL error text may quote values from the record, which
			// may be personal data: log where, not what.
			s.log.Warn("projection expression failed; records skipped (evaluate the expression against GET /v1/records/{seq} to see why)",
				"projection", name, "field", lastErr.field, "first_seq", skipped[0], "count", len(skipped))
		}
		delta, err := ov.writeTo(b)
		if err != nil {
			return fmt.Errorf("projection %s: %w", name, err)
		}
		m.Applied = end
		m.Keys += delta
		m.Skipped += uint64(len(skipped))
		if err := putMeta(b, name, m); err != nil {
			return err
		}
		changed[name] = m
	}
	if len(changed) == 0 {
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write projections: %w", err)
	}
	s.mu.Lock()
	for k, v := range changed {
		s.meta[k] = v
	}
	s.mu.Unlock()
	return nil
}

// overlay is the view a batch folds into: values written in this batch,
// then the database.
type overlay struct {
	db      *pebble.DB
	prefix  []byte
	entries map[string]*entry
}

type entry struct {
	val     []byte // nil: absent
	existed bool   // held a value in the database
	dirty   bool
}

func (o *overlay) load(key string) (*entry, error) {
	if e, ok := o.entries[key]; ok {
		return e, nil
	}
	e := &entry{}
	v, closer, err := o.db.Get(append(bytes.Clone(o.prefix), key...))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read stored value: %w", err)
	default:
		e.val, e.existed = bytes.Clone(v), true
		closer.Close()
	}
	o.entries[key] = e
	return e, nil
}

func (o *overlay) get(key string) ([]byte, error) {
	e, err := o.load(key)
	if err != nil {
		return nil, err
	}
	return e.val, nil
}

func (o *overlay) put(key string, val []byte) error {
	e, err := o.load(key)
	if err != nil {
		return err
	}
	e.val, e.dirty = val, true
	return nil
}

// scan visits every key holding a value, database and overlay merged.
func (o *overlay) scan(fn func(key string, val []byte) error) error {
	end := bytes.Clone(o.prefix)
	end[len(end)-1] = 1
	it, err := o.db.NewIter(&pebble.IterOptions{LowerBound: o.prefix, UpperBound: end})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := string(it.Key()[len(o.prefix):])
		if _, ok := o.entries[k]; ok {
			continue
		}
		if err := fn(k, it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for k, e := range o.entries {
		if e.val != nil {
			if err := fn(k, e.val); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeTo adds the overlay's changes to b and returns the change in the
// number of keys holding a value.
func (o *overlay) writeTo(b *pebble.Batch) (int64, error) {
	var delta int64
	for k, e := range o.entries {
		if !e.dirty {
			continue
		}
		key := append(bytes.Clone(o.prefix), k...)
		var err error
		switch {
		case e.val != nil:
			err = b.Set(key, e.val, nil)
			if !e.existed {
				delta++
			}
		case e.existed:
			err = b.Delete(key, nil)
			delta--
		}
		if err != nil {
			return 0, err
		}
	}
	return delta, nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "projections")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "projections")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "projections", "fatal", true)
	panic(fmt.Sprintf(format, args...))
}
