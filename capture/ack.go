package capture

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// Acknowledger is the ordered "durable up to here" of a source: it appends
// jobs (the records of one or more upstream transactions and the upstream
// position just past them) on its own goroutine, in submission order, so
// reading and decoding the next changes overlaps with making the last ones
// durable. Only after a job's Append calls have all returned does its
// position become Durable and OnDurable run, so a source that acknowledges
// Durable() upstream, or saves it in a PositionStore, is never ahead of the
// log. P is the source's position type (an LSN, a GTID set, a map of shard
// sequence numbers); the acknowledger only carries it.
//
// After the first failed append the acknowledger refuses further jobs
// (Failed, Submit and Drain return the error): the source reconnects and
// its upstream sends again from the last durable position.
type Acknowledger[P any] struct {
	opt  AckOptions[P]
	jobs chan ackJob[P]
	wg   sync.WaitGroup

	done     atomic.Pointer[P] // position of the last durable job
	inflight atomic.Int64      // jobs handed over and not yet finished
	err      atomic.Pointer[error]
}

// AckOptions configures an Acknowledger.
type AckOptions[P any] struct {
	Sink Sink
	// BatchSize is the most records per Append (default 1000).
	BatchSize int
	// Queue bounds the jobs handed over and not yet durable (default 8):
	// a source decodes at most that far ahead of the log.
	Queue int
	// Coalesce, when above BatchSize, lets the acknowledger merge the jobs
	// already waiting in the queue, up to Coalesce records, into one
	// Append. Each Append pays a fixed cost (an fsync); when the sink is
	// the bottleneck, jobs queue up and the merged appends grow with the
	// backlog, while a light load keeps appending each job at once. A
	// job larger than Coalesce is still appended in BatchSize pieces.
	Coalesce int
	// Pipeline, when above 1 and the Sink is an AsyncSink, is how many
	// appends may be queued in the sink at once: the next batch is
	// prepared (encoded, its index entries built) and queued while the
	// last is made durable, and batches queued while the sink's writer
	// is busy share its next fsync. Coalesce above BatchSize turns it
	// off.
	Pipeline int
	// Progress, when set, counts appended records and is told when
	// nothing is in flight any more.
	Progress *Progress
	// OnDurable, when set, runs on the acknowledger's goroutine after each
	// job's records are durable, in order, with the job's position. An
	// error fails the acknowledger like a failed append. Saving the
	// position in a PositionStore belongs here: the runtime, not each
	// source, keeps the rule that a position is stored only after the
	// records before it.
	OnDurable func(ctx context.Context, pos P) error
}

type ackJob[P any] struct {
	recs []*record.Record
	pos  P
	// barrier, when set, is closed once every earlier job is done.
	barrier chan struct{}
}

// NewAcknowledger starts the acknowledger's goroutine; Stop ends it. ctx
// bounds the appends.
func NewAcknowledger[P any](ctx context.Context, opt AckOptions[P]) *Acknowledger[P] {
	if opt.BatchSize <= 0 {
		opt.BatchSize = 1000
	}
	if opt.Queue <= 0 {
		opt.Queue = 8
	}
	a := &Acknowledger[P]{opt: opt, jobs: make(chan ackJob[P], opt.Queue)}
	if as, ok := opt.Sink.(AsyncSink); ok && opt.Pipeline > 1 && opt.Coalesce <= opt.BatchSize {
		a.wg.Go(func() { a.pipelined(ctx, as) })
		return a
	}
	a.wg.Go(func() {
		var group []ackJob[P]
		var carry *ackJob[P] // taken from the queue, not fitting the last group
		for {
			var job ackJob[P]
			if carry != nil {
				job, carry = *carry, nil
			} else {
				j, ok := <-a.jobs
				if !ok {
					return
				}
				job = j
			}
			if job.barrier != nil {
				close(job.barrier)
				a.inflight.Add(-1)
				continue
			}
			// A merged group gets its own slice: the sink may keep the
			// one it was given (an index that follows asynchronously).
			group = append(group[:0], job)
			recs := job.recs
			if opt.Coalesce > opt.BatchSize {
			more:
				for len(recs) < opt.Coalesce {
					select {
					case j, ok := <-a.jobs:
						if !ok {
							break more
						}
						if j.barrier != nil || len(recs)+len(j.recs) > opt.Coalesce {
							carry = &j
							break more
						}
						if len(group) == 1 {
							recs = append(make([]*record.Record, 0, opt.Coalesce), recs...)
						}
						group, recs = append(group, j), append(recs, j.recs...)
					default:
						break more
					}
				}
			}
			if a.err.Load() == nil {
				if err := a.run(ctx, group, recs); err != nil {
					a.err.Store(&err)
				}
			}
			a.inflight.Add(-int64(len(group)))
		}
	})
	return a
}

// run appends the records of a group of consecutive jobs and then makes
// each job's position durable, in order.
func (a *Acknowledger[P]) run(ctx context.Context, group []ackJob[P], recs []*record.Record) error {
	size := a.opt.BatchSize
	if len(group) > 1 || len(recs) <= a.opt.Coalesce {
		size = max(size, a.opt.Coalesce)
	}
	if err := a.append(ctx, recs, size); err != nil {
		return err
	}
	for _, job := range group {
		if a.opt.OnDurable != nil {
			if err := a.opt.OnDurable(ctx, job.pos); err != nil {
				return fmt.Errorf("after the append of %d records: %w", len(recs), err)
			}
		}
		pos := job.pos
		a.done.Store(&pos)
	}
	if a.opt.Progress != nil && a.inflight.Load() == int64(len(group)) {
		a.opt.Progress.CaughtUp()
	}
	return nil
}

// AsyncSink is a Sink that can queue a batch and answer later
// (*logstore.Store's AppendAsync): appends queued by one goroutine are
// stored in the order queued, and one queued with after set fails if the
// append after belongs to failed. See AckOptions.Pipeline.
type AsyncSink interface {
	Sink
	AppendAsync(ctx context.Context, recs []*record.Record, after func() bool) (wait func(context.Context) ([]stele.Appended, error), failed func() bool, err error)
}

// queuedAppend is one append queued in an AsyncSink, with the jobs whose
// last records it holds (their positions become durable with it).
type queuedAppend[P any] struct {
	wait func(context.Context) ([]stele.Appended, error)
	n    int
	pos  []P
}

// pipelined is the acknowledger's loop with an AsyncSink: up to
// opt.Pipeline appends queued at once, answered in order.
func (a *Acknowledger[P]) pipelined(ctx context.Context, sink AsyncSink) {
	var (
		out   []queuedAppend[P] // queued, oldest first
		after func() bool       // the last queued append's failed
	)
	// finish waits for the oldest queued append and makes its jobs'
	// positions durable.
	finish := func() {
		q := out[0]
		out[0] = queuedAppend[P]{}
		out = out[1:]
		if a.err.Load() == nil {
			if _, err := q.wait(ctx); err != nil {
				err = fmt.Errorf("append %d records to the log: %w", q.n, err)
				a.err.Store(&err)
			} else if a.opt.Progress != nil {
				a.opt.Progress.Appended(q.n)
			}
		}
		a.complete(ctx, q.pos)
	}
	handle := func(job ackJob[P]) {
		if job.barrier != nil {
			for len(out) > 0 {
				finish()
			}
			close(job.barrier)
			a.inflight.Add(-1)
			return
		}
		for lo := 0; lo < len(job.recs) && a.err.Load() == nil; lo += a.opt.BatchSize {
			if len(out) >= a.opt.Pipeline {
				finish()
			}
			piece := job.recs[lo:min(lo+a.opt.BatchSize, len(job.recs))]
			wait, failed, err := queueRetry(ctx, sink, piece, after)
			if err != nil {
				a.err.Store(&err)
				break
			}
			after = failed
			out = append(out, queuedAppend[P]{wait: wait, n: len(piece)})
		}
		if len(out) > 0 {
			// Durable once the last append queued so far is: its own
			// records, or (none) those of the jobs before it.
			last := &out[len(out)-1]
			last.pos = append(last.pos, job.pos)
			return
		}
		a.complete(ctx, []P{job.pos})
	}
	for {
		var job ackJob[P]
		var ok bool
		if len(out) == 0 {
			job, ok = <-a.jobs
		} else {
			// The next job, when one is waiting, is prepared and queued
			// before the oldest append's answer is awaited.
			select {
			case job, ok = <-a.jobs:
			default:
				finish()
				continue
			}
		}
		if !ok {
			for len(out) > 0 {
				finish()
			}
			return
		}
		handle(job)
	}
}

// complete ends jobs whose records are durable (or failed: then no
// position moves).
func (a *Acknowledger[P]) complete(ctx context.Context, done []P) {
	for _, pos := range done {
		if a.err.Load() != nil {
			break
		}
		if a.opt.OnDurable != nil {
			if err := a.opt.OnDurable(ctx, pos); err != nil {
				err = fmt.Errorf("after an append: %w", err)
				a.err.Store(&err)
				break
			}
		}
		a.done.Store(&pos)
	}
	if a.inflight.Add(-int64(len(done))) == 0 && a.opt.Progress != nil && a.err.Load() == nil {
		a.opt.Progress.CaughtUp()
	}
}

// queueRetry queues batch in sink, waiting out overload as AppendRetry does.
func queueRetry(ctx context.Context, sink AsyncSink, batch []*record.Record, after func() bool) (func(context.Context) ([]stele.Appended, error), func() bool, error) {
	wait := 10 * time.Millisecond
	for {
		w, failed, err := sink.AppendAsync(ctx, batch, after)
		if err == nil {
			return w, failed, nil
		}
		if !errors.Is(err, stele.ErrOverloaded) {
			return nil, nil, fmt.Errorf("append %d records to the log: %w", len(batch), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}

// Append appends recs now, on the caller's goroutine, in batches of
// BatchSize, waiting out overload (AppendRetry). A source uses it for what
// must not wait in the queue, such as a spilled transaction read back from
// disk after Drain; it moves no position.
func (a *Acknowledger[P]) Append(ctx context.Context, recs []*record.Record) error {
	return a.append(ctx, recs, a.opt.BatchSize)
}

func (a *Acknowledger[P]) append(ctx context.Context, recs []*record.Record, bs int) error {
	for lo := 0; lo < len(recs); lo += bs {
		batch := recs[lo:min(lo+bs, len(recs))]
		if _, err := AppendRetry(ctx, a.opt.Sink, batch); err != nil {
			return err
		}
		if a.opt.Progress != nil {
			a.opt.Progress.Appended(len(batch))
		}
	}
	return nil
}

// Submit hands the records up to pos over, waiting while the queue is full.
// recs may be empty: pos then becomes durable once the jobs before it are.
func (a *Acknowledger[P]) Submit(ctx context.Context, recs []*record.Record, pos P) error {
	return a.submit(ctx, ackJob[P]{recs: recs, pos: pos})
}

func (a *Acknowledger[P]) submit(ctx context.Context, job ackJob[P]) error {
	if err := a.Failed(); err != nil {
		return err
	}
	a.inflight.Add(1)
	select {
	case a.jobs <- job:
		return nil
	case <-ctx.Done():
		a.inflight.Add(-1)
		return ctx.Err()
	}
}

// Drain waits until every submitted job is durable (or failed).
func (a *Acknowledger[P]) Drain(ctx context.Context) error {
	barrier := make(chan struct{})
	if err := a.submit(ctx, ackJob[P]{barrier: barrier}); err != nil {
		return err
	}
	select {
	case <-barrier:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.Failed()
}

// Failed is the error of the first failed job (nil: none).
func (a *Acknowledger[P]) Failed() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Durable is the position of the last job made durable (ok false: none yet).
func (a *Acknowledger[P]) Durable() (pos P, ok bool) {
	if p := a.done.Load(); p != nil {
		return *p, true
	}
	return pos, false
}

// Inflight is the number of jobs handed over and not yet finished.
func (a *Acknowledger[P]) Inflight() int64 { return a.inflight.Load() }

// Stop finishes the queued jobs and ends the goroutine.
func (a *Acknowledger[P]) Stop() {
	close(a.jobs)
	a.wg.Wait()
}
