package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Partition is one log (partition) of a cluster as its NATS servers see
// it, whichever node asks.
type Partition struct {
	Log string
	// Writer is the lease holder's name, "" when no node holds the lease.
	Writer string
	// Batches is the log stream's last sequence: the batches sequenced.
	Batches uint64
	// Backlog is the candidate records in the ingest stream that the
	// writer has not sequenced (acknowledged) yet: the partition's lag.
	Backlog uint64
}

// Partitions lists every log the cluster's NATS servers hold streams for,
// with its writer and backlog, sorted by name. A partition whose state
// cannot be read is an error: a listing that leaves one out would read as
// "that partition does not exist".
func Partitions(ctx context.Context, js jetstream.JetStream) ([]Partition, error) {
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject("stele.cluster.*.log"))
	var logs []string
	for name := range names.Name() {
		if l, ok := strings.CutPrefix(name, "STELE_"); ok {
			if l, ok = strings.CutSuffix(l, "_LOG"); ok {
				logs = append(logs, strings.ToLower(l))
			}
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("cluster: list the log streams: %w", err)
	}
	slices.Sort(logs)
	out := make([]Partition, 0, len(logs))
	for _, l := range logs {
		p, err := partition(ctx, js, l)
		if err != nil {
			return nil, fmt.Errorf("cluster: partition %s: %w", l, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ErrOriginInUse: another partition of the cluster signs its checkpoints
// under the same origin. Its checkpoints and this one's would be
// indistinguishable by name, and a witness tracking the origin would see
// two histories (a split view).
var ErrOriginInUse = errors.New("another partition of the cluster uses this origin")

// ErrWrongKey: this node's checkpoint key is not the one the log's
// checkpoints are signed with. Were it to win the lease, every other node
// would refuse its batches and stop; so it does not start.
var ErrWrongKey = errors.New("this node's checkpoint key is not the log's")

// Log stream metadata: the origin its checkpoints are signed under and the
// verifier key that checks them, set by the node that creates the stream
// and never changed after: a node with the wrong key must not be able to
// claim a stream that names none.
const (
	originMeta = "stele_origin"
	keyMeta    = "stele_verifier_key"
)

// checkLog refuses a node whose verifier key is not the one the log
// stream names, and an origin that another partition's log stream names.
// Nodes with different keys or one origin started at the same moment on a
// new cluster can both pass; the check is for the configuration mistake,
// not a race (a batch signed with another key is still refused by every
// node that applies it).
//
// It returns the metadata of the partition's own log stream, nil when
// that does not exist yet.
func (n *Node) checkLog(ctx context.Context, origin, vkey string) (map[string]string, error) {
	own := "STELE_" + strings.ToUpper(n.cfg.Log) + "_LOG"
	ownMeta := map[string]string(nil)
	names := n.cfg.JS.StreamNames(ctx, jetstream.WithStreamListSubject("stele.cluster.*.log"))
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("cluster: list the log streams: %w", err)
	}
	for _, name := range all {
		st, err := n.cfg.JS.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("cluster: read log stream %s: %w", name, err)
		}
		md := st.CachedInfo().Config.Metadata
		if name == own {
			ownMeta = md
			if ownMeta == nil {
				ownMeta = map[string]string{}
			}
			if k := md[keyMeta]; k != "" && vkey != "" && k != vkey {
				return nil, fmt.Errorf("cluster: partition %s: %w: the log stream %s names verifier key %s, this node has %s; copy the log's keys/ into this node's data directory",
					n.cfg.Log, ErrWrongKey, name, k, vkey)
			}
			continue
		}
		if md[originMeta] == origin {
			return nil, fmt.Errorf("cluster: partition %s: origin %q: %w (log stream %s); give each partition its own origin, such as %s/%s",
				n.cfg.Log, origin, ErrOriginInUse, name, origin, n.cfg.Log)
		}
	}
	return ownMeta, nil
}

func partition(ctx context.Context, js jetstream.JetStream, log string) (Partition, error) {
	upper := strings.ToUpper(log)
	p := Partition{Log: log}
	ls, err := js.Stream(ctx, "STELE_"+upper+"_LOG")
	if err != nil {
		return p, err
	}
	p.Batches = ls.CachedInfo().State.LastSeq
	is, err := js.Stream(ctx, "STELE_"+upper+"_INGEST")
	if err != nil {
		return p, err
	}
	p.Backlog = is.CachedInfo().State.Msgs
	kv, err := js.KeyValue(ctx, "STELE_"+upper+"_LEASE")
	if err != nil {
		return p, err
	}
	e, err := kv.Get(ctx, leaseKey)
	switch {
	case err == nil:
		p.Writer = string(e.Value())
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return p, err
	}
	return p, nil
}
