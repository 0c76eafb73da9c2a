// Package nats is the source that consumes Debezium change events from
// NATS JetStream (source kind "nats"), the payloads Debezium Server's NATS
// JetStream sink publishes: one subject per table, the message data the
// same JSON (with or without schemas) a Kafka topic would hold.
//
// It reads through a durable pull consumer with explicit acks; a message is
// acked only in the acknowledger's OnDurable, after the records before it
// are durable in the log, so a crash re-delivers what was not yet durable
// and the records' ids (from the database position) store it once. With
// TxSubject (the metadata events' subject) a transaction is appended whole,
// as in the kafka source: its messages stay unacked until it is. A message
// that is no Debezium event is parked in the dead letters (naming stream
// and sequence) and acked.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	BatchSize              int
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
	cons, err := js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable: s.cfg.Durable, FilterSubjects: s.cfg.Subjects,
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: -1, AckWait: 5 * time.Minute,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, capture.PermanentError(fmt.Errorf("%w: stream: %q does not exist on %s", ErrConfig, s.cfg.Stream, s.cfg.URL))
	}
	if err != nil {
		return false, fmt.Errorf("create the durable consumer %s: %w", s.cfg.Durable, err)
	}
	ack := capture.NewAcknowledger(ctx, capture.AckOptions[[]jetstream.Msg]{
		Sink: sink, Progress: &s.progress,
		OnDurable: func(ctx context.Context, msgs []jetstream.Msg) error {
			for _, m := range msgs {
				if err := m.Ack(); err != nil {
					// Durable already: a lost ack re-delivers, and the
					// id stores it once.
					s.logger.Warn("ack failed; the message will be delivered again and recognised", "err", err)
				}
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
	progressed := false
	for ctx.Err() == nil {
		batch, err := cons.Fetch(s.cfg.BatchSize, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return progressed, fmt.Errorf("fetch: %w", err)
		}
		var recs []*record.Record
		var done []jetstream.Msg
		for m := range batch.Messages() {
			out, refs, err := s.message(ctx, &dec, &asm, m)
			if err != nil {
				return progressed, err
			}
			recs, done = append(recs, out...), append(done, refs...)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, natsgo.ErrTimeout) {
			return progressed, fmt.Errorf("fetch: %w", err)
		}
		if len(done) == 0 {
			continue
		}
		progressed = true
		if err := ack.Submit(ctx, recs, done); err != nil {
			return progressed, err
		}
	}
	return progressed, nil
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
