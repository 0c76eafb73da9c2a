package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/capture/debezium/dbztest"
	"github.com/stele/stele/record"
)

// The broker of these tests is kfake (github.com/twmb/franz-go/pkg/kfake),
// an in-process broker that speaks the real Kafka protocol: no Kafka
// broker runs here. It is a test double of the broker only; the client
// (franz-go), the source, the decoder and the store are the real ones.

const (
	saslUser   = "stele"
	saslPass   = "kafka-secret-pw"
	badSASL    = "wrong-kafka-pw"
	msgTimeout = 30 * time.Second
)

// broker is a kfake cluster that can be restarted on the same port with
// its data (DataDir), as a restarted Kafka would be.
type broker struct {
	mu   sync.Mutex
	c    *kfake.Cluster
	dir  string
	port int
}

func startBroker(t testing.TB) *broker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b := &broker{dir: t.TempDir(), port: port}
	b.start(t)
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.c.Close()
	})
	return b
}

func (b *broker) start(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.startLocked(t)
}

// startLocked starts the cluster; b.mu is held, so that nobody asks a
// closed cluster (kfake's admin calls on one block for ever).
func (b *broker) startLocked(t testing.TB) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(b.port), kfake.DataDir(b.dir),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", saslUser, saslPass),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b.c = c
}

func (b *broker) cluster() *kfake.Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c
}

func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func (b *broker) restart(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.c.Close()
	b.startLocked(t)
}

func (b *broker) producer(t testing.TB) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr()),
		kgo.SASL(plain.Auth{User: saslUser, Pass: saslPass}.AsMechanism()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestConformance(t *testing.T) {
	capturetest.Run(t, &kafkaHarness{})
}

type kafkaHarness struct {
	b *broker
	n atomic.Int64
}

func (h *kafkaHarness) Kind() string { return "postgres" }

func (h *kafkaHarness) Unsupported() map[capturetest.Capability]string {
	return map[capturetest.Capability]string{
		capturetest.Actor: "Debezium change events carry no actor",
		capturetest.DDL:   "Debezium's schema-change topic is not read (PostgreSQL's connector has none)",
		// TestAuthErrors checks the classification of Kafka's answer.
		capturetest.BadCredentials: "kfake closes the connection on a wrong password instead of answering SASL_AUTHENTICATION_FAILED as a Kafka broker does, so a refusal cannot be told from a network failure here",
	}
}

func (h *kafkaHarness) Start(t *testing.T) { h.b = startBroker(t) }

func (h *kafkaHarness) Open(t *testing.T) capturetest.Upstream {
	name := fmt.Sprintf("conform%d", h.n.Add(1))
	u := newDebeziumTopics(t, h.b, name, 1)
	return u
}

// debeziumTopics plays a Debezium PostgreSQL connector with transaction
// metadata on: each Apply is one database transaction, sent as a BEGIN,
// its change events (the shape the connector writes with the JSON
// converter, schemas off, REPLICA IDENTITY FULL) and an END.
type debeziumTopics struct {
	b     *broker
	t     *testing.T
	name  string
	items string // the items table's topic
	typed string
	txTop string
	prod  *kgo.Client

	dbztest.Upstream                  // its Mu also guards offset
	offset           map[string]int64 // record id → its message's offset in items
	dec              debezium.Decoder
}

func newDebeziumTopics(t *testing.T, b *broker, name string, partitions int32) *debeziumTopics {
	u := &debeziumTopics{b: b, t: t, name: name, items: name + ".public.items", typed: name + ".public.typed",
		txTop: name + ".transaction", offset: map[string]int64{}}
	u.Connector, u.Send = dbztest.New(name), u.produce
	u.dec.SourceName = name
	for _, topic := range []string{u.items, u.typed, u.txTop} {
		if err := b.cluster().CreateTopic(topic, partitions, nil); err != nil {
			t.Fatal(err)
		}
	}
	u.prod = b.producer(t)
	return u
}

func (u *debeziumTopics) Name() string  { return u.name }
func (u *debeziumTopics) Table() string { return "items" }

func (u *debeziumTopics) config(bad bool) Config {
	pw := saslPass
	name := u.name
	if bad {
		pw, name = badSASL, u.name+"_bad"
	}
	return Config{
		Name: name, Brokers: []string{u.b.addr()},
		Topics: []string{"^" + regexp.QuoteMeta(u.name) + `\.public\..*`}, TopicRegex: true,
		TransactionTopic: u.txTop,
		SASL:             SASL{Mechanism: "PLAIN", User: saslUser, Password: pw},
		BatchSize:        16,
		MinBackoff:       20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		SessionTimeout: 3 * time.Second,
	}
}

func (u *debeziumTopics) Source(t *testing.T, bad bool) capture.Source {
	cfg := u.config(bad)
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Ready: the topics keep every message, and a new group starts at their
// beginning, so a source captures everything sent before or after it
// started.
func (u *debeziumTopics) Ready(*testing.T) {}

// msg is one message of the connector.
type msg = dbztest.Msg

func (u *debeziumTopics) produce(ctx context.Context, msgs []msg) error {
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = &kgo.Record{Topic: m.Topic, Key: m.Key, Value: m.Value}
	}
	res := u.prod.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return err
	}
	for _, r := range res {
		if r.Record.Topic != u.items {
			continue
		}
		ev, err := u.dec.Decode(r.Record.Key, r.Record.Value)
		if err == nil && ev.Kind == debezium.Change {
			u.offset[ev.Record.ID] = r.Record.Offset
		}
	}
	return nil
}

// Acknowledged: the group's committed offset of the items topic; a record
// is covered when its message is before it.
func (u *debeziumTopics) Acknowledged(context.Context) (func(*record.Record) bool, error) {
	u.b.mu.Lock()
	gi := u.b.c.GroupInfo("stele-" + u.name)
	u.b.mu.Unlock()
	committed := int64(-1)
	if gi != nil {
		if c, ok := gi.Commits[u.items][0]; ok {
			committed = c.Offset
		}
	}
	u.Mu.Lock()
	offsets := make(map[string]int64, len(u.offset))
	for k, v := range u.offset {
		offsets[k] = v
	}
	u.Mu.Unlock()
	return func(r *record.Record) bool {
		o, ok := offsets[r.ID]
		return ok && o < committed
	}, nil
}

func (u *debeziumTopics) Restart(t *testing.T) { u.b.restart(t) }

func (u *debeziumTopics) CheckCredentialError(t *testing.T, err error) {
	if !errors.Is(err, ErrAuth) {
		t.Errorf("bad password: err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "check the SASL user, password and mechanism") {
		t.Errorf("bad password: error %q does not say what to check", err)
	}
	if strings.Contains(err.Error(), badSASL) {
		t.Errorf("the error reveals the password: %v", err)
	}
}
