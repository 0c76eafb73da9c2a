package projection

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Info describes one projection and how far it has got.
type Info struct {
	Definition
	// Applied is the number of leading log records folded.
	Applied uint64 `json:"applied"`
	// Keys is the number of keys holding a value.
	Keys int64 `json:"keys"`
	// Skipped counts records skipped because an expression failed on them.
	Skipped uint64 `json:"skipped"`
}

// List describes every projection, in definition order.
func (s *Store) List() []Info {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Info, 0, len(s.set.list))
	for _, c := range s.set.list {
		m := s.meta[c.def.Name]
		out = append(out, Info{Definition: c.def, Applied: m.Applied, Keys: m.Keys, Skipped: m.Skipped})
	}
	return out
}

// Info describes the named projection.
func (s *Store) Info(name string) (Info, error) {
	c, ok := s.set.byName[name]
	if !ok {
		return Info{}, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.meta[name]
	return Info{Definition: c.def, Applied: m.Applied, Keys: m.Keys, Skipped: m.Skipped}, nil
}

// Entry is one key's value.
type Entry struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Page is one page of a projection's entries, in key order (bytewise).
type Page struct {
	Info    Info
	Entries []Entry
	// More reports that entries follow the last one.
	More bool
}

// Get returns the value of key in the named projection.
func (s *Store) Get(name, key string) (Entry, Info, error) {
	info, err := s.Info(name)
	if err != nil {
		return Entry{}, info, err
	}
	v, closer, err := s.db.Get(append(dataPrefix(name), key...))
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, info, ErrNotFound
	}
	if err != nil {
		return Entry{}, info, fmt.Errorf("read projection %s: %w", name, err)
	}
	defer closer.Close()
	return Entry{Key: key, Value: bytes.Clone(v)}, info, nil
}

// List returns up to limit entries of the named projection whose keys sort
// after the key after (from the first when hasAfter is false).
func (s *Store) Page(name string, after string, hasAfter bool, limit int) (*Page, error) {
	info, err := s.Info(name)
	if err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("limit %d: want at least 1", limit)
	}
	prefix := dataPrefix(name)
	lower := prefix
	if hasAfter {
		// The smallest key greater than after.
		lower = append(append(bytes.Clone(prefix), after...), 0)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: dataEnd(name)})
	if err != nil {
		return nil, fmt.Errorf("read projection %s: %w", name, err)
	}
	p := &Page{Info: info}
	for it.First(); it.Valid(); it.Next() {
		if len(p.Entries) == limit {
			p.More = true
			break
		}
		p.Entries = append(p.Entries, Entry{Key: string(it.Key()[len(prefix):]), Value: bytes.Clone(it.Value())})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read projection %s: %w", name, err)
	}
	return p, nil
}

// Scan visits every entry of the named projection in key order; fn's
// arguments are valid only during the call.
func (s *Store) Scan(name string, fn func(key, value []byte) error) error {
	if _, ok := s.set.byName[name]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	prefix := dataPrefix(name)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: dataEnd(name)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key()[len(prefix):], it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}
