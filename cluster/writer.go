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
	it, err := cons.Messages(pullOpts(jetstream.PullMaxMessages(2*n.cfg.MaxBatch), jetstream.WithMessagesErrOnMissingHeartbeat(false))...)
	if err != nil {
		n.log.Warn("writer cannot consume the ingest stream; stepping down", "err", err)
		return
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	n.log.Info("writing", "log_batches", last, "records", n.cfg.Local.Size())
	p := &pipeline{ids: make(map[string]bool)}
	for ctx.Err() == nil {
		msgs, err := n.gather(ctx, it, p)
		if err == nil && len(msgs) > 0 {
			last, err = n.sequence(ctx, held, last, msgs, p)
		}
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("writer stepping down", "err", err)
			}
			// Unacked, the candidates go to the next writer at once.
			for _, b := range p.batches {
				msgs = append(msgs, b.msgs...)
			}
			for _, m := range msgs {
				_ = m.Nak()
			}
			return
		}
	}
}

// pipeline holds the batches the writer published that its own copy has
// not applied and indexed yet: the next batch is sequenced after them
// without waiting, so publishing one batch overlaps applying the last.
type pipeline struct {
	batches []*inflight
	ids     map[string]bool // ids of the batches' records
}

type inflight struct {
	seq   uint64 // in the log stream
	first uint64
	raws  [][]byte
	ids   []string
	msgs  []jetstream.Msg // candidates to ack once applied
}

// pipelineDepth bounds the batches published ahead of the local copy.
const pipelineDepth = 4

// retire acks the candidates of every batch the local copy has applied
// and indexed; they are in the log, and the index answers for their ids.
func (n *Node) retire(p *pipeline) {
	for len(p.batches) > 0 {
		b := p.batches[0]
		if n.Applied() < b.seq || n.cfg.Local.Indexed() < b.first+uint64(len(b.raws)) {
			return
		}
		for _, m := range b.msgs {
			_ = m.Ack()
		}
		for _, id := range b.ids {
			delete(p.ids, id)
		}
		p.batches = p.batches[1:]
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

// gather waits for one candidate (retiring applied batches meanwhile),
// then takes what else is already there, up to the batch limits. With the
// pipeline full it first waits for the oldest batch to be applied.
func (n *Node) gather(ctx context.Context, it jetstream.MessagesContext, p *pipeline) ([]jetstream.Msg, error) {
	for {
		n.retire(p)
		if len(p.batches) < pipelineDepth {
			break
		}
		b := p.batches[0]
		if err := n.waitApplied(ctx, b.seq); err != nil {
			return nil, err
		}
		if err := n.cfg.Local.WaitIndexed(ctx, b.first+uint64(len(b.raws))); err != nil {
			return nil, err
		}
	}
	var m jetstream.Msg
	var err error
	if len(p.batches) == 0 {
		m, err = it.Next()
	} else {
		// Poll, so applied batches are acked while no candidate comes.
		m, err = it.Next(jetstream.NextMaxWait(5 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			return nil, ctx.Err()
		}
	}
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
// and the pipeline's batches, and returns the log stream's last sequence
// after it (last again when every candidate was already in the log).
// Candidates are acked only once their batch is in the log stream and in
// the local copy (retire).
func (n *Node) sequence(ctx context.Context, held *lease, last uint64, msgs []jetstream.Msg, p *pipeline) (uint64, error) {
	// The tree's base: what the local copy holds now, then the pipeline's
	// batches it has not applied yet.
	base := n.cfg.Local.Size()
	var pending [][]byte
	for _, b := range p.batches {
		if b.first >= base {
			pending = append(pending, b.raws...)
		}
	}
	first := base + uint64(len(pending))
	now := n.cfg.Now().UTC()
	raws := make([][]byte, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		id := m.Headers().Get("Nats-Msg-Id")
		if id == "" || seen[id] || p.ids[id] {
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
		raw := record.AppendHeader(make([]byte, 0, record.HeaderSize+len(m.Data())), first+uint64(len(raws)), now)
		raws = append(raws, append(raw, m.Data()...))
		ids = append(ids, id)
	}
	b := &inflight{seq: last, first: first, raws: raws, ids: ids, msgs: msgs}
	if len(raws) > 0 {
		root, err := n.cfg.Local.RootAfter(base, append(pending, raws...))
		if err != nil {
			return last, err
		}
		cp, err := stele.SignCheckpoint(n.cfg.Local.Keys().Signer, first+uint64(len(raws)), root)
		if err != nil {
			return last, err
		}
		msg := encodeBatch(batch{first: first, note: cp.Note, raws: raws})
		msg.Subject = n.logSubj
		if b.seq, err = n.publish(ctx, held, last, msg); err != nil {
			return last, err
		}
	}
	p.batches = append(p.batches, b)
	for _, id := range ids {
		p.ids[id] = true
	}
	return b.seq, nil
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
