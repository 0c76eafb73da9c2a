package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leaseKey is the writer lease's key in the log's lease bucket.
const leaseKey = "writer"

// campaign tries to take the writer lease until ctx ends, and while it is
// held runs the writer. It is the election choria's streams use: Create
// wins a free key (the bucket's TTL frees the key of a holder that stopped
// renewing), the holder Updates it at 75 % of the TTL with the revision it
// last wrote, and any failed Update means another node may lead: the
// writer stops at once. Stepping down early is always safe; the log
// stream's expected last sequence, not the lease, is what keeps two
// writers from forking the log.
func (n *Node) campaign(ctx context.Context) {
	ttl := n.cfg.LeaseTTL
	for ctx.Err() == nil {
		if n.Err() != nil {
			return // a diverged copy must not sequence
		}
		cctx, cancel := context.WithTimeout(ctx, ttl/2)
		rev, err := n.kv.Create(cctx, leaseKey, []byte(n.cfg.Name))
		cancel()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
				n.log.Debug("cannot campaign for the writer lease", "err", err)
			}
			sleep(ctx, ttl/4)
			continue
		}
		n.lead(ctx, rev)
	}
}

// lead runs the writer while the lease with revision rev is renewed.
func (n *Node) lead(ctx context.Context, rev uint64) {
	lctx, lose := context.WithCancel(ctx)
	defer lose()
	n.leader.Store(true)
	defer n.leader.Store(false)
	n.log.Info("won the writer lease", "revision", rev)
	held := &lease{n: n, rev: rev, mu: make(chanMutex, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.write(lctx, held)
	}()
	t := time.NewTicker(n.cfg.LeaseTTL * 3 / 4)
	defer t.Stop()
	for {
		select {
		case <-done:
			lose()
			held.release()
			return
		case <-ctx.Done():
			lose()
			<-done
			held.release()
			return
		case <-t.C:
			if err := held.renew(lctx); err != nil {
				n.log.Warn("lost the writer lease; stepping down", "err", err)
				lose()
				<-done
				return
			}
		}
	}
}

// lease is a held writer lease; renew and confirm run from the writer too.
type lease struct {
	n   *Node
	rev uint64
	mu  chanMutex
}

// chanMutex is a mutex whose holders can give up waiting with a context.
type chanMutex chan struct{}

// renew updates the lease with the last revision written; an error means
// the lease may be someone else's.
func (l *lease) renew(ctx context.Context) error {
	select {
	case l.mu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.mu }()
	cctx, cancel := context.WithTimeout(ctx, l.n.cfg.LeaseTTL/4)
	defer cancel()
	rev, err := l.n.kv.Update(cctx, leaseKey, []byte(l.n.cfg.Name), l.rev)
	if err != nil {
		return err
	}
	l.rev = rev
	return nil
}

// release deletes the lease if it is still this node's, so another node
// need not wait out the TTL after a clean stop.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.n.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev)); err != nil {
		l.n.log.Debug("release the writer lease", "err", err)
		return
	}
	l.n.log.Info("released the writer lease")
}
