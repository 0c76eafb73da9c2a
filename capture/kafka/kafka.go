// Package kafka is the source that consumes Debezium change events from
// Kafka topics (source kind "kafka"): the event backbone many companies
// already run, so Stele needs no second reader on their databases.
//
// It joins a consumer group (franz-go), polls records, decodes them with
// capture/debezium and hands them to the runtime's Acknowledger; a
// partition's offset reaches the committer only in the acknowledger's
// OnDurable, after the records before it are durable in the log, and the
// committer commits what it was handed on a goroutine of its own, merged,
// so the next append never waits for the broker. Record ids
// derive from the database position Debezium reports, not the offset, so a
// message read twice (after a crash before the commit, after a rebalance,
// or re-sent by Debezium) is stored once.
//
// Rebalances: polls block rebalances (BlockRebalanceOnPoll), and the
// revoke callback drains the acknowledger, so every record of a revoked
// partition is durable and its offset committed before the partition is
// released. When the transaction-metadata topic is configured, the records
// of a transaction are held until its END and all its events arrived, no
// partition's commit passes a held message, and the committed offsets
// never split a completed transaction (so a restart reads whole
// transactions again, never half of one); a rebalance while transactions
// are incomplete ends the session, and the next one reads them again from
// the committed offsets.
//
// Decoding runs on every core, a batch split between the decoders; the
// transactions are assembled and the offsets moved in order afterwards.
//
// With Config.InstanceID the source is a static group member, so a process
// restarted after kill -9 replaces its dead predecessor at once instead of
// waiting for its session to time out while the group hands it partitions.
//
// A message that is not a Debezium event goes to the dead letters
// (Config.DeadLetter) naming its topic, partition and offset, and the
// source moves on.
package kafka

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/record"
)

// Config configures a Kafka source.
type Config struct {
	// Name is the records' source.name, unless Mirrors is set.
	Name string
	// Mirrors names the direct source (capture/postgres, capture/mysql)
	// whose database the Debezium connector reads: the records then
	// carry that source's name, and PostgreSQL events get its change ids
	// (debezium.Decoder.ChangeIDs), so a change captured both ways is one
	// record.
	Mirrors string
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics to consume; with TopicRegex each is a regular expression.
	Topics     []string
	TopicRegex bool
	// Group is the consumer group (default "stele-" + Name).
	Group string
	// InstanceID, when set, makes the source a static member of the
	// group (KIP-345): a restarted process rejoins under the same id and
	// takes its predecessor's place at once, fencing it. Without one, a
	// process killed with kill -9 stays a member until its session times
	// out and keeps the partitions the next rebalance gives it, which
	// nobody reads meanwhile. It must differ between processes reading
	// the same group (cmd/stele derives one from the host and the data
	// directory). A static member does not leave the group when it stops:
	// its partitions wait for it for a session timeout.
	InstanceID string
	// TransactionTopic is Debezium's transaction-metadata topic
	// (<topic.prefix>.transaction); when set, a transaction's records are
	// appended together once it is whole.
	TransactionTopic string
	// OutboxTable ("schema.table") is Debezium's outbox layout: its rows
	// become event records and the other changes of their transaction
	// carry them as cause (needs TransactionTopic, to know the
	// transaction whole).
	OutboxTable string
	TLS         *tls.Config
	SASL        SASL
	// DeadLetter parks a malformed message (deadletter.Store.Park fits);
	// nil logs it and moves on.
	DeadLetter func(ctx context.Context, r *record.Record, fe *record.FieldError) error
	// BatchSize is the most records per poll and per append (default 1000).
	BatchSize int
	// MinBackoff and MaxBackoff bound reconnect delays.
	MinBackoff, MaxBackoff time.Duration
	// SessionTimeout is the group session timeout (default the client's).
	SessionTimeout time.Duration
	Logger         *slog.Logger
}

// SASL names a SASL mechanism and its credentials; an empty Mechanism
// means none.
type SASL struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	User      string
	Password  string
}

// ErrAuth: the brokers refused the credentials.
var ErrAuth = errors.New("kafka authentication failed")

// ErrConfig: the configuration cannot work.
var ErrConfig = errors.New("kafka source configuration")

// Source consumes Debezium events from Kafka.
type Source struct {
	cfg      Config
	logger   *slog.Logger
	progress capture.Progress

	lagMu sync.Mutex
	lag   map[tp]*partLag // partitions this process reads, across sessions
}

// partLag is one partition's consumer lag: its high watermark as the last
// fetch answer gave it, and the group's committed offset.
type partLag struct{ end, committed int64 }

// New checks cfg and returns the source.
func New(cfg Config) (*Source, error) {
	switch {
	case cfg.Name == "":
		return nil, fmt.Errorf("%w: name: is required", ErrConfig)
	case len(cfg.Brokers) == 0:
		return nil, fmt.Errorf("%w: brokers: at least one host:port is required", ErrConfig)
	case len(cfg.Topics) == 0:
		return nil, fmt.Errorf("%w: topics: at least one topic is required", ErrConfig)
	}
	if cfg.TopicRegex {
		for _, t := range cfg.Topics {
			if _, err := regexp.Compile(t); err != nil {
				return nil, fmt.Errorf("%w: topics: %q is not a regular expression: %v", ErrConfig, t, err)
			}
		}
	}
	switch cfg.SASL.Mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return nil, fmt.Errorf("%w: sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", ErrConfig, cfg.SASL.Mechanism)
	}
	if cfg.OutboxTable != "" && cfg.TransactionTopic == "" {
		return nil, fmt.Errorf("%w: outbox_table: needs transaction_topic, to know which changes share the outbox row's transaction", ErrConfig)
	}
	if cfg.Group == "" {
		cfg.Group = "stele-" + cfg.Name
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, logger: logger.With("source", cfg.Name), lag: map[tp]*partLag{}}, nil
}

// Name implements capture.Source.
func (s *Source) Name() string { return s.cfg.Name }

// Stats returns the runtime's figures for the source: LagBytes is the
// consumer lag in messages, summed over the partitions this process reads
// (high watermark minus the group's committed offset), and Position their
// committed offsets ("topic/partition:offset", in order).
func (s *Source) Stats() capture.Stats {
	var end, committed uint64
	s.lagMu.Lock()
	names := make([]tp, 0, len(s.lag))
	for p, l := range s.lag {
		end += uint64(max(l.end, l.committed))
		committed += uint64(l.committed)
		names = append(names, p)
	}
	s.lagMu.Unlock()
	s.progress.Observe(end, committed)
	st := s.progress.Snapshot()
	slices.SortFunc(names, func(a, b tp) int {
		return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	var b strings.Builder
	s.lagMu.Lock()
	for i, p := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s/%d:%d", p.topic, p.partition, s.lag[p].committed)
	}
	s.lagMu.Unlock()
	st.Position = b.String()
	return st
}

// PartitionLag is the consumer lag of each partition this process reads,
// in messages, by "topic/partition" (the /metrics per-partition gauge).
func (s *Source) PartitionLag() map[string]uint64 {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	out := make(map[string]uint64, len(s.lag))
	for p, l := range s.lag {
		out[p.topic+"/"+strconv.Itoa(int(p.partition))] = uint64(max(0, l.end-l.committed))
	}
	return out
}

// observeFetch notes each fetched partition's high watermark, and where
// reading it started as its committed offset until this process commits.
func (s *Source) observeFetch(fetches kgo.Fetches) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		k := tp{p.Topic, p.Partition}
		l := s.lag[k]
		if l == nil {
			l = &partLag{committed: -1}
			s.lag[k] = l
		}
		if p.HighWatermark > 0 {
			l.end = p.HighWatermark
		}
		if l.committed < 0 {
			l.committed = 0
			if len(p.Records) > 0 {
				l.committed = p.Records[0].Offset
			}
		}
	})
}

// observeCommit notes offsets the group accepted.
func (s *Source) observeCommit(pos offsets) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	for topic, ps := range pos {
		for p, eo := range ps {
			if l := s.lag[tp{topic, p}]; l != nil && eo.Offset > l.committed {
				l.committed = eo.Offset
			}
		}
	}
}

// forget drops partitions another member reads now.
func (s *Source) forget(parts map[string][]int32) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(s.lag, tp{t, p})
		}
	}
}

// Run implements capture.Source.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	sup := capture.Supervisor{
		MinBackoff: s.cfg.MinBackoff, MaxBackoff: s.cfg.MaxBackoff,
		Progress: &s.progress, Redact: capture.Redactor(s.cfg.SASL.Password), Logger: s.logger,
		Permanent: capture.IsPermanent,
	}
	return sup.Run(ctx, func(ctx context.Context) (bool, error) { return s.session(ctx, sink) })
}

func (s *Source) opts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.WithLogger(kgoLogger{s.logger}),
	}
	topics := s.cfg.Topics
	if s.cfg.TransactionTopic != "" {
		t := s.cfg.TransactionTopic
		if s.cfg.TopicRegex {
			t = "^" + regexp.QuoteMeta(t) + "$"
		}
		topics = append(topics[:len(topics):len(topics)], t)
	}
	opts = append(opts, kgo.ConsumeTopics(topics...))
	if s.cfg.TopicRegex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	if s.cfg.SessionTimeout > 0 {
		// The rebalance timeout bounds how long a join waits for members
		// that do not rejoin: a member killed without leaving would
		// otherwise hold the group for the client's default minute.
		opts = append(opts, kgo.SessionTimeout(s.cfg.SessionTimeout), kgo.HeartbeatInterval(s.cfg.SessionTimeout/3),
			kgo.RebalanceTimeout(s.cfg.SessionTimeout))
	}
	if s.cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.cfg.TLS))
	}
	var mech sasl.Mechanism
	switch a := s.cfg.SASL; a.Mechanism {
	case "PLAIN":
		mech = plain.Auth{User: a.User, Pass: a.Password}.AsMechanism()
	case "SCRAM-SHA-256":
		mech = scram.Auth{User: a.User, Pass: a.Password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		mech = scram.Auth{User: a.User, Pass: a.Password}.AsSha512Mechanism()
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// ref is one message's place.
type ref struct {
	tp
	epoch  int32
	offset int64
}

// offsets are the next offsets to commit per partition.
type offsets map[string]map[int32]kgo.EpochOffset

// errRevokedIncomplete ends a session whose partitions were revoked while
// transactions were still incomplete, or complete but not yet wholly behind
// the committed offsets (see committable).
var errRevokedIncomplete = errors.New("partitions revoked while transactions were incomplete or not yet behind the committed offsets; reading them again from the committed offsets")

type session struct {
	src  *Source
	sink capture.Sink
	cl   *kgo.Client
	ack  *capture.Acknowledger[offsets]
	asm  debezium.Assembler[ref]
	// decs are one decoder per core (each caches schemas), msgs and evs
	// the poll goroutine's buffers for one batch.
	decs []debezium.Decoder
	msgs []*kgo.Record
	evs  []decoded

	mu   sync.Mutex
	next map[tp]ref   // next offset per partition, of messages handled
	sent map[tp]int64 // committable offset last submitted per partition
	// spans are the messages of completed transactions not yet wholly
	// behind the committed offsets (see committable).
	spans   [][]ref
	restart error // set by a callback: end the session

	// Commits run on their own goroutine (see durable): pending are the
	// offsets made durable and not yet committed, merged; commitMu keeps
	// one commit at a time, so a later one never lands before an earlier.
	pendMu   sync.Mutex
	pending  offsets
	wake     chan struct{}
	commitMu sync.Mutex
}

func (s *Source) session(ctx context.Context, sink capture.Sink) (progressed bool, err error) {
	x := &session{src: s, sink: sink, next: map[tp]ref{}, sent: map[tp]int64{}, wake: make(chan struct{}, 1)}
	x.decs = make([]debezium.Decoder, runtime.GOMAXPROCS(0))
	for i := range x.decs {
		x.decs[i].SourceName = s.cfg.Name
		if s.cfg.Mirrors != "" {
			x.decs[i].SourceName, x.decs[i].ChangeIDs = s.cfg.Mirrors, true
		}
	}
	x.ack = capture.NewAcknowledger(ctx, capture.AckOptions[offsets]{
		Sink: sink, BatchSize: s.cfg.BatchSize, Progress: &s.progress,
		// A poll's batch is small next to what the log takes in one
		// durable append: when the log falls behind, the batches queued
		// meanwhile go in one append (one fsync, one commit) instead of
		// one each, so the source's speed follows the log's.
		Queue: coalesceBatches, Coalesce: coalesceBatches * s.cfg.BatchSize,
		OnDurable: x.durable,
	})
	opts, err := s.opts()
	if err != nil {
		return false, capture.PermanentError(err)
	}
	opts = append(opts,
		kgo.OnPartitionsRevoked(x.revoked),
		kgo.OnPartitionsLost(x.lost))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		x.ack.Stop()
		return false, capture.PermanentError(fmt.Errorf("%w: %v", ErrConfig, err))
	}
	x.cl = cl
	cctx, stopCommits := context.WithCancel(context.WithoutCancel(ctx))
	var committer sync.WaitGroup
	committer.Go(func() { x.commitLoop(cctx) })
	defer func() {
		// Close leaves the group: the revoke callback drains the
		// acknowledger and commits what is durable.
		cl.CloseAllowingRebalance()
		x.ack.Stop()
		stopCommits()
		committer.Wait()
	}()
	if err := cl.Ping(ctx); err != nil {
		return false, s.classify(err)
	}
	s.progress.SetState(capture.StateStreaming)
	for {
		fetches := cl.PollRecords(ctx, s.cfg.BatchSize)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return progressed, nil
		}
		// A revoke callback ran before this poll returned (polls block
		// rebalances, so none runs from here to AllowRebalance): a
		// restart it asked for comes before these records, which it
		// would otherwise assemble without the revoked partitions.
		x.mu.Lock()
		restart := x.restart
		x.mu.Unlock()
		if restart != nil {
			cl.AllowRebalance()
			return true, restart
		}
		// A fetch answer holds what one partition had; every job costs
		// an fsync, so take whatever else is buffered, up to a batch.
		for n := fetches.NumRecords(); n > 0 && n < s.cfg.BatchSize; {
			//lint:ignore SA1012 a nil context asks franz-go for what is buffered, without waiting
			more := cl.PollRecords(nil, s.cfg.BatchSize-n)
			if more.NumRecords() == 0 {
				break
			}
			fetches = append(fetches, more...)
			n += more.NumRecords()
		}
		var ferr error
		fetches.EachError(func(topic string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			cl.AllowRebalance()
			return progressed, s.classify(ferr)
		}
		if err := x.handle(ctx, fetches); err != nil {
			cl.AllowRebalance()
			return progressed, err
		}
		progressed = progressed || !fetches.Empty()
		cl.AllowRebalance()
		if err := x.ack.Failed(); err != nil {
			return progressed, err
		}
	}
}

func (s *Source) classify(err error) error {
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.UnsupportedSaslMechanism) {
		return capture.PermanentError(fmt.Errorf("%w for user %q (%v): check the SASL user, password and mechanism", ErrAuth, s.cfg.SASL.User, err))
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) {
		return capture.PermanentError(fmt.Errorf("%w: user %q may not read the topics or the group %s (%v): grant it READ on both", ErrAuth, s.cfg.SASL.User, s.cfg.Group, err))
	}
	return err
}

// handle decodes one poll's records and submits them with the offsets now
// committable.
func (x *session) handle(ctx context.Context, fetches kgo.Fetches) error {
	x.src.observeFetch(fetches)
	x.msgs = x.msgs[:0]
	fetches.EachRecord(func(m *kgo.Record) { x.msgs = append(x.msgs, m) })
	evs := x.decodeAll(x.msgs)
	var recs []*record.Record
	for i, m := range x.msgs {
		out, err := x.add(ctx, m, evs[i])
		if err != nil {
			return err
		}
		recs = append(recs, out...)
	}
	clear(x.msgs) // the client's buffers, not ours to keep alive
	return x.ack.Submit(ctx, recs, x.committable())
}

// decoded is one message's Decode result.
type decoded struct {
	ev  debezium.Event
	err error
}

// minPerDecoder is the fewest messages worth a goroutine of their own.
const minPerDecoder = 64

// decodeAll decodes msgs, spread over the session's decoders (one per
// core): decoding is the source's own CPU cost per message, and it needs
// nothing but the message, while assembling transactions and moving
// offsets stay in order on the poll goroutine.
func (x *session) decodeAll(msgs []*kgo.Record) []decoded {
	out := x.evs[:0]
	out = append(out, make([]decoded, len(msgs))...)
	x.evs = out
	workers := min(len(x.decs), (len(msgs)+minPerDecoder-1)/minPerDecoder)
	if workers <= 1 {
		for i, m := range msgs {
			out[i].ev, out[i].err = x.decs[0].Decode(m.Key, m.Value)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(msgs) + workers - 1) / workers
	for w := range workers {
		dec := &x.decs[w]
		lo, hi := w*chunk, min((w+1)*chunk, len(msgs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i].ev, out[i].err = dec.Decode(msgs[i].Key, msgs[i].Value)
			}
		})
	}
	wg.Wait()
	return out
}

// add takes one decoded message in its partition's order and moves the
// partition's position past it.
func (x *session) add(ctx context.Context, m *kgo.Record, d decoded) ([]*record.Record, error) {
	r := ref{tp: tp{m.Topic, m.Partition}, epoch: m.LeaderEpoch, offset: m.Offset}
	out, err := x.take(ctx, m, r, d)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	x.next[r.tp] = r
	x.mu.Unlock()
	return out, nil
}

// take handles one decoded message: it parks a malformed one, and returns
// what the message releases now.
func (x *session) take(ctx context.Context, m *kgo.Record, r ref, d decoded) ([]*record.Record, error) {
	ev, err := d.ev, d.err
	if err != nil {
		where := m.Topic + "/" + strconv.Itoa(int(m.Partition)) + "/" + strconv.FormatInt(m.Offset, 10)
		x.src.logger.Warn("malformed message parked as a dead letter", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		if x.src.cfg.DeadLetter != nil {
			dl, fe := debezium.DeadLetter(x.src.cfg.Name, "kafka", where, m.Key, m.Value, err)
			if err := x.src.cfg.DeadLetter(ctx, dl, fe); err != nil {
				return nil, fmt.Errorf("park malformed message %s: %w", where, err)
			}
		}
		return nil, nil
	}
	if ev.Kind == debezium.Change && x.src.cfg.TransactionTopic == "" {
		ev.TxID = ""
	}
	if d, ok := x.asm.Add(ev, r); ok {
		if len(d.Refs) > 1 {
			x.mu.Lock()
			x.spans = append(x.spans, d.Refs)
			x.mu.Unlock()
		}
		if x.src.cfg.OutboxTable != "" {
			return capture.JoinOutbox(d.Records, x.src.cfg.OutboxTable), nil
		}
		return d.Records, nil
	}
	return nil, nil
}

// committable is, per partition whose position moved, the offset past the
// last handled message, held back to the first message of an incomplete
// transaction, and then lowered until no completed transaction straddles
// it. A session that starts over reads every partition again from its
// committed offset with an empty assembler: a transaction with messages on
// both sides of the offsets would come back in part (its END, or some of
// its changes, already behind the commit) and wait for ever for the rest,
// holding its partitions' commits back in every later session. With no
// transaction across the cut, what is read again is whole transactions,
// recognised by their ids.
func (x *session) committable() offsets {
	x.mu.Lock()
	defer x.mu.Unlock()
	cut := make(map[tp]int64, len(x.next))
	for p, r := range x.next {
		cut[p] = r.offset + 1
	}
	lower := func(r ref) bool {
		if at, ok := cut[r.tp]; ok && r.offset < at {
			cut[r.tp] = r.offset
			return true
		}
		return false
	}
	x.asm.Held(func(r ref) { lower(r) })
	// Lowering one partition can make another transaction straddle:
	// repeat until nothing moves (cuts only go down, so this ends).
	for moved := true; moved; {
		moved = false
		for _, refs := range x.spans {
			if straddles(refs, cut) {
				for _, r := range refs {
					moved = lower(r) || moved
				}
			}
		}
	}
	// A transaction wholly behind the cut stays behind every later one.
	keep := x.spans[:0]
	for _, refs := range x.spans {
		if !behind(refs, cut) {
			keep = append(keep, refs)
		}
	}
	clear(x.spans[len(keep):])
	x.spans = keep
	out := offsets{}
	for p, at := range cut {
		epoch := int32(-1)
		if r := x.next[p]; r.offset+1 == at {
			epoch = r.epoch
		}
		if at <= x.sent[p] {
			continue
		}
		x.sent[p] = at
		if out[p.topic] == nil {
			out[p.topic] = map[int32]kgo.EpochOffset{}
		}
		out[p.topic][p.partition] = kgo.EpochOffset{Epoch: epoch, Offset: at}
	}
	return out
}

// straddles reports whether some of refs are behind the cut and some not.
func straddles(refs []ref, cut map[tp]int64) bool {
	var before, after bool
	for _, r := range refs {
		if r.offset < cut[r.tp] {
			before = true
		} else {
			after = true
		}
	}
	return before && after
}

// behind reports whether every one of refs is behind the cut.
func behind(refs []ref, cut map[tp]int64) bool {
	for _, r := range refs {
		if r.offset >= cut[r.tp] {
			return false
		}
	}
	return true
}

// coalesceBatches is how many polled batches one append may merge.
const coalesceBatches = 8

// durable runs once the records before pos are durable: it hands pos to
// the committer instead of committing on the acknowledger's goroutine, so
// the next append does not wait for a broker round trip, and the offsets
// of appends made while a commit is under way go in one commit.
func (x *session) durable(_ context.Context, pos offsets) error {
	if len(pos) == 0 {
		return nil
	}
	x.pendMu.Lock()
	if x.pending == nil {
		x.pending = offsets{}
	}
	for topic, ps := range pos {
		if x.pending[topic] == nil {
			x.pending[topic] = map[int32]kgo.EpochOffset{}
		}
		for p, eo := range ps {
			x.pending[topic][p] = eo // offsets only grow: the later wins
		}
	}
	x.pendMu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return nil
}

// commitLoop commits what durable hands over until ctx ends.
func (x *session) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-x.wake:
			x.flushCommits(ctx)
		}
	}
}

// flushCommits commits the pending offsets, if any, and returns once the
// group answered.
func (x *session) flushCommits(ctx context.Context) {
	x.commitMu.Lock()
	defer x.commitMu.Unlock()
	x.pendMu.Lock()
	pos := x.pending
	x.pending = nil
	x.pendMu.Unlock()
	x.commit(ctx, pos)
}

// commit commits pos, whose records are durable.
func (x *session) commit(ctx context.Context, pos offsets) {
	if len(pos) == 0 {
		return
	}
	var cerr error
	x.cl.CommitOffsetsSync(ctx, pos, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr == nil {
		x.src.observeCommit(pos)
	}
	if cerr != nil {
		// The records are durable; a commit lost to a rebalance only
		// means they are read again, and their ids store them once.
		x.src.logger.Warn("offset commit failed; the records are durable and will be recognised if read again", "err", cerr)
	}
}

func (x *session) revoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	x.release(revoked, true)
}

func (x *session) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	x.release(lost, false)
}

// release makes everything handled durable (and, when the partitions are
// still ours, committed) before the group hands them to another member.
func (x *session) release(parts map[string][]int32, ours bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.ack.Drain(ctx); err != nil {
		x.src.logger.Warn("records not durable before the partitions were released; they will be read again", "err", err)
	}
	// Drain ran every OnDurable: what they handed over is committed now,
	// while the partitions are still ours; a lost partition's offsets
	// would only be refused.
	if !ours {
		x.pendMu.Lock()
		for t, ps := range parts {
			for _, p := range ps {
				delete(x.pending[t], p)
			}
			if len(x.pending[t]) == 0 {
				delete(x.pending, t)
			}
		}
		x.pendMu.Unlock()
	}
	x.flushCommits(ctx)
	x.mu.Lock()
	defer x.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(x.next, tp{t, p})
			delete(x.sent, tp{t, p})
		}
	}
	x.src.forget(parts)
	// The cuts need every partition of a transaction; without the
	// revoked ones the session cannot keep them consistent.
	if (x.asm.Pending() > 0 || len(x.spans) > 0) && len(parts) > 0 {
		x.restart = errRevokedIncomplete
	}
}
