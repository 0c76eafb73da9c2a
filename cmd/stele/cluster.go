package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

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
	// Log names the partition this node serves (default "main"): its own
	// streams, writer lease and tree (docs/cluster.md, "Partitions").
	Log string
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
		{"cluster_log", "the `partition` of the cluster this server serves: its own streams, writer lease, tree and checkpoints; a-z, 0-9 and _ (default main; YAML: cluster: {log: ...}; docs/cluster.md, Partitions)", func(c *Config, v string) error {
			if v == "" || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				return fmt.Errorf("%q: want a name of a-z, 0-9 and _ such as billing", v)
			}
			c.Cluster.Log = v
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
	return yamlSection{[]string{"ack_timeout", "lease_ttl", "log", "nats", "node"},
		map[string]string{"nats": "cluster", "node": "cluster_node", "log": "cluster_log", "lease_ttl": "cluster_lease_ttl", "ack_timeout": "cluster_ack_timeout"},
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
	node, err := cluster.Start(sctx, cluster.Config{JS: js, Local: store, Index: ix, Sealer: sealer, Name: name, Log: cfg.Cluster.Log,
		LeaseTTL: cfg.Cluster.LeaseTTL, AckTimeout: cfg.Cluster.AckTimeout, Logger: logger})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	logger.Info("cluster node started", "node", name, "log", cmp.Or(cfg.Cluster.Log, "main"), "nats", cfg.Cluster.URLs, "records", store.Size())
	return node, func() { node.Close(); nc.Close() }, nil
}

// clusterCollector exports a cluster node's view of its log at scrape
// time; `stele status` prints it.
type clusterCollector struct {
	node *cluster.Node
}

var (
	clusterRecordsDesc = prometheus.NewDesc("stele_cluster_records",
		"Records in this cluster node's copy of the log (partition) it serves.", []string{"log"}, nil)
	clusterLagDesc = prometheus.NewDesc("stele_cluster_lag_batches",
		"Log stream batches this node's copy had not applied yet when it last received one (0: caught up).", []string{"log"}, nil)
	clusterNodeDesc = prometheus.NewDesc("stele_cluster_node",
		"Always 1; its labels name the partition this node serves and the node.", []string{"log", "node"}, nil)
	clusterLeaderDesc = prometheus.NewDesc("stele_cluster_leader",
		"1 while this node holds the writer lease of the partition it serves.", []string{"log"}, nil)
	partitionsReadableDesc = prometheus.NewDesc("stele_cluster_partitions_readable",
		"1 when this scrape could read every partition's state from the NATS servers, 0 when not (no quorum, unreachable); the stele_cluster_partition_* metrics are left out then.", nil, nil)
	partitionWriterDesc = prometheus.NewDesc("stele_cluster_partition_writer",
		"Always 1; its labels name a partition of the cluster and the node holding its writer lease (writer=\"\": none holds it).", []string{"log", "writer"}, nil)
	partitionBatchesDesc = prometheus.NewDesc("stele_cluster_partition_batches",
		"Batches in a partition's log stream: what its writers have sequenced.", []string{"log"}, nil)
	partitionBacklogDesc = prometheus.NewDesc("stele_cluster_partition_backlog",
		"Candidate records in a partition's ingest stream that its writer has not sequenced yet: the partition's lag.", []string{"log"}, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterRecordsDesc, clusterLagDesc, clusterNodeDesc, clusterLeaderDesc,
		partitionsReadableDesc, partitionWriterDesc, partitionBatchesDesc, partitionBacklogDesc} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.node.Status()
	leader := 0.0
	if st.Leader {
		leader = 1
	}
	gauge(clusterRecordsDesc, float64(st.Records), st.Log)
	gauge(clusterLagDesc, float64(st.Lag), st.Log)
	gauge(clusterNodeDesc, 1, st.Log, st.Node)
	gauge(clusterLeaderDesc, leader, st.Log)
	// A scrape must not hang on a NATS without quorum.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	parts, err := c.node.Partitions(ctx)
	if err != nil {
		gauge(partitionsReadableDesc, 0)
		return
	}
	gauge(partitionsReadableDesc, 1)
	for _, p := range parts {
		gauge(partitionWriterDesc, 1, p.Log, p.Writer)
		gauge(partitionBatchesDesc, float64(p.Batches), p.Log)
		gauge(partitionBacklogDesc, float64(p.Backlog), p.Log)
	}
}
