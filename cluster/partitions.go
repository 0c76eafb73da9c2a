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
