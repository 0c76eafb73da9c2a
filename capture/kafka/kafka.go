// Package kafka is the source that consumes Debezium change events from
// Kafka topics (source kind "kafka"): the event backbone many companies
// already run, so Stele needs no second reader on their databases.
//
// It joins a consumer group (franz-go), polls records, decodes them with
// capture/debezium and hands them to the runtime's Acknowledger; a
// partition's offset is committed to the group only in the acknowledger's
// OnDurable, after the records before it are durable in the log. Record ids
// derive from the database position Debezium reports, not the offset, so a
// message read twice (after a crash before the commit, after a rebalance,
// or re-sent by Debezium) is stored once.
//
// Rebalances: polls block rebalances (BlockRebalanceOnPoll), and the
// revoke callback drains the acknowledger, so every record of a revoked
// partition is durable and its offset committed before the partition is
// released. When the transaction-metadata topic is configured, the records
// of a transaction are held until its END and all its events arrived, and
// no partition's commit passes a held message; a rebalance while
// transactions are incomplete ends the session, and the next one reads
// them again from the committed offsets.
//
// A message that is not a Debezium event goes to the dead letters
// (Config.DeadLetter) naming its topic, partition and offset, and the
// source moves on.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
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
}

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
	return &Source{cfg: cfg, logger: logger.With("source", cfg.Name)}, nil
}

// Name implements capture.Source.
func (s *Source) Name() string { return s.cfg.Name }

// Stats returns the runtime's figures for the source.
func (s *Source) Stats() capture.Stats { return s.progress.Snapshot() }

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
// transactions were still incomplete.
var errRevokedIncomplete = errors.New("partitions revoked while transactions were incomplete; reading them again from the committed offsets")

type session struct {
	src  *Source
	sink capture.Sink
	cl   *kgo.Client
	ack  *capture.Acknowledger[offsets]
	dec  debezium.Decoder
	asm  debezium.Assembler[ref]

	mu      sync.Mutex
	next    map[tp]ref   // next offset per partition, of messages handled
	sent    map[tp]int64 // committable offset last submitted per partition
	restart error        // set by a callback: end the session
}

func (s *Source) session(ctx context.Context, sink capture.Sink) (progressed bool, err error) {
	x := &session{src: s, sink: sink, next: map[tp]ref{}, sent: map[tp]int64{}}
	x.dec.SourceName = s.cfg.Name
	if s.cfg.Mirrors != "" {
		x.dec.SourceName, x.dec.ChangeIDs = s.cfg.Mirrors, true
	}
	x.ack = capture.NewAcknowledger(ctx, capture.AckOptions[offsets]{
		Sink: sink, BatchSize: s.cfg.BatchSize, Progress: &s.progress,
		OnDurable: x.commit,
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
	defer func() {
		// Close leaves the group: the revoke callback drains the
		// acknowledger and commits what is durable.
		cl.CloseAllowingRebalance()
		x.ack.Stop()
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
		x.mu.Lock()
		restart := x.restart
		x.mu.Unlock()
		if restart != nil {
			return progressed, restart
		}
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
	var recs []*record.Record
	var err error
	fetches.EachRecord(func(m *kgo.Record) {
		if err != nil {
			return
		}
		r := ref{tp: tp{m.Topic, m.Partition}, epoch: m.LeaderEpoch, offset: m.Offset}
		var out []*record.Record
		out, err = x.message(ctx, m, r)
		recs = append(recs, out...)
		x.mu.Lock()
		x.next[r.tp] = r
		x.mu.Unlock()
	})
	if err != nil {
		return err
	}
	return x.ack.Submit(ctx, recs, x.committable())
}

// message decodes one Kafka record into what it releases now.
func (x *session) message(ctx context.Context, m *kgo.Record, r ref) ([]*record.Record, error) {
	ev, err := x.dec.Decode(m.Key, m.Value)
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
		if x.src.cfg.OutboxTable != "" {
			return capture.JoinOutbox(d.Records, x.src.cfg.OutboxTable), nil
		}
		return d.Records, nil
	}
	return nil, nil
}

// committable is, per partition whose position moved, the offset past the
// last handled message, held back to the first message of an incomplete
// transaction.
func (x *session) committable() offsets {
	held := map[tp]int64{}
	x.asm.Held(func(r ref) {
		if o, ok := held[r.tp]; !ok || r.offset < o {
			held[r.tp] = r.offset
		}
	})
	x.mu.Lock()
	defer x.mu.Unlock()
	out := offsets{}
	for p, r := range x.next {
		at, epoch := r.offset+1, r.epoch
		if h, ok := held[p]; ok {
			at, epoch = h, -1
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

// commit runs once the records before pos are durable.
func (x *session) commit(ctx context.Context, pos offsets) error {
	if len(pos) == 0 {
		return nil
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
	if cerr != nil {
		// The records are durable; a commit lost to a rebalance only
		// means they are read again, and their ids store them once.
		x.src.logger.Warn("offset commit failed; the records are durable and will be recognised if read again", "err", cerr)
	}
	return nil
}

func (x *session) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	x.release(lost, true)
}

func (x *session) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	x.release(lost, false)
}

// release makes everything handled durable (and, when the partitions are
// still ours, committed) before the group hands them to another member.
func (x *session) release(parts map[string][]int32, owned bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.ack.Drain(ctx); err != nil {
		x.src.logger.Warn("records not durable before the partitions were released; they will be read again", "err", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(x.next, tp{t, p})
			delete(x.sent, tp{t, p})
		}
	}
	if x.asm.Pending() > 0 && len(parts) > 0 {
		x.restart = errRevokedIncomplete
	}
	_ = owned
}
