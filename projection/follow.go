package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stele/stele/follow"
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

// FollowLog is what Follow needs from the store of record: what every
// follower of the log needs.
type FollowLog = follow.Log

// FollowOptions tune Follow. The zero value works.
type FollowOptions struct {
	// Metrics, if set, reports the projections' lag as follower
	// "projections".
	Metrics *follow.Metrics
	// RetryWait is the pause before following again after a failure
	// (default 1s).
	RetryWait time.Duration
}

// Follow keeps the projections current with src until ctx ends, waking on
// the log's change notification. Each batch is folded before the next is
// read, so a slow projection holds back only itself. A failure is logged
// and following restarts from the projections' own watermark (at once
// after a rebuild moved it, else after RetryWait); it returns ctx's error.
func (s *Store) Follow(ctx context.Context, src FollowLog, opts FollowOptions) error {
	if opts.RetryWait <= 0 {
		opts.RetryWait = time.Second
	}
	if len(s.set.list) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	f := follow.New(src, follow.Options{Name: "projections", Batch: liveBatch, Metrics: opts.Metrics})
	var failing bool
	for {
		err := f.Run(ctx, s.Applied(), func(_ context.Context, b follow.Batch) error {
			if err := s.Apply(b.Records); err != nil {
				return err
			}
			if failing {
				s.log.Info("projections follow the log again")
				failing = false
			}
			return nil
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrGap) {
			// A rebuild moved a watermark while this batch was read:
			// continue from where the projections now stand.
			continue
		}
		if errors.Is(err, follow.ErrAhead) {
			err = fmt.Errorf("projections have folded %d records but the log holds %d: they belong to another data directory; delete projections/ and restart: %w", s.Applied(), src.Size(), err)
		}
		if !failing {
			s.log.Error("projections cannot follow the log; retrying", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.RetryWait):
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
