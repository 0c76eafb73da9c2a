package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/record"
)

// Defaults for Config fields left zero.
const (
	DefaultStream     = "STELE_LINEAGE"
	DefaultWindow     = 1024
	DefaultAckTimeout = 5 * time.Second
	DefaultRetryWait  = 500 * time.Millisecond
	maxRetryWait      = 30 * time.Second
	cursorEvery       = time.Second
	// DedupeWindow is the stream's duplicate window (JetStream's default
	// is two minutes). JetStream remembers every Nats-Msg-Id for that
	// long, about 120 bytes each: at 100k records/s two minutes is over a
	// gigabyte. Duplicates are ruled out by the expected last sequence
	// each message carries, not by the ids, so the window only has to
	// catch a resend within moments of the original.
	DedupeWindow = time.Second
	// maxAckEvery bounds the messages per ack (see publish).
	maxAckEvery = 256
	// DefaultMaxDelay: see Config.MaxDelay.
	DefaultMaxDelay = 5 * time.Second
	// burstEvery is how often the share of the time the log spends
	// appending is sampled (see burstMeter).
	burstEvery = 50 * time.Millisecond
)

// HeaderSeq carries a message's record seq, so the publisher can resume
// from the stream's last message and consumers can check for gaps.
const HeaderSeq = "Stele-Seq"

// Errors that stop publishing until an operator intervenes (the publisher
// keeps retrying, logging each time, in case the stream is fixed).
var (
	// ErrStreamAhead: the stream holds a seq the log does not have, e.g.
	// the data directory was restored from an older backup.
	ErrStreamAhead = errors.New("stream is ahead of the log")
	// ErrForeignStream: the stream's last message is not the log's record
	// at that seq; the stream belongs to another log.
	ErrForeignStream = errors.New("stream holds records of another log")
	// ErrOutOfOrder: JetStream did not store a message right after the
	// previous one (another writer, or a lost message); the publisher
	// resynchronises from the stream.
	ErrOutOfOrder = errors.New("stream sequence out of step")
)

// Log is what the publisher needs from the store of record: what every
// follower of the log needs (size, change notification, raw reads).
type Log = follow.Log

// Config wires a Publisher. Log and Conn are required.
type Config struct {
	Log  Log
	Conn *nats.Conn
	// Stream is the JetStream stream (default STELE_LINEAGE), created with
	// file storage if missing. It must carry only this log's events.
	Stream string
	// SubjectPrefix starts every subject (default stele.lineage).
	SubjectPrefix string
	// Encoder shapes the events.
	Encoder Encoder
	// Replicas of a stream the publisher creates (default 1; 3 on a
	// cluster makes an ack mean "replicated").
	Replicas int
	// Window bounds messages in flight awaiting their ack (default 1024).
	// Each holds its encoded event in this process and a copy in
	// JetStream's inbound queue until stored: at 4096 they were about a third
	// of the live heap while the stream caught up after a burst.
	Window int
	// AckTimeout bounds the wait for one ack (default 5s).
	AckTimeout time.Duration
	// RetryWait is the first pause after a failure; it doubles up to 30s
	// while failures continue (default 500ms).
	RetryWait time.Duration
	// CursorFile, if set, records the next seq to publish, written after
	// acks (at most once a second). It is consulted only when the stream
	// has no message left to resume from.
	CursorFile string
	Logger     *slog.Logger
	// Metrics, if set, reports the publisher's lag as follower "publish":
	// records not yet acknowledged by JetStream, like every other follower.
	Metrics *follow.Metrics
	// MaxDelay bounds the publisher's flow control. While the log spends
	// at least half its time appending (a burst of ingest; see
	// burstMeter), the publisher holds off, leaving the machine to the
	// appends, until the burst ends or its oldest unpublished record is
	// MaxDelay old (default 5s); then it catches up. Holding costs no memory: the
	// backlog is the log's. A negative MaxDelay never holds.
	MaxDelay time.Duration
}

// Publisher follows the log and publishes every record, in order, once.
type Publisher struct {
	cfg       Config
	js        jetstream.JetStream
	published atomic.Uint64
	holding   atomic.Bool
	heldNanos atomic.Int64
	cursor    uint64 // last value written to CursorFile
}

// New checks cfg and returns a publisher; Run starts it.
func New(cfg Config) (*Publisher, error) {
	if cfg.Log == nil {
		return nil, errors.New("stream: Config.Log is required")
	}
	if cfg.Conn == nil {
		return nil, errors.New("stream: Config.Conn is required")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if strings.ContainsAny(cfg.Stream, ".*> \t\n") {
		return nil, fmt.Errorf("stream: name %q: must not contain '.', '*', '>' or whitespace", cfg.Stream)
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(2*cfg.Window),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	return &Publisher{cfg: cfg, js: js}, nil
}

// Published is the number of leading records of the log that JetStream
// has acknowledged (the next seq to publish).
func (p *Publisher) Published() uint64 { return p.published.Load() }

// Holding reports whether the publisher is holding off for a burst of
// appends (see Config.MaxDelay).
func (p *Publisher) Holding() bool { return p.holding.Load() }

// Held is the total time the publisher has held off for bursts.
func (p *Publisher) Held() time.Duration { return time.Duration(p.heldNanos.Load()) }

// Run publishes until ctx ends, then returns nil. Failures (NATS down, a
// timed-out ack, a message out of step) are logged and retried with
// backoff from the stream's own last message, never from memory, so
// nothing is skipped or published twice.
func (p *Publisher) Run(ctx context.Context) error {
	if p.cfg.Metrics != nil {
		defer p.cfg.Metrics.Observe("publish", p.cfg.Log, p.published.Load)()
	}
	wait := p.cfg.RetryWait
	for {
		before := p.published.Load()
		err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if p.published.Load() > before {
			wait = p.cfg.RetryWait
		}
		p.cfg.Logger.Warn("lineage stream: publishing paused; the backlog is kept in the log and published on recovery",
			"stream", p.cfg.Stream, "published", p.published.Load(), "log_size", p.cfg.Log.Size(), "retry_in", wait, "err", err)
		p.js.CleanupPublisher()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetryWait)
	}
}

func (p *Publisher) runOnce(ctx context.Context) error {
	st, err := p.ensureStream(ctx)
	if err != nil {
		return err
	}
	next, last, err := p.resync(ctx, st)
	if err != nil {
		return err
	}
	p.published.Store(next)
	p.cfg.Logger.Info("lineage stream: publishing", "stream", p.cfg.Stream, "from_seq", next, "log_size", p.cfg.Log.Size())
	return p.publish(ctx, next, last)
}

func (p *Publisher) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	st, err := p.js.Stream(cctx, p.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := jetstream.StreamConfig{
			Name:        p.cfg.Stream,
			Description: "Stele lineage records, one message per record in log order",
			Subjects:    []string{p.cfg.SubjectPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    p.cfg.Replicas,
			Duplicates:  DedupeWindow,
		}
		if cfg.Replicas == 1 {
			// A single replica's store otherwise writes each message to
			// its file before the ack, a system call per record that was
			// a sixth of the stream's CPU. Written in the background
			// instead (within milliseconds), an acked message is lost
			// only if the process dies before then; the log still has
			// the record, and the publisher, resuming after the stream's
			// last message, publishes it again at the same stream
			// sequence. JetStream refuses the mode for replicated
			// streams, and it cannot be changed on an existing one.
			cfg.PersistMode = jetstream.AsyncPersistMode
		}
		st, err = p.js.CreateStream(cctx, cfg)
		if err == nil {
			p.cfg.Logger.Info("lineage stream: created JetStream stream", "stream", p.cfg.Stream, "subjects", p.cfg.SubjectPrefix+".>")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open JetStream stream %s: %w", p.cfg.Stream, err)
	}
	if cfg := st.CachedInfo().Config; cfg.Duplicates > DedupeWindow {
		// A stream created by an earlier version keeps two minutes of
		// ids; narrowing the window changes nothing else.
		was := cfg.Duplicates
		cfg.Duplicates = DedupeWindow
		if _, err := p.js.UpdateStream(cctx, cfg); err != nil {
			return nil, fmt.Errorf("narrow the duplicate window of JetStream stream %s: %w", p.cfg.Stream, err)
		}
		p.cfg.Logger.Info("lineage stream: narrowed the stream's duplicate window", "stream", p.cfg.Stream, "from", was, "to", DedupeWindow)
	}
	return st, nil
}

// resync finds where to continue: after the stream's last message, checked
// against the log; with no message left (all expired), at the cursor file;
// on a new stream, at seq 0, so the stream receives the whole log.
func (p *Publisher) resync(ctx context.Context, st jetstream.Stream) (next, lastStreamSeq uint64, err error) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	info, err := st.Info(cctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", p.cfg.Stream, err)
	}
	state := info.State
	switch {
	case state.Msgs > 0:
		m, err := st.GetLastMsgForSubject(cctx, p.cfg.SubjectPrefix+".>")
		if err != nil {
			return 0, 0, fmt.Errorf("stream %s: read last message: %w", p.cfg.Stream, err)
		}
		seq, err := strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: stream %s message %d has no valid %s header", ErrForeignStream, p.cfg.Stream, m.Sequence, HeaderSeq)
		}
		if size := p.cfg.Log.Size(); seq >= size {
			return 0, 0, fmt.Errorf("%w: stream %s holds seq %d, the log has %d records", ErrStreamAhead, p.cfg.Stream, seq, size)
		}
		raw, err := p.cfg.Log.ReadRaw(seq)
		if err != nil {
			return 0, 0, fmt.Errorf("read record %d: %w", seq, err)
		}
		rec, err := record.Decode(raw)
		if err != nil {
			return 0, 0, fmt.Errorf("decode record %d: %w", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != rec.ID {
			return 0, 0, fmt.Errorf("%w: stream %s message %d has seq %d with a different record id than the log", ErrForeignStream, p.cfg.Stream, m.Sequence, seq)
		}
		return seq + 1, state.LastSeq, nil
	case state.LastSeq > 0:
		next, err := p.readCursor()
		if err != nil {
			return 0, 0, err
		}
		p.cfg.Logger.Warn("lineage stream: the stream holds no message to resume from; resuming at the cursor file",
			"stream", p.cfg.Stream, "from_seq", next)
		return next, state.LastSeq, nil
	}
	return 0, 0, nil
}

type inflight struct {
	seq    uint64
	future jetstream.PubAckFuture
}

// prepared is one record read from the log and encoded as a message.
type prepared struct {
	seq uint64
	msg *nats.Msg
	id  string
	err error
}

// prepareAhead follows the log from seq on and encodes each record as a
// message on its own goroutine, so that decoding the next records overlaps
// with publishing and acks; it closes out when ctx ends or after sending an
// error (a record that cannot be read ends publishing rather than leaving
// a gap).
func (p *Publisher) prepareAhead(ctx context.Context, seq uint64, out chan<- prepared) {
	defer close(out)
	// The follower reports no metrics itself: its position is what was
	// prepared, while the publisher's lag is what JetStream acknowledged
	// (Run observes that instead).
	f := follow.New(p.cfg.Log, follow.Options{Name: "publish"})
	var burst burstMeter
	if c, ok := p.cfg.Log.(appendClock); ok {
		// The first sample starts now, so a burst under way when the
		// publisher starts is seen after burstEvery, not after a batch.
		burst = burstMeter{clock: c, at: time.Now(), busy: c.AppendBusy()}
	}
	err := f.RunRaw(ctx, seq, func(ctx context.Context, b follow.RawBatch) error {
		if err := p.hold(ctx, &burst, b); err != nil {
			return err
		}
		for i, stored := range b.Records {
			msg, rec, err := p.message(stored)
			if err != nil {
				return fmt.Errorf("encode record %d: %w", b.From+uint64(i), err)
			}
			if rec.Seq != b.From+uint64(i) {
				return fmt.Errorf("encode record %d: the stored record names seq %d", b.From+uint64(i), rec.Seq)
			}
			select {
			case out <- prepared{seq: rec.Seq, msg: msg, id: rec.ID}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if err == nil || ctx.Err() != nil {
		return
	}
	select {
	case out <- prepared{err: fmt.Errorf("follow the log: %w", err)}:
	case <-ctx.Done():
	}
}

// appendClock is a log that says how long appends have kept it busy
// (*logstore.Store does); without it the publisher never holds.
type appendClock interface {
	// AppendBusy is the total time during which an append was in
	// progress.
	AppendBusy() time.Duration
}

// burstShare is the share of the time the log must spend appending for
// the publisher to hold off: one producer of batches of 1,000 at full
// speed kept it appending 0.86-0.90 of the time (stele bench), a steady
// flow well within the machine's means leaves it idle most of the time.
const burstShare = 0.5

// burstMeter samples, every burstEvery, the share of the time the log
// spent appending, and says whether the publisher is in a burst.
type burstMeter struct {
	clock   appendClock
	at      time.Time
	busy    time.Duration
	holding bool
}

// update takes a sample when burstEvery has passed since the last one and
// reports whether to hold.
func (m *burstMeter) update(now time.Time) bool {
	if m.clock == nil {
		return false
	}
	d := now.Sub(m.at)
	if d < burstEvery {
		return m.holding
	}
	busy := m.clock.AppendBusy()
	// Once holding, only a share below half the threshold ends the hold:
	// a sample in which the producer was descheduled or the collector ran
	// would otherwise release a batch into the middle of the burst.
	share := burstShare
	if m.holding {
		share /= 2
	}
	m.holding = !m.at.IsZero() && float64(busy-m.busy) >= share*float64(d)
	m.at, m.busy = now, busy
	return m.holding
}

// hold waits before the batch b is published while the log is in a burst
// of appends (see burstMeter), until the burst ends or b's first record is
// MaxDelay old. On two shared cores, publishing during a burst cost the
// appends a quarter to two thirds of their rate (stele bench); publishing
// after it costs the same work at a time the appends do not need the
// machine. Even a publisher that keeps up is held: it keeps up by slowing
// the appends to its own pace. A steady flow that leaves the log idle
// most of the time is never held, so the stream's latency stays that of a
// batch.
func (p *Publisher) hold(ctx context.Context, m *burstMeter, b follow.RawBatch) error {
	if p.cfg.MaxDelay < 0 || len(b.Records) == 0 {
		return nil
	}
	recordedAt, err := record.RecordedAt(b.Records[0])
	if err != nil {
		return nil // encoding the record reports it
	}
	deadline := recordedAt.Add(p.cfg.MaxDelay)
	var start time.Time
	defer func() {
		if !start.IsZero() {
			p.holding.Store(false)
			p.heldNanos.Add(int64(time.Since(start)))
		}
	}()
	for {
		now := time.Now()
		if !m.update(now) || !now.Before(deadline) {
			return nil
		}
		if start.IsZero() {
			start = now
			p.holding.Store(true)
		}
		t := time.NewTimer(min(burstEvery, deadline.Sub(now)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// publish sends records from next on, keeping up to Window sent and not
// yet acknowledged; each message expects the stream's last sequence to be
// the one before it, so none can land out of order.
//
// Only one message in ackEvery (and the last before the publisher waits)
// asks for an ack; the others are plain publishes to the stream's subject.
// An ack for the message of seq s at stream sequence base+s+1 proves that
// every message before it landed, in order: each expected its
// predecessor's sequence, so one refused (and not stored) would have made
// every later one, the acked one too, fail the same check. A failed check
// is the acked message's error, and the publisher resynchronises from the
// stream. Acks are a reply message each, encoded and decoded as JSON;
// asking for one per record cost more CPU than storing the record.
func (p *Publisher) publish(ctx context.Context, next, lastStreamSeq uint64) error {
	pctx, cancel := context.WithCancel(ctx)
	in := make(chan prepared, min(p.cfg.Window, 1024))
	go p.prepareAhead(pctx, next, in)
	defer func() {
		cancel()
		for range in { // wait for prepareAhead to end
		}
	}()
	var (
		queue     []inflight // the messages that asked for an ack, in order
		sent      = next     // the seq after the last message sent
		sinceAck  int
		lastWrite time.Time
		timer     = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	ackEvery := max(1, min(p.cfg.Window/4, maxAckEvery))
	base := lastStreamSeq - next // stream seq of record s is base+s+1 (mod 2^64)
	for {
	fill:
		for sent-p.published.Load() < uint64(p.cfg.Window) {
			var (
				pr prepared
				ok bool
			)
			if len(queue) == 0 {
				p.saveCursor(&lastWrite, true)
				select {
				case pr, ok = <-in:
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case pr, ok = <-in:
				default:
					break fill
				}
			}
			if !ok {
				// prepareAhead ends only when ctx does (or after an error,
				// which it sends first).
				return fmt.Errorf("publisher stopping: %w", context.Cause(ctx))
			}
			if pr.err != nil {
				return pr.err
			}
			sinceAck++
			// The last message before the publisher waits (for input or
			// for the window) always asks for an ack.
			if sinceAck >= ackEvery || len(in) == 0 || sent+1-p.published.Load() >= uint64(p.cfg.Window) {
				f, err := p.js.PublishMsgAsync(pr.msg, jetstream.WithMsgID(pr.id), jetstream.WithExpectLastSequence(base+pr.seq))
				if err != nil {
					return fmt.Errorf("publish record %d: %w", pr.seq, err)
				}
				queue = append(queue, inflight{seq: pr.seq, future: f})
				sinceAck = 0
			} else {
				pr.msg.Header[jetstream.MsgIDHeader] = []string{pr.id}
				pr.msg.Header[jetstream.ExpectedLastSeqHeader] = []string{strconv.FormatUint(base+pr.seq, 10)}
				if err := p.cfg.Conn.PublishMsg(pr.msg); err != nil {
					return fmt.Errorf("publish record %d: %w", pr.seq, err)
				}
			}
			sent = pr.seq + 1
		}
		head := queue[0]
		timer.Reset(2 * p.cfg.AckTimeout) // a guard: the client times acks out itself
		select {
		case ack := <-head.future.Ok():
			if want := base + head.seq + 1; ack.Sequence != want || ack.Duplicate {
				return fmt.Errorf("%w: record %d stored at stream sequence %d (duplicate %t), expected %d",
					ErrOutOfOrder, head.seq, ack.Sequence, ack.Duplicate, want)
			}
		case err := <-head.future.Err():
			return fmt.Errorf("publish record %d: %w", head.seq, err)
		case <-timer.C:
			return fmt.Errorf("publish record %d: no ack within %s", head.seq, 2*p.cfg.AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		queue[0] = inflight{}
		queue = queue[1:]
		p.published.Store(head.seq + 1)
		p.saveCursor(&lastWrite, false)
	}
}

// message builds the message of a stored record. Its data is allocated
// once, at about its final size, and handed to the client, which keeps it
// until the ack.
func (p *Publisher) message(stored []byte) (*nats.Msg, *record.Record, error) {
	data, rec, err := p.cfg.Encoder.AppendStored(make([]byte, 0, len(stored)+512), stored)
	if err != nil {
		return nil, nil, err
	}
	return &nats.Msg{
		Subject: Subject(p.cfg.SubjectPrefix, rec),
		Data:    data,
		Header:  nats.Header{HeaderSeq: []string{strconv.FormatUint(rec.Seq, 10)}, "Content-Type": []string{ContentType}},
	}, rec, nil
}

// saveCursor writes the cursor file when idle or at most once a second.
// A failure is logged, not fatal: the stream itself is the primary record
// of progress.
func (p *Publisher) saveCursor(lastWrite *time.Time, idle bool) {
	n := p.published.Load()
	if p.cfg.CursorFile == "" || n == p.cursor || (!idle && time.Since(*lastWrite) < cursorEvery) {
		return
	}
	*lastWrite = time.Now()
	if err := writeCursor(p.cfg.CursorFile, n); err != nil {
		p.cfg.Logger.Warn("lineage stream: write cursor file", "file", p.cfg.CursorFile, "err", err)
		return
	}
	p.cursor = n
}

func (p *Publisher) readCursor() (uint64, error) {
	if p.cfg.CursorFile == "" {
		return 0, nil
	}
	b, err := os.ReadFile(p.cfg.CursorFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor file: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cursor file %s: %q is not a seq", p.cfg.CursorFile, strings.TrimSpace(string(b)))
	}
	return n, nil
}

func writeCursor(path string, n uint64) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(n, 10)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
