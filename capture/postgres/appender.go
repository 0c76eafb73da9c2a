package postgres

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/jackc/pglogrepl"

	"github.com/stele/stele/record"
)

// appender appends committed transactions on its own goroutine, in commit
// order, so decoding the next transactions overlaps with making the last
// ones durable. The stream acknowledges a position to the server only
// after the appender reports it durable (durable()).
type appender struct {
	x    *stream
	jobs chan appendJob
	wg   sync.WaitGroup

	done     atomic.Uint64 // end LSN of the last durable job
	inflight atomic.Int64  // jobs handed over and not yet durable
	err      atomic.Pointer[error]
}

type appendJob struct {
	recs []*record.Record
	end  pglogrepl.LSN
	// barrier, when set, is closed once every earlier job is done.
	barrier chan struct{}
}

// appendQueue bounds the transactions decoded ahead of the log.
const appendQueue = 8

func newAppender(ctx context.Context, x *stream) *appender {
	a := &appender{x: x, jobs: make(chan appendJob, appendQueue)}
	a.wg.Go(func() {
		for job := range a.jobs {
			if job.barrier != nil {
				close(job.barrier)
				a.inflight.Add(-1)
				continue
			}
			if a.err.Load() == nil {
				if err := a.append(ctx, job); err != nil {
					a.err.Store(&err)
				} else {
					a.done.Store(uint64(job.end))
				}
			}
			a.inflight.Add(-1)
		}
	})
	return a
}

func (a *appender) append(ctx context.Context, job appendJob) error {
	batchSize := a.x.src.cfg.BatchSize
	for lo := 0; lo < len(job.recs); lo += batchSize {
		if err := a.x.appendBatch(ctx, job.recs[lo:min(lo+batchSize, len(job.recs))]); err != nil {
			return err
		}
	}
	a.x.src.stats.observe(0, job.end)
	if a.inflight.Load() == 1 {
		a.x.src.stats.pending.Store(0)
	}
	return nil
}

// submit hands a job over, waiting while the queue is full.
func (a *appender) submit(ctx context.Context, job appendJob) error {
	if err := a.failed(); err != nil {
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

// drain waits until every submitted job is durable (or failed).
func (a *appender) drain(ctx context.Context) error {
	barrier := make(chan struct{})
	if err := a.submit(ctx, appendJob{barrier: barrier}); err != nil {
		return err
	}
	select {
	case <-barrier:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.failed()
}

func (a *appender) failed() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}

// durable is the end LSN of the last transaction known durable (0: none).
func (a *appender) durable() pglogrepl.LSN { return pglogrepl.LSN(a.done.Load()) }

// stop finishes queued jobs and ends the goroutine.
func (a *appender) stop() {
	close(a.jobs)
	a.wg.Wait()
}
