package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele"
	"github.com/stele/stele/cluster"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// ClusterConfig makes the server one node of a Stele cluster on a NATS
// JetStream cluster (docs/cluster.md). Its zero value is one machine.
type ClusterConfig struct {
	// URLs are the NATS servers, comma-separated (--cluster,
	// STELE_CLUSTER, cluster: in the file); empty: no cluster.
	URLs string
	// Node names this node in the writer lease and the logs (default the
	// host name and the API address).
	Node string
	// LeaseTTL is the writer lease's lifetime (default 10s).
	LeaseTTL time.Duration
	// AckTimeout bounds how long an append waits to be sequenced before a
	// 503 (default 10s).
	AckTimeout time.Duration
}

// clusterOptions are the cluster's settings, in options().
func clusterOptions() []option {
	duration := func(dst func(*Config) *time.Duration) func(c *Config, v string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("want a positive duration such as 10s")
			}
			*dst(c) = d
			return nil
		}
	}
	return []option{
		{"cluster", "run as one node of a cluster on these NATS JetStream servers: comma-separated `URLs` such as nats://a:4222,nats://b:4222,nats://c:4222 (YAML: cluster: {nats: ...}; docs/cluster.md)", func(c *Config, v string) error {
			for _, u := range strings.Split(v, ",") {
				if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
					return fmt.Errorf("%q: want URLs such as nats://10.0.0.1:4222, comma-separated", u)
				}
			}
			c.Cluster.URLs = v
			return nil
		}},
		{"cluster_node", "this node's `name` in the cluster's writer lease and logs (default host name and API address; YAML: cluster: {node: ...})", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.Cluster.Node = v
			return nil
		}},
		{"cluster_lease_ttl", "lifetime of the cluster's writer lease, a `duration`: a dead writer is replaced after about this long (default 10s; YAML: cluster: {lease_ttl: ...})", duration(func(c *Config) *time.Duration { return &c.Cluster.LeaseTTL })},
		{"cluster_ack_timeout", "how long a clustered append waits to be sequenced before answering 503, a `duration` (default 10s; YAML: cluster: {ack_timeout: ...})", duration(func(c *Config) *time.Duration { return &c.Cluster.AckTimeout })},
	}
}

// clusterKeystore makes a cluster's keystore the KV bucket on its NATS
// servers unless another bucket is configured: every node must seal, reveal
// and erase with the same keys, which a data directory's own keystore
// cannot give.
func (c *Config) clusterKeystore() error {
	if c.Cluster.URLs == "" {
		return nil
	}
	switch c.Keystore.Kind {
	case "":
		c.Keystore.Kind = "nats"
	case "file":
		return errors.New("keystore_kind: file cannot serve a cluster (cluster is set): each node would seal with keys the others lack, and an erasure on one node would not reach the rest; leave keystore_kind unset, or set it to nats")
	}
	if c.Keystore.NATSURL == "" {
		c.Keystore.NATSURL = c.Cluster.URLs
	}
	return nil
}

// clusterYAMLSection is the cluster: mapping of the configuration file (the
// key may also hold the server URLs alone).
func clusterYAMLSection() yamlSection {
	return yamlSection{[]string{"ack_timeout", "lease_ttl", "nats", "node"},
		map[string]string{"nats": "cluster", "node": "cluster_node", "lease_ttl": "cluster_lease_ttl", "ack_timeout": "cluster_ack_timeout"},
		"{nats: nats://a:4222,nats://b:4222,nats://c:4222, node: a}"}
}

// clusterLog is the log as writers see it on a cluster node: reads from the
// local copy, appends through the cluster.
type clusterLog struct {
	*logstore.Store
	node *cluster.Node
}

func (l clusterLog) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	return l.node.Append(ctx, recs)
}

// startCluster connects to the NATS servers and starts this node: it
// follows the log into store and campaigns for the writer lease.
func startCluster(ctx context.Context, cfg Config, store *logstore.Store, ix *index.Index, sealer cluster.Sealer, logger *slog.Logger) (*cluster.Node, func(), error) {
	name := cfg.Cluster.Node
	if name == "" {
		host, _ := os.Hostname()
		name = host + "/" + cfg.Addr
	}
	nc, err := nats.Connect(cfg.Cluster.URLs, nats.Name("stele "+name), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: connect to %s: %w", cfg.Cluster.URLs, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("cluster: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	node, err := cluster.Start(sctx, cluster.Config{JS: js, Local: store, Index: ix, Sealer: sealer, Name: name,
		LeaseTTL: cfg.Cluster.LeaseTTL, AckTimeout: cfg.Cluster.AckTimeout, Logger: logger})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	logger.Info("cluster node started", "node", name, "nats", cfg.Cluster.URLs, "records", store.Size())
	return node, func() { node.Close(); nc.Close() }, nil
}
