package schema

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stele/stele/internal/atomicfile"
)

// Registry holds every version of every subject's schema, compiled, and
// persists them under a directory:
//
//	<dir>/<subject>/000001.json   version 1, canonical JSON
//	<dir>/<subject>/000002.json   version 2 ...
//
// A version file is written to a temporary name, fsync'd, renamed into
// place and its directory fsync'd, so after a crash a version is either
// complete or absent. Versions are never rewritten or removed: records name
// the {subject, version} they were validated and sealed under.
type Registry struct {
	dir string

	// putMu serialises Puts, so version numbers are dense, and is held
	// across the fsyncs.
	putMu sync.Mutex
	// subjects holds each subject's versions in order (index i is version
	// i+1). Put publishes a new map rather than changing this one: lookups
	// run for every appended record, on every core, and a lock word they
	// all write would bounce between the cores' caches.
	subjects atomic.Pointer[map[string][]*Schema]
}

const versionExt = ".json"

// Open loads and compiles every stored version under dir, creating dir if
// needed. A version that no longer compiles, or a gap in the version
// numbers, is an error: the registry refuses to run on a damaged store.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	r := &Registry{dir: dir}
	subjects := make(map[string][]*Schema)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		subject := e.Name()
		if ValidSubject(subject) != nil {
			return nil, fmt.Errorf("schema registry %s: directory %q is not a subject name", dir, subject)
		}
		versions, err := loadSubject(filepath.Join(dir, subject), subject)
		if err != nil {
			return nil, fmt.Errorf("schema registry %s: %w", dir, err)
		}
		if len(versions) > 0 {
			subjects[subject] = versions
		}
	}
	r.subjects.Store(&subjects)
	return r, nil
}

func loadSubject(sdir, subject string) ([]*Schema, error) {
	entries, err := os.ReadDir(sdir)
	if err != nil {
		return nil, err
	}
	var versions []*Schema
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			// A Put that crashed before its rename never happened.
			if err := os.Remove(filepath.Join(sdir, name)); err != nil {
				return nil, err
			}
			continue
		}
		num, ok := strings.CutSuffix(name, versionExt)
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("subject %s: unexpected file %q (want <version>%s)", subject, name, versionExt)
		}
		if n != len(versions)+1 {
			return nil, fmt.Errorf("subject %s: version %d is missing (found %s)", subject, len(versions)+1, name)
		}
		raw, err := os.ReadFile(filepath.Join(sdir, name))
		if err != nil {
			return nil, err
		}
		s, err := Compile(subject, n, raw)
		if err != nil {
			return nil, fmt.Errorf("subject %s version %d (%s): %w", subject, n, name, err)
		}
		versions = append(versions, s)
	}
	return versions, nil
}

// Put registers schemaJSON as the next version of subject and returns its
// version number, with created false when it is identical (in canonical
// form) to the latest version, whose number is returned instead. It fails
// with ErrInvalidSubject, ErrInvalidSchema (*SchemaError) or ErrIncompatible
// (*IncompatibleError; the rule is CheckCompatible's).
func (r *Registry) Put(ctx context.Context, subject string, schemaJSON []byte) (version int, created bool, err error) {
	s, err := Compile(subject, 0, schemaJSON)
	if err != nil {
		return 0, false, err
	}
	r.putMu.Lock()
	defer r.putMu.Unlock()
	versions := (*r.subjects.Load())[subject]
	if n := len(versions); n > 0 {
		latest := versions[n-1]
		if string(latest.Raw) == string(s.Raw) {
			return latest.Version, false, nil
		}
		if err := CheckCompatible(latest, s); err != nil {
			return 0, false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	s.Version = len(versions) + 1
	if err := r.write(subject, s.Version, s.Raw); err != nil {
		return 0, false, fmt.Errorf("schema registry: store %s version %d: %w", subject, s.Version, err)
	}
	next := maps.Clone(*r.subjects.Load())
	next[subject] = append(slices.Clip(versions), s)
	r.subjects.Store(&next)
	return s.Version, true, nil
}

func (r *Registry) write(subject string, version int, raw []byte) error {
	sdir := filepath.Join(r.dir, subject)
	if _, err := os.Stat(sdir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(sdir, 0o755); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(r.dir); err != nil {
			return err
		}
	}
	final := filepath.Join(sdir, fmt.Sprintf("%06d%s", version, versionExt))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, not rename: it fails if the version exists, so a version
		// file is never replaced whatever happens around us.
		err = os.Link(tmp, final)
	}
	if rerr := os.Remove(tmp); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(sdir)
}

// Latest returns the newest version of subject, or ErrNotFound.
func (r *Registry) Latest(subject string) (*Schema, error) {
	versions := (*r.subjects.Load())[subject]
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: no schema for subject %q", ErrNotFound, subject)
	}
	return versions[len(versions)-1], nil
}

// Version returns version n of subject, or ErrNotFound.
func (r *Registry) Version(subject string, n int) (*Schema, error) {
	versions := (*r.subjects.Load())[subject]
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: no schema for subject %q", ErrNotFound, subject)
	}
	if n < 1 || n > len(versions) {
		return nil, fmt.Errorf("%w: subject %q has no version %d (versions 1 to %d)", ErrNotFound, subject, n, len(versions))
	}
	return versions[n-1], nil
}

// Subjects lists the registered subjects in lexical order.
func (r *Registry) Subjects() []string {
	subjects := *r.subjects.Load()
	out := make([]string, 0, len(subjects))
	for s := range subjects {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
