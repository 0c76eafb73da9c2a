package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/publish"
)

// defaultNATSListen is the embedded NATS server's usual client port.
const defaultNATSListen = "127.0.0.1:4222"

// lineagePlace is the JetStream stream and subject prefix of a server's
// lineage stream: STELE_LINEAGE on stele.lineage.> for one machine and a
// cluster's partition main; a partition of its own for any other, since
// streams on one NATS cluster may not share subjects.
func lineagePlace(cfg Config) (stream, prefix string) {
	if cfg.Cluster.URLs == "" || cfg.Cluster.Log == "" || cfg.Cluster.Log == "main" {
		return publish.DefaultStream, publish.DefaultSubjectPrefix
	}
	return publish.DefaultStream + "_" + strings.ToUpper(cfg.Cluster.Log), publish.DefaultSubjectPrefix + "_" + cfg.Cluster.Log
}

// startStream starts the lineage publisher (embedded NATS unless a URL is
// configured, the cluster's NATS on a cluster node) and returns the
// function that stops it. It runs until stop is called, not until ctx
// ends, so records appended by requests still in flight at shutdown are
// published too. With lead set (a cluster node) it publishes only while
// lead() holds: the partition's writer publishes, and a new writer
// continues from the stream's own last message.
func startStream(cfg Config, store *logstore.Store, reg *prometheus.Registry, follows *follow.Metrics, logger *slog.Logger, lead func() bool) (stop func(), err error) {
	if cfg.Stream.Disabled {
		logger.Info("lineage stream disabled (stream.enabled: false)")
		return func() {}, nil
	}
	format, err := publish.ParseFormat(cfg.Stream.Format)
	if err != nil {
		return nil, err
	}
	replicas := 1
	if cfg.Cluster.URLs != "" {
		// Replicated like the log: an ack then means on a quorum.
		replicas = 3
		if cfg.Stream.NATSURL == "" {
			cfg.Stream.NATSURL = cfg.Cluster.URLs
		}
	}
	streamName, prefix := lineagePlace(cfg)
	var (
		nc  *nats.Conn
		emb *publish.Embedded
	)
	if cfg.Stream.NATSURL == "" {
		listen := cfg.Stream.Listen
		switch listen {
		case "":
			listen = defaultNATSListen
			if ln, err := net.Listen("tcp", listen); err != nil {
				// Another NATS (or a second Stele) holds the default port:
				// publish in-process rather than refuse to start.
				logger.Warn("lineage stream: the default NATS port is taken; the embedded server runs in-process only (set stream.listen to expose it)",
					"listen", listen, "err", err)
				listen = ""
			} else {
				ln.Close()
			}
		case "none":
			listen = ""
		}
		emb, err = publish.StartEmbedded(publish.EmbeddedConfig{Dir: filepath.Join(cfg.Data, "nats"), Listen: listen, Logger: logger})
		if err != nil {
			return nil, err
		}
		if nc, err = emb.Connect(); err != nil {
			emb.Shutdown()
			return nil, err
		}
		logger.Info("lineage stream: embedded NATS JetStream", "store", filepath.Join(cfg.Data, "nats"), "client_url", emb.ClientURL(),
			"subjects", publish.DefaultSubjectPrefix+".>", "stream", publish.DefaultStream)
	} else {
		// A NATS that is down at start is retried forever: the log keeps
		// the backlog, so Stele starts and serves regardless.
		nc, err = nats.Connect(cfg.Stream.NATSURL, nats.Name("stele"), nats.MaxReconnects(-1),
			nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second))
		if err != nil {
			// The URL may carry credentials; the error does not repeat it.
			return nil, fmt.Errorf("stream.nats_url: %w", err)
		}
		logger.Info("lineage stream: external NATS JetStream", "servers", len(nc.Servers()), "stream", streamName, "subjects", prefix+".>")
	}
	pub, err := publish.New(publish.Config{
		Log:           store,
		Conn:          nc,
		Stream:        streamName,
		SubjectPrefix: prefix,
		Replicas:      replicas,
		Encoder:       publish.Encoder{Source: "stele://" + cfg.Origin, Format: format},
		CursorFile:    filepath.Join(cfg.Data, "stream.cursor"),
		Logger:        logger,
		Metrics:       follows,
	})
	if err != nil {
		nc.Close()
		if emb != nil {
			emb.Shutdown()
		}
		return nil, err
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stele_stream_published_records",
			Help: "Leading records of the log acknowledged by NATS JetStream."},
			func() float64 { return float64(pub.Published()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stele_stream_backlog_records",
			Help: "Durable records not yet acknowledged by NATS JetStream."},
			func() float64 { return float64(store.Size() - min(store.Size(), pub.Published())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stele_stream_holding",
			Help: "1 while the publisher holds off for a burst of ingest (its flow control; the backlog stays in the log), else 0."},
			func() float64 {
				if pub.Holding() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stele_stream_held_seconds_total",
			Help: "Time the publisher has held off for bursts of ingest."},
			func() float64 { return pub.Held().Seconds() }),
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if lead == nil {
			_ = pub.Run(ctx)
			return
		}
		runWhileLeading(ctx, lead, func(ctx context.Context) { _ = pub.Run(ctx) })
	}()
	return func() {
		cancel()
		<-done
		nc.Close()
		if emb != nil {
			emb.Shutdown()
		}
	}, nil
}

// leadPoll is how often runWhileLeading checks the lease: a new writer
// starts publishing within it, and a deposed one stops within it (a
// publish of the deposed one meanwhile is refused by the stream's
// expected last sequence, so the overlap cannot duplicate or reorder).
const leadPoll = 200 * time.Millisecond

// runWhileLeading runs fn with a context that ends when lead() stops
// holding, each time it starts holding, until ctx ends.
func runWhileLeading(ctx context.Context, lead func() bool, fn func(context.Context)) {
	t := time.NewTicker(leadPoll)
	defer t.Stop()
	for {
		if lead() {
			lctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				fn(lctx)
			}()
			for lead() && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			}
			cancel()
			<-done
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
