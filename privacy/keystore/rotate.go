package keystore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele/internal/vfs"
)

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
		_ = s.fs.RemoveAll(newDir)
		return fmt.Errorf("keystore: rotate %s -> %s: %w", from.ID(), to.ID(), err)
	}
	if err := s.fs.RemoveAll(newDir); err != nil {
		return abort(err)
	}
	if err := s.writeGenHeader(ctx, newDir, to, s.destroyed); err != nil {
		return abort(err)
	}
	// Shards are re-wrapped and written by a few workers at once: fsyncs of
	// different files overlap, and a remote master (Vault) is called
	// concurrently instead of one round trip at a time.
	var newEntries [numShards]map[kidT]*entry
	var n atomic.Int64
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstErr error
	var errOnce sync.Once
	work := make(chan int)
	var wg sync.WaitGroup
	for range rotateWorkers {
		wg.Go(func() {
			for i := range work {
				m, err := s.rotateShard(wctx, i, from, to, newDir)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					continue
				}
				newEntries[i] = m
				n.Add(int64(len(m)))
			}
		})
	}
	for i := range s.shards {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return abort(firstErr)
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
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
	f, err := s.fs.OpenFile(filepath.Join(newDir, "DESTROYED"), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.failed = fmt.Errorf("keystore: after rotation: DESTROYED: %w", err)
		return s.failed
	}
	s.destroyedF = f
	if err := s.fs.RemoveAll(oldDir); err != nil {
		return fmt.Errorf("keystore: rotated to %s, but removing the old generation failed (Open retries): %w", to.ID(), err)
	}
	if err := vfs.SyncDir(s.fs, s.dir); err != nil {
		return fmt.Errorf("keystore: rotated to %s: %w", to.ID(), err)
	}
	s.log.Info("keystore: rotated master key", "from", from.ID(), "to", to.ID(), "keys", n.Load(), "took", time.Since(start))
	return nil
}

const rotateWorkers = 8

// rotateShard re-wraps shard i's entries under to and writes them, fsynced,
// into newDir. s.mu is held by Rotate; the shard is only read.
func (s *Store) rotateShard(ctx context.Context, i int, from, to MasterKey, newDir string) (map[kidT]*entry, error) {
	sh := s.shards[i]
	out := make(map[kidT]*entry, len(sh.entries))
	var buf, scratch []byte
	for k, e := range sh.entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		plain, err := from.Unwrap(ctx, e.wrapped)
		if err != nil {
			return nil, fmt.Errorf("kid %s: %w", k, err)
		}
		key, err := keyFromPlain(e, plain)
		if err != nil {
			clear(plain)
			return nil, err
		}
		ne := &entry{kind: e.kind, kid: e.kid, name: e.name, masterID: to.ID()}
		np := wrapPlain(ne, key)
		clear(plain)
		ne.wrapped, err = to.Wrap(ctx, np)
		clear(np)
		if err != nil {
			return nil, fmt.Errorf("kid %s: wrap: %w", k, err)
		}
		if len(ne.wrapped) > 0xffff {
			return nil, fmt.Errorf("kid %s: master %s wrapped a key into %d bytes", k, to.ID(), len(ne.wrapped))
		}
		out[k] = ne
		buf, scratch = appendEntryFrame(buf, ne, scratch)
	}
	if len(buf) > 0 {
		if err := writeFileSync(s.fs, filepath.Join(newDir, shardName(i)), buf); err != nil {
			return nil, err
		}
	}
	return out, nil
}
