package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stele/stele/record"
)

// Log is what projections need from the store of record (logstore.Store).
type Log interface {
	// Size is the number of durable records.
	Size() uint64
	// Replay decodes records [from, to) in order and hands them to fn in
	// batches of at most batch.
	Replay(ctx context.Context, from, to uint64, batch int, fn func([]*record.Record) error) error
}

// Batch sizes: live batches stay small so a value is visible soon after
// its record; a rebuild reads larger ones.
const (
	liveBatch    = 1024
	rebuildBatch = 4096
)

// CatchUp folds every durable record the projections have not seen.
func (s *Store) CatchUp(ctx context.Context, src Log) error {
	if len(s.set.list) == 0 {
		return nil
	}
	from, to := s.Applied(), src.Size()
	if from > to {
		return fmt.Errorf("projections have folded %d records but the log holds %d: they belong to another data directory; delete %s and restart", from, to, "projections/")
	}
	return src.Replay(ctx, from, to, liveBatch, s.Apply)
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// Poll is how often the log's size is checked (default 50ms). Polling
	// reads one atomic; appends are never slowed.
	Poll time.Duration
	// Wake, if set, triggers a check as soon as it receives (or is closed
	// and replaced by a notifier); polling continues as a fallback.
	Wake <-chan struct{}
}

// Follow keeps the projections current with src until ctx ends. Errors
// are logged and retried on the next poll; it returns ctx's error.
func (s *Store) Follow(ctx context.Context, src Log, opts FollowOptions) error {
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	t := time.NewTicker(opts.Poll)
	defer t.Stop()
	var failing bool
	for {
		err := s.CatchUp(ctx, src)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !failing:
			s.log.Error("projections cannot follow the log; retrying", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("projections follow the log again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-opts.Wake:
		}
	}
}

// WaitApplied blocks until every projection has folded the first n
// records, polling every few milliseconds.
func (s *Store) WaitApplied(ctx context.Context, n uint64) error {
	for s.Applied() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("projections at %d of %d records: %w", s.Applied(), n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Rebuild clears the named projection and folds the whole log into it
// again. progress, if set, is called after each batch with the records
// done and the total.
func (s *Store) Rebuild(ctx context.Context, name string, src Log, progress func(done, total uint64)) error {
	c, ok := s.set.byName[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	b := s.db.NewBatch()
	if err := clear(b, name); err != nil {
		b.Close()
		return err
	}
	m := meta{Hash: c.hash}
	if err := putMeta(b, name, m); err != nil {
		b.Close()
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		b.Close()
		return fmt.Errorf("clear projection %s: %w", name, err)
	}
	b.Close()
	s.mu.Lock()
	s.meta[name] = m
	s.mu.Unlock()

	total := src.Size()
	err := src.Replay(ctx, 0, total, rebuildBatch, func(recs []*record.Record) error {
		if err := s.apply(recs, c); err != nil {
			return err
		}
		if progress != nil {
			progress(recs[len(recs)-1].Seq+1, total)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild projection %s: %w", name, err)
	}
	if err := s.db.Flush(); err != nil && !errors.Is(err, pebble.ErrClosed) {
		return fmt.Errorf("rebuild projection %s: %w", name, err)
	}
	return nil
}
