package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func openLog(t testing.TB, dir string) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log"})
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	return s
}

func testRecord(i int) *record.Record {
	ops := []record.Op{record.OpInsert, record.OpUpdate, record.OpDelete}
	return &record.Record{
		ID:         fmt.Sprintf("id-%d", i),
		Source:     record.Source{Name: "crm", Kind: "http", Table: []string{"customers", "public.orders"}[i%2]},
		Op:         ops[i%3],
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, i%10)),
		After:      json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"n%d"}`, i%10, i)),
		OccurredAt: time.Unix(1700000000+int64(i), 0).UTC(),
	}
}

// appendRange appends records from..to-1 in batches and checks they get
// the next seqs of the log.
func appendRange(t testing.TB, s *logstore.Store, from, to, batch int) {
	t.Helper()
	base := s.Size()
	for i := from; i < to; i += batch {
		recs := make([]*record.Record, 0, batch)
		for j := i; j < min(i+batch, to); j++ {
			recs = append(recs, testRecord(j))
		}
		res, err := s.Append(context.Background(), recs)
		if err != nil {
			t.Fatalf("append %d..: %v", i, err)
		}
		for k, r := range res {
			if r.Duplicate || r.Seq != base+uint64(i-from+k) {
				t.Fatalf("append: record %d got %+v", i+k, r)
			}
		}
	}
}

// running is a publisher on its own goroutine.
type running struct {
	p      *publish.Publisher
	cancel context.CancelFunc
	done   chan error
}

func startPublisher(t testing.TB, cfg publish.Config) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := publish.New(cfg)
	if err != nil {
		t.Fatalf("publish.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	return r
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func waitPublished(t testing.TB, p *publish.Publisher, n uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.Published() < n {
		if time.Now().After(deadline) {
			t.Fatalf("published %d of %d records after %s", p.Published(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// consumer is a durable JetStream pull consumer, as an application would
// run one; it checks every message against the log as it arrives.
type consumer struct {
	t    testing.TB
	cons jetstream.Consumer
	next uint64 // seq expected next
}

func newConsumer(t testing.TB, nc *nats.Conn) *consumer {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, publish.DefaultStream, jetstream.ConsumerConfig{
		Durable: "auditor", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	return &consumer{t: t, cons: cons}
}

// drain consumes until it has seen every record below n, checking each is
// the next seq of the log, exactly once, then that nothing more is there.
func (c *consumer) drain(s *logstore.Store, n uint64, format publish.Format, exact bool) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.next < n {
		if time.Now().After(deadline) {
			t.Fatalf("consumer saw %d of %d records", c.next, n)
		}
		// No-wait pulls: a pull that expires while its messages are on the
		// way loses them to this client until AckWait redelivers them, out
		// of order, which reads as a gap in the stream.
		batch, err := c.cons.FetchNoWait(500)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			c.check(s, msg, format)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := msg.DoubleAck(ctx)
			cancel()
			if err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("fetch: %v", err)
		}
		if got == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !exact {
		return
	}
	batch, err := c.cons.FetchNoWait(10)
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		t.Fatalf("message beyond the log's %d records: Stele-Seq %s", n, msg.Headers().Get(publish.HeaderSeq))
	}
}

func (c *consumer) check(s *logstore.Store, msg jetstream.Msg, format publish.Format) {
	t := c.t
	t.Helper()
	seq, err := strconv.ParseUint(msg.Headers().Get(publish.HeaderSeq), 10, 64)
	if err != nil || seq != c.next {
		t.Fatalf("message with Stele-Seq %q, want %d (a gap or a duplicate)", msg.Headers().Get(publish.HeaderSeq), c.next)
	}
	rec, err := s.Read(seq)
	if err != nil {
		t.Fatal(err)
	}
	if want := publish.Subject(publish.DefaultSubjectPrefix, rec); msg.Subject() != want {
		t.Fatalf("seq %d on subject %q, want %q", seq, msg.Subject(), want)
	}
	var ev struct {
		ID      string          `json:"id"`
		Type    string          `json:"type"`
		StelSeq string          `json:"stelseq"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatalf("seq %d: not JSON: %v", seq, err)
	}
	if ev.ID != rec.ID || ev.StelSeq != strconv.FormatUint(seq, 10) || ev.Type != publish.TypePrefix+string(rec.Op) {
		t.Fatalf("seq %d: event id %q stelseq %q type %q; want %q %d %s", seq, ev.ID, ev.StelSeq, ev.Type, rec.ID, seq, rec.Op)
	}
	if format == publish.FormatRecord && string(ev.Data) != string(record.AppendJSON(nil, rec)) {
		t.Fatalf("seq %d: data %s is not the record", seq, ev.Data)
	}
	if got := msg.Headers().Get(jetstream.MsgIDHeader); got != rec.ID {
		t.Fatalf("seq %d: Nats-Msg-Id %q, want %q", seq, got, rec.ID)
	}
	c.next++
}

// A durable consumer sees every record exactly once and in log order across
// a Stele restart: the publisher is stopped mid-backlog with messages in
// flight, the embedded server and the log are closed, more records are
// appended while nothing publishes, and everything is started again.
func TestEmbeddedExactlyOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	logDir, natsDir := filepath.Join(dir, "log"), filepath.Join(dir, "nats")
	cursor := filepath.Join(dir, "stream.cursor")

	store := openLog(t, logDir)
	appendRange(t, store, 0, 3000, 250)
	emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: natsDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	pub := startPublisher(t, publish.Config{Log: store, Conn: nc, Window: 64, CursorFile: cursor})
	// Stop as soon as part of the backlog is acknowledged: later messages
	// are still in flight.
	waitPublished(t, pub.p, 1, 10*time.Second)
	pub.stop(t)
	stoppedAt := pub.p.Published()
	if stoppedAt >= 3000 {
		t.Logf("publisher finished the backlog before it was stopped; the restart still checks resumption")
	}
	cons := newConsumer(t, nc)
	cons.drain(store, stoppedAt, publish.FormatRecord, false) // at least what was acknowledged
	consumed := cons.next
	nc.Close()
	emb.Shutdown()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// Stele is down; on restart more records arrive, some before the
	// publisher starts and some while it catches up.
	store = openLog(t, logDir)
	defer store.Close()
	appendRange(t, store, 3000, 4000, 100)
	emb, err = publish.StartEmbedded(publish.EmbeddedConfig{Dir: natsDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err = emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	follows := follow.NewMetrics(nil)
	pub = startPublisher(t, publish.Config{Log: store, Conn: nc, Window: 64, CursorFile: cursor, Metrics: follows})
	defer pub.stop(t)
	appendRange(t, store, 4000, 5000, 10)
	waitPublished(t, pub.p, 5000, 30*time.Second)
	// The publisher's lag is what JetStream has acknowledged, in the same
	// shape as every other follower's.
	if lag, ok := follows.Lag("publish"); !ok || lag.Running != 1 || lag.BehindRecords != 0 || lag.Processed == 0 {
		t.Errorf("follower metrics for publish = %+v (reported %t), want running 1, 0 behind, some processed", lag, ok)
	}

	cons = newConsumer(t, nc) // the same durable: continues after its last ack
	cons.next = consumed
	cons.drain(store, 5000, publish.FormatRecord, true)

	b, err := os.ReadFile(cursor)
	if err != nil || string(b) != "5000\n" {
		t.Errorf("cursor file = %q, %v; want 5000", b, err)
	}
}
