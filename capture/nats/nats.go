// Package nats is the source that consumes Debezium change events from
// NATS JetStream (source kind "nats"), the payloads Debezium Server's NATS
// JetStream sink publishes: one subject per table, the message data the
// same JSON (with or without schemas) a Kafka topic would hold.
//
// It reads through a durable pull consumer with AckPolicy AckAll, so an
// ack covers every message before it, like a Kafka offset: the ack goes
// out only in the acknowledger's OnDurable, after the records before it
// are durable in the log, and it never reaches past a message held in an
// incomplete transaction nor falls between two messages of one completed
// transaction. A consumer left with delivered, unacked messages (a crash)
// is made again from its ack floor when a session starts, so what was not
// yet durable is read again at once and in order (the server would
// otherwise deliver it again only after AckWait, behind newer messages),
// and the records' ids (from the database position) store it once. With
// TxSubject (the metadata events' subject) a transaction is appended
// whole, as in the kafka source. A message that is no Debezium event is
// parked in the dead letters (naming stream and sequence) and passed.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/record"
)

// Config configures a NATS source.
type Config struct {
	// Name is the records' source.name.
	Name string
	// URL is the NATS server URL (nats://host:4222).
	URL string
	// Stream is the JetStream stream; Subjects filter it (default: all).
	Stream   string
	Subjects []string
	// Durable is the durable consumer's name (default "stele-" + Name).
	Durable string
	// TxSubject is the subject of Debezium's transaction-metadata events
	// (it must be in Subjects, or Subjects empty).
	TxSubject string
	// OutboxTable ("schema.table"): outbox rows become event records and
	// the changes of their transaction carry them as cause (needs
	// TxSubject).
	OutboxTable string
	// Mirrors names the direct source whose database the connector
	// reads (see kafka.Config.Mirrors).
	Mirrors string
	// User and Password, or Token, authenticate (optional).
	User, Password, Token string
	// DeadLetter parks a malformed message; nil logs it.
	DeadLetter func(ctx context.Context, r *record.Record, fe *record.FieldError) error
	// BatchSize is the most messages per fetch (default 500).
	BatchSize int
	// AckWait is how long the server waits for the ack of a message it
	// delivered before delivering it again (default 30s): after a crash,
	// what was not yet durable comes back that much later. Messages
	// held for an incomplete transaction are kept in progress meanwhile.
	AckWait                time.Duration
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// ErrConfig: the configuration cannot work.
var ErrConfig = errors.New("nats source configuration")

// ErrAuth: the server refused the credentials.
var ErrAuth = errors.New("nats authentication failed")

// Source consumes Debezium events from JetStream.
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
	case cfg.URL == "":
		return nil, fmt.Errorf("%w: url: is required, e.g. nats://host:4222", ErrConfig)
	case cfg.Stream == "":
		return nil, fmt.Errorf("%w: stream: is required", ErrConfig)
	}
	if cfg.OutboxTable != "" && cfg.TxSubject == "" {
		return nil, fmt.Errorf("%w: outbox_table: needs tx_subject, to know which changes share the outbox row's transaction", ErrConfig)
	}
	if cfg.Durable == "" {
		cfg.Durable = "stele-" + cfg.Name
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
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
		Progress: &s.progress, Redact: capture.Redactor(s.cfg.Password, s.cfg.Token), Logger: s.logger,
		Permanent: capture.IsPermanent,
	}
	return sup.Run(ctx, func(ctx context.Context) (bool, error) { return s.session(ctx, sink) })
}

func (s *Source) session(ctx context.Context, sink capture.Sink) (bool, error) {
	opts := []natsgo.Option{natsgo.Name("stele " + s.cfg.Name), natsgo.MaxReconnects(0)}
	if s.cfg.User != "" {
		opts = append(opts, natsgo.UserInfo(s.cfg.User, s.cfg.Password))
	}
	if s.cfg.Token != "" {
		opts = append(opts, natsgo.Token(s.cfg.Token))
	}
	nc, err := natsgo.Connect(s.cfg.URL, opts...)
	if err != nil {
		if errors.Is(err, natsgo.ErrAuthorization) || errors.Is(err, natsgo.ErrAuthExpired) {
			return false, capture.PermanentError(fmt.Errorf("%w (%v): check the user and password or token", ErrAuth, err))
		}
		return false, fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	cons, err := s.consumer(ctx, js)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, capture.PermanentError(fmt.Errorf("%w: stream: %q does not exist on %s", ErrConfig, s.cfg.Stream, s.cfg.URL))
	}
	if err != nil {
		return false, fmt.Errorf("create the durable consumer %s: %w", s.cfg.Durable, err)
	}
	ack := capture.NewAcknowledger(ctx, capture.AckOptions[jetstream.Msg]{
		Sink: sink, Progress: &s.progress,
		OnDurable: func(ctx context.Context, m jetstream.Msg) error {
			if m == nil {
				return nil
			}
			// AckAll: this acks every message up to m.
			if err := m.Ack(); err != nil {
				// Durable already: a lost ack re-delivers, and the
				// id stores it once.
				s.logger.Warn("ack failed; the messages will be delivered again and recognised", "err", err)
			}
			return nil
		},
	})
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = ack.Drain(dctx)
		ack.Stop()
		// Acks are published without waiting; Close alone would drop
		// those still buffered.
		_ = nc.FlushWithContext(dctx)
	}()
	s.progress.SetState(capture.StateStreaming)
	dec := debezium.Decoder{SourceName: s.cfg.Name}
	if s.cfg.Mirrors != "" {
		dec.SourceName, dec.ChangeIDs = s.cfg.Mirrors, true
	}
	var asm debezium.Assembler[jetstream.Msg]
	var cut cutter
	progressed := false
	lastProgress := time.Now()
	for ctx.Err() == nil {
		// Messages held for a transaction not yet whole would be
		// delivered again once AckWait passes; tell the server they are
		// being worked on.
		if time.Since(lastProgress) > s.cfg.AckWait/3 {
			asm.Held(func(m jetstream.Msg) { _ = m.InProgress() })
			lastProgress = time.Now()
		}
		batch, err := cons.Fetch(s.cfg.BatchSize, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return progressed, fmt.Errorf("fetch: %w", err)
		}
		var recs []*record.Record
		for m := range batch.Messages() {
			if !cut.take(m) {
				continue // delivered again after AckWait: handled already
			}
			out, done, err := s.message(ctx, &dec, &asm, m)
			if err != nil {
				return progressed, err
			}
			cut.completed(done)
			recs = append(recs, out...)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, natsgo.ErrTimeout) {
			return progressed, fmt.Errorf("fetch: %w", err)
		}
		upTo := cut.ackable(&asm)
		if len(recs) == 0 && upTo == nil {
			continue
		}
		progressed = true
		if err := ack.Submit(ctx, recs, upTo); err != nil {
			return progressed, err
		}
	}
	return progressed, nil
}

// consumer returns the durable consumer, with AckAll: an ack covers every
// message before it, like a Kafka offset. A consumer left with messages
// delivered and not acked (a crash, an incomplete transaction at a stop),
// or made with other settings, is made again from its ack floor: the
// server would deliver those messages again only after AckWait, behind
// newer ones, and the log would get a row's changes out of order.
func (s *Source) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable: s.cfg.Durable, FilterSubjects: s.cfg.Subjects,
		AckPolicy: jetstream.AckAllPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: -1, AckWait: s.cfg.AckWait,
	}
	c, err := js.Consumer(ctx, s.cfg.Stream, s.cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return js.CreateConsumer(ctx, s.cfg.Stream, cfg)
	case err != nil:
		return nil, err
	}
	info := c.CachedInfo()
	if info.Config.AckPolicy == jetstream.AckAllPolicy && info.NumAckPending == 0 && info.Config.AckWait == cfg.AckWait &&
		slices.Equal(info.Config.FilterSubjects, cfg.FilterSubjects) {
		return c, nil
	}
	if err := js.DeleteConsumer(ctx, s.cfg.Stream, s.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	if floor := info.AckFloor.Stream; floor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	}
	return js.CreateConsumer(ctx, s.cfg.Stream, cfg)
}

// cutter chooses how far an ack may reach: past every message handled,
// but not past one held in an incomplete transaction, and never between
// two messages of one completed transaction. A restart reads from the ack
// floor with an empty assembler; a transaction split by it would come
// back in part and wait for ever for the rest (the Kafka source's
// committed offsets follow the same rule).
type cutter struct {
	last    uint64          // stream sequence of the last message handled
	pending []jetstream.Msg // handled and not yet covered by an ack, in order
	spans   [][]uint64      // completed transactions not wholly acked
}

func seqOf(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

// take notes a delivered message; false for one handled already.
func (c *cutter) take(m jetstream.Msg) bool {
	seq := seqOf(m)
	if seq != 0 && seq <= c.last {
		return false
	}
	c.last = seq
	c.pending = append(c.pending, m)
	return true
}

// completed notes the messages of what the assembler released.
func (c *cutter) completed(msgs []jetstream.Msg) {
	if len(msgs) < 2 {
		return
	}
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = seqOf(m)
	}
	c.spans = append(c.spans, seqs)
}

// ackable is the message an ack may now reach (nil: none further).
func (c *cutter) ackable(asm *debezium.Assembler[jetstream.Msg]) jetstream.Msg {
	at := c.last + 1
	asm.Held(func(m jetstream.Msg) { at = min(at, seqOf(m)) })
	for moved := true; moved; {
		moved = false
		for _, seqs := range c.spans {
			lo, hi := slices.Min(seqs), slices.Max(seqs)
			if lo < at && hi >= at {
				at, moved = lo, true
			}
		}
	}
	c.spans = slices.DeleteFunc(c.spans, func(seqs []uint64) bool { return slices.Max(seqs) < at })
	n := 0
	for n < len(c.pending) && seqOf(c.pending[n]) < at {
		n++
	}
	if n == 0 {
		return nil
	}
	m := c.pending[n-1]
	c.pending = slices.Delete(c.pending, 0, n)
	return m
}

// message decodes one message into what it releases now and the messages
// that may be acked once those records are durable.
func (s *Source) message(ctx context.Context, dec *debezium.Decoder, asm *debezium.Assembler[jetstream.Msg], m jetstream.Msg) ([]*record.Record, []jetstream.Msg, error) {
	var key []byte
	if k := m.Headers().Get("debezium-key"); k != "" {
		key = []byte(k)
	}
	ev, err := dec.Decode(key, m.Data())
	if err != nil {
		where := m.Subject()
		if md, merr := m.Metadata(); merr == nil {
			where = md.Stream + "/" + strconv.FormatUint(md.Sequence.Stream, 10)
		}
		s.logger.Warn("malformed message parked as a dead letter", "subject", m.Subject(), "at", where, "err", err)
		if s.cfg.DeadLetter != nil {
			dl, fe := debezium.DeadLetter(s.cfg.Name, "nats", where, key, m.Data(), err)
			if err := s.cfg.DeadLetter(ctx, dl, fe); err != nil {
				return nil, nil, fmt.Errorf("park malformed message %s: %w", where, err)
			}
		}
		return nil, []jetstream.Msg{m}, nil
	}
	if ev.Kind == debezium.Change && s.cfg.TxSubject == "" {
		ev.TxID = ""
	}
	if d, ok := asm.Add(ev, m); ok {
		if s.cfg.OutboxTable != "" {
			return capture.JoinOutbox(d.Records, s.cfg.OutboxTable), d.Refs, nil
		}
		return d.Records, d.Refs, nil
	}
	return nil, nil, nil
}
