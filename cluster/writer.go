package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// ingestConsumer is the durable consumer of the ingest stream every writer
// of the log takes over, so a new writer continues where the last one's
// acks left off.
const ingestConsumer = "writer"

// write sequences candidates while ctx (the lease) lasts.
func (n *Node) write(ctx context.Context, held *lease) {
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) (err error) {
		cons, err = n.ingest.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: ingestConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: n.cfg.AckWait,
			MaxAckPending: 8 * n.cfg.MaxBatch, MaxDeliver: -1,
		})
		return err
	})
	if err != nil {
		return
	}
	last, err := n.catchUp(ctx)
	if err != nil {
		n.log.Warn("writer cannot catch up with the log stream; stepping down", "err", err)
		return
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * n.cfg.MaxBatch))
	if err != nil {
		n.log.Warn("writer cannot consume the ingest stream; stepping down", "err", err)
		return
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	n.log.Info("writing", "log_batches", last, "records", n.cfg.Local.Size())
	for ctx.Err() == nil {
		msgs, err := n.gather(ctx, it)
		if err != nil {
			return
		}
		next, err := n.sequence(ctx, held, last, msgs)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("writer stepping down", "err", err)
			}
			for _, m := range msgs {
				_ = m.Nak()
			}
			return
		}
		last = next
	}
}

// catchUp waits until the local copy holds the whole log stream and
// returns its last sequence.
func (n *Node) catchUp(ctx context.Context) (uint64, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) (err error) {
		info, err = n.logStream.Info(ctx)
		return err
	})
	if err != nil {
		return 0, err
	}
	last := info.State.LastSeq
	if err := n.waitApplied(ctx, last); err != nil {
		return 0, err
	}
	return last, n.cfg.Local.WaitIndexed(ctx, n.cfg.Local.Size())
}

// gather blocks for one candidate, then takes what else is already there,
// up to the batch limits.
func (n *Node) gather(ctx context.Context, it jetstream.MessagesContext) ([]jetstream.Msg, error) {
	m, err := it.Next()
	if err != nil {
		return nil, err
	}
	msgs := []jetstream.Msg{m}
	bytes := len(m.Data())
	for len(msgs) < n.cfg.MaxBatch && bytes < n.cfg.MaxBatchBytes-maxRecordBytes {
		m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
		if err != nil {
			break
		}
		msgs = append(msgs, m)
		bytes += len(m.Data())
	}
	return msgs, ctx.Err()
}

// maxRecordBytes is the room one more record may take in a batch.
const maxRecordBytes = 64 << 10

// sequence turns candidates into one log batch after stream sequence last
// and returns the batch's stream sequence (last again when every candidate
// was already in the log). Candidates are acked only once the batch is in
// the log stream and in the local copy.
func (n *Node) sequence(ctx context.Context, held *lease, last uint64, msgs []jetstream.Msg) (uint64, error) {
	base := n.cfg.Local.Size()
	now := n.cfg.Now().UTC()
	raws := make([][]byte, 0, len(msgs))
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		id := m.Headers().Get("Nats-Msg-Id")
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		_, ok, err := n.cfg.Index.LookupID(id)
		if err != nil {
			return last, fmt.Errorf("look up a candidate's id: %w", err)
		}
		if ok {
			continue // sequenced before: a redelivery after a failover
		}
		raw := record.AppendHeader(make([]byte, 0, record.HeaderSize+len(m.Data())), base+uint64(len(raws)), now)
		raws = append(raws, append(raw, m.Data()...))
	}
	if len(raws) > 0 {
		root, err := n.cfg.Local.RootAfter(base, raws)
		if err != nil {
			return last, err
		}
		cp, err := stele.SignCheckpoint(n.cfg.Local.Keys().Signer, base+uint64(len(raws)), root)
		if err != nil {
			return last, err
		}
		msg := encodeBatch(batch{first: base, note: cp.Note, raws: raws})
		msg.Subject = n.logSubj
		seq, err := n.publish(ctx, held, last, msg)
		if err != nil {
			return last, err
		}
		if err := n.waitApplied(ctx, seq); err != nil {
			return last, err
		}
		// The next batch's dedupe reads the index.
		if err := n.cfg.Local.WaitIndexed(ctx, n.cfg.Local.Size()); err != nil {
			return last, err
		}
		last = seq
	}
	for _, m := range msgs {
		_ = m.Ack()
	}
	return last, nil
}

// publish appends one batch after stream sequence last, retrying while
// NATS has no quorum and the lease lasts. A refusal for a wrong last
// sequence means another writer appended meanwhile: this one is fenced.
func (n *Node) publish(ctx context.Context, held *lease, last uint64, msg *nats.Msg) (uint64, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTTL/2)
		ack, err := n.cfg.JS.PublishMsg(pctx, msg, jetstream.WithExpectLastSequence(last))
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrWrongLastSequence {
			// Fenced. Whether the lease is still ours or not, the batch
			// is void: its candidates are redelivered and sequenced anew
			// by whoever leads after the log's real end.
			return last, fmt.Errorf("log stream refused the batch after sequence %d (another writer appended): %w", last, err)
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		n.log.Warn("cannot publish a log batch; retrying while the lease lasts", "err", err)
		if err := held.renew(ctx); err != nil {
			return last, fmt.Errorf("lease lost while the log stream was unavailable: %w", err)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// jsErrWrongLastSequence is JetStream's error code for a publish whose
// Nats-Expected-Last-Sequence is not the stream's last sequence.
const jsErrWrongLastSequence jetstream.ErrorCode = 10071
