package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// resumeAt finds the log stream sequence of the batch that starts at the
// local copy's size: batches are contiguous, so their first seqs grow with
// the stream sequence and a binary search over a few message headers finds
// it. It returns the stream's last sequence + 1 when the copy is complete.
func (n *Node) resumeAt(ctx context.Context) (uint64, error) {
	size := n.cfg.Local.Size()
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) (err error) {
		info, err = n.logStream.Info(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: read the log stream's state: %w", err)
	}
	last := info.State.LastSeq
	if size == 0 {
		return 1, nil
	}
	firstAt := func(seq uint64) (uint64, error) {
		var first uint64
		err := retry(ctx, func(ctx context.Context) error {
			m, err := n.logStream.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			first, err = batchFirst(m.Header)
			if errors.Is(err, ErrBadBatch) {
				return nil
			}
			return err
		})
		return first, err
	}
	lo, hi := uint64(1), last+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		f, err := firstAt(mid)
		if err != nil {
			return 0, fmt.Errorf("cluster: find where the local copy resumes: %w", err)
		}
		if f < size {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo <= last {
		f, err := firstAt(lo)
		if err != nil {
			return 0, err
		}
		if f != size {
			return 0, fmt.Errorf("%w: the local copy holds %d records, but no log batch starts there (batch %d starts at seq %d)", ErrDiverged, size, lo, f)
		}
		return lo, nil
	}
	// Complete, unless the stream ends before the copy does.
	if last > 0 {
		m, err := n.logStream.GetMsg(ctx, last)
		if err != nil {
			return 0, fmt.Errorf("cluster: read the last log batch: %w", err)
		}
		b, err := decodeBatch(m.Header, m.Data)
		if err != nil {
			return 0, err
		}
		if end := b.first + uint64(len(b.raws)); end != size {
			return 0, fmt.Errorf("%w: the local copy holds %d records, the replicated log %d", ErrDiverged, size, end)
		}
	} else {
		return 0, fmt.Errorf("%w: the local copy holds %d records, the replicated log none: this data directory belongs to another log", ErrDiverged, size)
	}
	n.mu.Lock()
	n.applied = last
	n.mu.Unlock()
	return last + 1, nil
}

// follow applies the log stream to the local copy from stream sequence
// start, until ctx ends or the copy diverges.
func (n *Node) follow(ctx context.Context, start uint64) {
	if start > 1 {
		n.setApplied(start - 1)
	}
	for ctx.Err() == nil {
		next := n.Applied() + 1
		cons, err := n.logStream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
		})
		if err != nil {
			n.log.Warn("cannot follow the log stream; retrying", "err", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		it, err := cons.Messages(pullOpts()...)
		if err != nil {
			n.log.Warn("cannot follow the log stream; retrying", "err", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			m, err := it.Next()
			if err != nil {
				break
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			if err := n.apply(ctx, meta.Sequence.Stream, m.Headers(), m.Data()); err != nil {
				if ctx.Err() == nil {
					n.setDiverged(err)
				}
				stop()
				it.Stop()
				return
			}
			n.pending.Store(meta.NumPending)
		}
		stop()
		it.Stop()
	}
}

// pullOpts are the writer's and the followers' pull settings. A pull
// request sent while the consumer (or its stream) has no leader yet — right
// after it is created, or after a failover, and for longer on a loaded
// machine — is dropped without an answer, and the client notices only when
// two heartbeats are missed: with the NATS client's defaults 30 s for the writer and
// 10 s for an ordered follower, all that time nothing is sequenced or
// applied. With a 2 s heartbeat the pull is made again within 4 s, at the
// price of a heartbeat every 2 s per consumer.
func pullOpts(more ...jetstream.PullMessagesOpt) []jetstream.PullMessagesOpt {
	return append([]jetstream.PullMessagesOpt{jetstream.PullExpiry(10 * time.Second), jetstream.PullHeartbeat(2 * time.Second)}, more...)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// apply stores one log batch in the local copy and wakes the Append calls
// waiting for its records.
func (n *Node) apply(ctx context.Context, streamSeq uint64, h nats.Header, body []byte) error {
	if streamSeq <= n.Applied() {
		return nil // an ordered consumer's redelivery after a reset
	}
	b, err := decodeBatch(h, body)
	if err != nil {
		return err
	}
	if size := n.cfg.Local.Size(); b.first != size {
		return fmt.Errorf("%w: log batch %d starts at seq %d, the local copy holds %d records", logstore.ErrOutOfSequence, streamSeq, b.first, size)
	}
	var res []stelAppended
	for {
		out, err := n.cfg.Local.AppendSequenced(ctx, b.raws, b.note)
		if err == nil {
			res = make([]stelAppended, len(out))
			for i, a := range out {
				at, _ := record.RecordedAt(b.raws[i])
				res[i] = stelAppended{id: a.ID, rec: appliedRec{seq: a.Seq, at: at}}
			}
			break
		}
		if errors.Is(err, logstore.ErrTampered) || errors.Is(err, logstore.ErrOutOfSequence) || errors.Is(err, logstore.ErrFailed) || ctx.Err() != nil {
			return fmt.Errorf("apply log batch %d (seqs %d..%d): %w", streamSeq, b.first, b.first+uint64(len(b.raws))-1, err)
		}
		// A full disk or an overloaded queue pass; the batch is retried.
		n.log.Warn("cannot apply a log batch yet; retrying", "batch", streamSeq, "err", err)
		sleep(ctx, 200*time.Millisecond)
	}
	n.mu.Lock()
	for _, a := range res {
		for _, c := range n.waiters[a.id] {
			select {
			case c <- a.rec:
			default:
			}
		}
	}
	n.mu.Unlock()
	n.setApplied(streamSeq)
	return nil
}

type stelAppended struct {
	id  string
	rec appliedRec
}

func (n *Node) setApplied(seq uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if seq > n.applied {
		n.applied = seq
		close(n.appliedCh)
		n.appliedCh = make(chan struct{})
	}
}
