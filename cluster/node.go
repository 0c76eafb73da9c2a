package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// ErrDiverged: this node's copy of the log contradicts the replicated log
// (a root that is not the writer's signed one, a batch out of order). The
// node stops following and serving; the operator compares it with the
// other nodes' copies (`stele verify`) and replaces it.
var ErrDiverged = errors.New("this node's copy of the log diverged from the cluster's")

// LocalLog is the node's own copy of the log (a *logstore.Store opened with
// Options.Replica).
type LocalLog interface {
	Size() uint64
	AppendSequenced(ctx context.Context, raws [][]byte, cp []byte) ([]stele.Appended, error)
	RootAfter(base uint64, raws [][]byte) ([]byte, error)
	WaitIndexed(ctx context.Context, n uint64) error
	// Indexed is the number of leading records the index covers.
	Indexed() uint64
	Keys() *logstore.Keys
}

// IDIndex finds a stored record by id (the local index).
type IDIndex interface {
	LookupID(id string) (seq uint64, ok bool, err error)
}

// Sealer seals personal data before a record leaves the producing node, so
// no clear PII ever reaches NATS (the privacy layer).
type Sealer interface {
	Seal(ctx context.Context, r *record.Record) error
	Sync(ctx context.Context) error
}

// Config wires a Node. JS, Local and Index are required; zero values of
// the rest give the documented defaults.
type Config struct {
	JS    jetstream.JetStream
	Local LocalLog
	Index IDIndex
	// Sealer, when set, seals every record before it is published.
	Sealer Sealer
	// Name names this node in the lease and the logs (default the
	// connection's client id).
	Name string
	// Log names the log: its streams are STELE_<LOG>_INGEST and
	// STELE_<LOG>_LOG and its lease bucket STELE_<LOG>_LEASE (default
	// "main").
	Log string
	// Replicas of the streams and the lease bucket (default 3).
	Replicas int
	// LeaseTTL is the writer lease's lifetime: a dead writer is replaced
	// after at most about this long (default 10s). The holder renews at
	// 75 % of it.
	LeaseTTL time.Duration
	// AckTimeout bounds how long Append waits for its records to be
	// sequenced before it answers ErrUnavailable (default 10s).
	AckTimeout time.Duration
	// AckWait is how long the ingest consumer waits for the writer's ack
	// before redelivering (default half the lease TTL, at least 1s): the
	// candidates a dying writer had been handed wait this long for the
	// next one.
	AckWait time.Duration
	// MaxBatch and MaxBatchBytes bound one sequenced batch (defaults 2000
	// records, 768 KiB: NATS's default max payload is 1 MiB).
	MaxBatch      int
	MaxBatchBytes int
	Logger        *slog.Logger
	Now           func() time.Time
}

func (c *Config) fill() error {
	if c.JS == nil || c.Local == nil || c.Index == nil {
		return errors.New("cluster: Config needs JS, Local and Index")
	}
	if c.Log == "" {
		c.Log = "main"
	}
	for _, r := range c.Log {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("cluster: log name %q: only a-z, 0-9 and _ are allowed", c.Log)
		}
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = max(time.Second, c.LeaseTTL/2)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 2000
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 768 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("node-%d", time.Now().UnixNano())
	}
	return nil
}

// Node is one Stele node of a cluster: it follows the log into its local
// copy, campaigns for the writer lease, and appends through the ingest
// stream.
type Node struct {
	cfg        Config
	log        *slog.Logger
	ingestSubj string
	logSubj    string
	ingest     jetstream.Stream
	logStream  jetstream.Stream
	kv         jetstream.KeyValue

	// applied is the last log stream sequence the local copy holds;
	// appliedCh is closed and replaced whenever it moves.
	mu        sync.Mutex
	applied   uint64
	appliedCh chan struct{}
	waiters   map[string][]chan appliedRec

	leader   atomic.Bool
	diverged atomic.Pointer[error]
	// pending is how many log stream batches were after the last one
	// applied when it was delivered: the copy's lag, without asking the
	// servers.
	pending atomic.Uint64

	stop context.CancelFunc
	wg   sync.WaitGroup
}

type appliedRec struct {
	seq uint64
	at  time.Time
}

// Start creates the log's streams and lease bucket if they do not exist
// (retrying while JetStream has no meta leader yet), then follows the log
// and campaigns for the lease until Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	upper := strings.ToUpper(cfg.Log)
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Name, "log", cfg.Log),
		ingestSubj: "stele.cluster." + cfg.Log + ".ingest", logSubj: "stele.cluster." + cfg.Log + ".log",
		appliedCh: make(chan struct{}), waiters: make(map[string][]chan appliedRec)}
	began := time.Now()
	keys := cfg.Local.Keys()
	origin := keys.Verifier.Name()
	var err error
	var refused error
	var meta map[string]string
	err = retry(ctx, func(ctx context.Context) error {
		var err error
		meta, err = n.checkLog(ctx, origin, keys.VerifierKey)
		if errors.Is(err, ErrOriginInUse) || errors.Is(err, ErrWrongKey) {
			refused = err // a configuration mistake: no retry mends it
			return nil
		}
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, err
	}
	if meta == nil {
		meta = map[string]string{originMeta: origin, keyMeta: keys.VerifierKey}
	}
	err = retry(ctx, func(ctx context.Context) error {
		n.ingest, err = cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: "STELE_" + upper + "_INGEST", Subjects: []string{n.ingestSubj}, Replicas: cfg.Replicas,
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
			Description: "Stele candidate records, deduplicated by record id, until the writer sequences them",
		})
		if err != nil {
			n.log.Debug("create ingest stream; retrying", "err", err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: create ingest stream: %w", err)
	}
	err = retry(ctx, func(ctx context.Context) error {
		n.logStream, err = cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: "STELE_" + upper + "_LOG", Subjects: []string{n.logSubj}, Replicas: cfg.Replicas,
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, DenyDelete: true, DenyPurge: true,
			Description: "Stele sequenced record batches with their signed checkpoints; the replicated log",
			Metadata:    meta, // the existing stream's, unchanged

		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: create log stream: %w", err)
	}
	err = retry(ctx, func(ctx context.Context) error {
		n.kv, err = cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: "STELE_" + upper + "_LEASE", TTL: cfg.LeaseTTL, Replicas: cfg.Replicas, History: 1,
			Description: "the writer lease of a Stele log",
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: create lease bucket: %w", err)
	}
	n.log.Debug("streams and lease bucket ready", "elapsed", time.Since(began))
	bg, stop := context.WithCancel(context.Background())
	n.stop = stop
	start, err := n.resumeAt(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	n.wg.Go(func() { n.follow(bg, start) })
	n.wg.Go(func() { n.campaign(bg) })
	return n, nil
}

// retry runs fn until it succeeds or ctx ends: right after a cluster
// starts, stream creation fails until JetStream has a meta leader.
func retry(ctx context.Context, fn func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close stops following and campaigning, and gives up the lease if this
// node holds it, so another node takes over at once.
func (n *Node) Close() {
	n.stop()
	n.wg.Wait()
}

// Leader reports whether this node holds the writer lease now.
func (n *Node) Leader() bool { return n.leader.Load() }

// Err reports why this node stopped (ErrDiverged), or nil.
func (n *Node) Err() error {
	if p := n.diverged.Load(); p != nil {
		return *p
	}
	return nil
}

func (n *Node) setDiverged(err error) {
	err = fmt.Errorf("%w: %w", ErrDiverged, err)
	if n.diverged.CompareAndSwap(nil, &err) {
		n.log.Error("this node's copy of the log contradicts the cluster's; it stops following and serving", "err", err)
	}
}

// Status is a node's view of its log, for metrics and `stele status`.
type Status struct {
	Log     string // the log (partition) name
	Node    string // this node's name
	Leader  bool   // this node holds the lease
	Records uint64 // in this node's copy
	Batches uint64 // log stream batches this node's copy holds
	// Lag is the number of log stream batches this node's copy had not
	// applied when it last received one (0 when caught up).
	Lag uint64
}

// Status reports the node's own state; it asks NATS nothing.
func (n *Node) Status() Status {
	return Status{Log: n.cfg.Log, Node: n.cfg.Name, Leader: n.Leader(), Records: n.cfg.Local.Size(),
		Batches: n.Applied(), Lag: n.pending.Load()}
}

// Partitions lists every partition of the cluster this node is on
// (the package function Partitions).
func (n *Node) Partitions(ctx context.Context) ([]Partition, error) {
	return Partitions(ctx, n.cfg.JS)
}

// Applied is the last log stream sequence (batch) the local copy holds.
func (n *Node) Applied() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied
}

// waitApplied blocks until the local copy holds log stream message seq.
func (n *Node) waitApplied(ctx context.Context, seq uint64) error {
	for {
		n.mu.Lock()
		applied, ch := n.applied, n.appliedCh
		n.mu.Unlock()
		if applied >= seq {
			return nil
		}
		if err := n.Err(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("local copy at log batch %d of %d: %w", applied, seq, ctx.Err())
		}
	}
}

// Append publishes recs as candidates and returns once this node's copy of
// the log holds each of them, with their seqs: a record is then sequenced,
// in the log stream on a quorum of NATS servers, and queryable here. A
// record whose id this node's copy already holds is reported Duplicate
// without being published; so is one JetStream's ingest window had seen.
// When NATS has no quorum or no writer sequences the records within
// AckTimeout, the error wraps stele.ErrUnavailable; resubmitting is safe.
func (n *Node) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if err := n.Err(); err != nil {
		return nil, err
	}
	res := make([]stele.Appended, len(recs))
	chans := make([]chan appliedRec, len(recs))
	n.mu.Lock()
	for i, r := range recs {
		chans[i] = make(chan appliedRec, 1)
		n.waiters[r.ID] = append(n.waiters[r.ID], chans[i])
	}
	n.mu.Unlock()
	defer n.dropWaiters(recs, chans)
	// Every record applied from here on reaches its waiter; the ones
	// applied before are in the index once it covers this size.
	size := n.cfg.Local.Size()
	if err := n.cfg.Local.WaitIndexed(ctx, size); err != nil {
		return nil, err
	}
	todo := make([]int, 0, len(recs))
	for i, r := range recs {
		seq, ok, err := n.cfg.Index.LookupID(r.ID)
		if err != nil {
			// No id in the message: clients may choose ids from
			// personal data.
			return nil, fmt.Errorf("look up a record id: %w", err)
		}
		if ok {
			res[i] = stele.Appended{Seq: seq, ID: r.ID, Duplicate: true}
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return res, nil
	}
	if n.cfg.Sealer != nil {
		for _, i := range todo {
			if err := n.cfg.Sealer.Seal(ctx, recs[i]); err != nil {
				return nil, &stele.RecordError{Index: i, Err: err}
			}
		}
		if err := n.cfg.Sealer.Sync(ctx); err != nil {
			return nil, fmt.Errorf("make sealing keys durable: %w", err)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, n.cfg.AckTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(recs))
	for _, i := range todo {
		r := recs[i]
		body := record.AppendBody(make([]byte, 0, record.BodySize(r)), r)
		if size := record.HeaderSize + len(body); size > logstore.MaxRecordSize {
			return nil, fmt.Errorf("%w: record %d of the batch encodes to %d bytes, more than %d", logstore.ErrTooLarge, i, size, logstore.MaxRecordSize)
		}
		m := nats.NewMsg(n.ingestSubj)
		m.Data = body
		m.Header.Set(nats.MsgIdHdr, r.ID)
		f, err := n.cfg.JS.PublishMsgAsync(m)
		if err != nil {
			return nil, unavailable("publish a candidate record to the ingest stream", err)
		}
		futures[i] = f
	}
	dup := make([]bool, len(recs))
	for _, i := range todo {
		select {
		case ack := <-futures[i].Ok():
			dup[i] = ack.Duplicate
		case err := <-futures[i].Err():
			return nil, unavailable("publish a candidate record to the ingest stream", err)
		case <-pctx.Done():
			return nil, unavailable("publish a candidate record to the ingest stream", pctx.Err())
		}
	}
	for _, i := range todo {
		select {
		case a := <-chans[i]:
			res[i] = stele.Appended{Seq: a.seq, ID: recs[i].ID, Duplicate: dup[i]}
			recs[i].Seq, recs[i].RecordedAt = a.seq, a.at
		case <-pctx.Done():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("append not acknowledged: %w", ctx.Err())
			}
			if err := n.Err(); err != nil {
				return nil, err
			}
			return nil, unavailable("wait for the writer to sequence the records", fmt.Errorf("not in this node's copy of the log within %s", n.cfg.AckTimeout))
		}
	}
	return res, nil
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", stele.ErrUnavailable, what, err)
}

func (n *Node) dropWaiters(recs []*record.Record, chans []chan appliedRec) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, r := range recs {
		ws := n.waiters[r.ID]
		for j, c := range ws {
			if c == chans[i] {
				ws = append(ws[:j], ws[j+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(n.waiters, r.ID)
		} else {
			n.waiters[r.ID] = ws
		}
	}
}
