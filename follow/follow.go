// Package follow is the one way to follow Stele's log: read records from a
// seq on, in order, in batches, wake on the store's change notification
// instead of polling, and report the same lag metrics for every follower.
//
// The lineage publisher (publish), the projections (projection) and the
// live Server-Sent Events stream (api) all follow the log through a
// Follower. They depend only on the small Log interface defined here, never
// on the store implementation, which satisfies it (*logstore.Store).
//
// A Follower hands fn one batch at a time and reads the next only after fn
// returns, so a slow consumer holds back nothing but itself (backpressure):
// the log keeps the backlog, and the lag metrics show it. Progress is what
// fn has returned for; a consumer that must survive a restart keeps its own
// durable position (the projections' watermark, the stream's last message)
// and starts the next Run from there.
//
// The model is tessera's Follower (a named follower reading the log and
// reporting entries processed), reduced to what a single local store needs.
package follow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stele/stele/record"
)

// Log is what a follower needs from the store of record.
type Log interface {
	// Size is the number of durable records.
	Size() uint64
	// Changed returns a channel closed once the log grows past the size it
	// had when Changed was called. Followers call it before Size, so a
	// commit that Size missed is sure to close the channel.
	Changed() <-chan struct{}
	// ReadRaw returns the stored bytes of the durable record at seq.
	ReadRaw(seq uint64) ([]byte, error)
}

// RangeReader is a Log that can also read the stored bytes of consecutive
// records at once (*logstore.Store does): one read for many records
// instead of one per record.
type RangeReader interface {
	// ReadRawRange appends to dst the stored bytes of up to max durable
	// records from seq from on, at least one, and returns dst.
	ReadRawRange(from uint64, max int, dst [][]byte) ([][]byte, error)
}

// DefaultBatch bounds the records of one callback when Options.Batch is 0.
const DefaultBatch = 1024

// ErrAhead means a follower was asked to start past the end of the log: its
// position belongs to another log (a restored or replaced data directory).
var ErrAhead = errors.New("follow: start is beyond the end of the log")

// ReadError is a record the follower could not read or decode. It ends Run,
// because skipping a seq would leave a gap the consumer never learns about.
type ReadError struct {
	Seq uint64
	Err error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("follow: record %d cannot be read (run `stele verify` on the data directory): %v", e.Seq, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// Batch is what fn receives: consecutive records in log order.
type Batch struct {
	// Records are decoded, with Seq and RecordedAt set; Records[i].Seq is
	// Records[0].Seq+i. The slice is reused after fn returns; the records
	// are not.
	Records []*record.Record
	// Size is the log's size when the batch was read: the batch ends at
	// Size when the follower has caught up (nothing else is waiting).
	Size uint64
}

// Next is the seq after the batch.
func (b Batch) Next() uint64 { return b.Records[0].Seq + uint64(len(b.Records)) }

// CaughtUp reports whether the batch reached the end of the log as it was
// when the batch was read.
func (b Batch) CaughtUp() bool { return b.Next() >= b.Size }

// Options tune a Follower. The zero value works.
type Options struct {
	// Name labels the follower's metrics (publish, projections, sse, …).
	// Followers sharing a name are reported together (see Metrics).
	Name string
	// Batch bounds the records of one callback (default DefaultBatch).
	Batch int
	// Metrics, if set, receives the follower's lag and progress while Run
	// runs.
	Metrics *Metrics
	// IdleEvery and Idle: while the follower waits for new records, Idle
	// is called every IdleEvery (a live stream's heartbeat). An error from
	// Idle ends Run with that error. Both must be set for Idle to be used.
	IdleEvery time.Duration
	Idle      func(ctx context.Context, next uint64) error
}

// Follower follows one log. One Follower runs at most one Run at a time.
type Follower struct {
	log  Log
	opts Options
}

// New returns a follower of log.
func New(log Log, opts Options) *Follower {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	return &Follower{log: log, opts: opts}
}

// Run hands fn every record from seq from on, in order, in batches of at
// most Options.Batch, and waits for the log to grow when it has caught up.
// It returns when ctx ends (ctx's error), when fn or Idle returns an error
// (that error, unchanged), or when a record cannot be read (*ReadError).
// A from past the end of the log is ErrAhead.
func (f *Follower) Run(ctx context.Context, from uint64, fn func(context.Context, Batch) error) error {
	recs := make([]*record.Record, 0, min(f.opts.Batch, 256))
	return f.run(ctx, from, func(seq, _ uint64) (uint64, error) {
		r, err := f.read(seq)
		if err != nil {
			return 0, err
		}
		recs = append(recs, r)
		return 1, nil
	}, func(ctx context.Context, size uint64) error {
		err := fn(ctx, Batch{Records: recs, Size: size})
		clear(recs) // the consumer may keep records; the follower does not
		recs = recs[:0]
		return err
	})
}

// RawBatch is what RunRaw's fn receives: the stored bytes (record.Encode's
// form, checked against their frame checksum and seq) of consecutive
// records in log order.
type RawBatch struct {
	// From is the seq of Records[0]; Records[i] is the record at From+i.
	// The slice is reused after fn returns; the byte slices are not.
	From    uint64
	Records [][]byte
	// Size is the log's size when the batch was read.
	Size uint64
}

// RunRaw is Run for a consumer that reads the stored bytes itself instead
// of a decoded record: the lineage publisher splices them into its events,
// and decoding each record only to encode it again cost it a quarter of
// its CPU. A log that is also a RangeReader is read a range at a time.
func (f *Follower) RunRaw(ctx context.Context, from uint64, fn func(context.Context, RawBatch) error) error {
	recs := make([][]byte, 0, min(f.opts.Batch, 256))
	first := from
	ranges, _ := f.log.(RangeReader)
	return f.run(ctx, from, func(seq, n uint64) (uint64, error) {
		if len(recs) == 0 {
			first = seq
		}
		if ranges == nil {
			raw, err := f.log.ReadRaw(seq)
			if err != nil {
				return 0, &ReadError{Seq: seq, Err: err}
			}
			recs = append(recs, raw)
			return 1, nil
		}
		had := len(recs)
		var err error
		recs, err = ranges.ReadRawRange(seq, int(n), recs)
		got := uint64(len(recs) - had)
		if err == nil && got == 0 {
			err = errors.New("the log returned no record")
		}
		if err != nil {
			return 0, &ReadError{Seq: seq + got, Err: err}
		}
		return got, nil
	}, func(ctx context.Context, size uint64) error {
		err := fn(ctx, RawBatch{From: first, Records: recs, Size: size})
		clear(recs)
		recs = recs[:0]
		return err
	})
}

// run is the loop of Run and RunRaw: read collects up to n records from
// seq on into the batch and says how many (at least one, or an error), and
// deliver hands the batch to the consumer and empties it.
func (f *Follower) run(ctx context.Context, from uint64, read func(seq, n uint64) (uint64, error), deliver func(ctx context.Context, size uint64) error) error {
	var pos *position
	if f.opts.Metrics != nil {
		pos = f.opts.Metrics.track(f.opts.Name, f.log, from)
		defer f.opts.Metrics.untrack(f.opts.Name, pos)
	}
	var idle <-chan time.Time
	if f.opts.Idle != nil && f.opts.IdleEvery > 0 {
		t := time.NewTicker(f.opts.IdleEvery)
		defer t.Stop()
		idle = t.C
	}
	next := from
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		changed := f.log.Changed()
		size := f.log.Size()
		if next > size {
			return fmt.Errorf("%w: %s starts at seq %d, the log holds %d records", ErrAhead, f.name(), next, size)
		}
		if next == size {
			select {
			case <-changed:
			case <-idle:
				if err := f.opts.Idle(ctx, next); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		n := min(size-next, uint64(f.opts.Batch))
		for seq := next; seq < next+n; {
			k, err := read(seq, next+n-seq)
			if err != nil {
				return err
			}
			seq += k
		}
		if err := deliver(ctx, size); err != nil {
			return err
		}
		next += n
		if pos != nil {
			pos.advance(next, n)
		}
	}
}

func (f *Follower) read(seq uint64) (*record.Record, error) {
	raw, err := f.log.ReadRaw(seq)
	if err != nil {
		return nil, &ReadError{Seq: seq, Err: err}
	}
	r, err := record.Decode(raw)
	if err != nil {
		return nil, &ReadError{Seq: seq, Err: err}
	}
	if r.Seq != seq {
		return nil, &ReadError{Seq: seq, Err: fmt.Errorf("the stored record names seq %d", r.Seq)}
	}
	return r, nil
}

func (f *Follower) name() string {
	if f.opts.Name == "" {
		return "the follower"
	}
	return "follower " + f.opts.Name
}
