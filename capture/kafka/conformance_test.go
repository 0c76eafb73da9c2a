package kafka

import (
	"context"
	"encoding/json"
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

	mu     sync.Mutex
	rows   map[int64]string
	lsn    int64
	txid   int64
	offset map[string]int64 // record id → its message's offset in items
	dec    debezium.Decoder
}

func newDebeziumTopics(t *testing.T, b *broker, name string, partitions int32) *debeziumTopics {
	u := &debeziumTopics{b: b, t: t, name: name, items: name + ".public.items", typed: name + ".public.typed",
		txTop: name + ".transaction", rows: map[int64]string{}, lsn: 0x1000000, txid: 700, offset: map[string]int64{}}
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

func image(id int64, v string) map[string]any { return map[string]any{"id": id, "v": v} }

func (u *debeziumTopics) source(table string, txid, lsn int64) map[string]any {
	return map[string]any{"version": "2.7.3.Final", "connector": "postgresql", "name": u.name,
		"ts_ms": time.Now().UnixMilli(), "snapshot": "false", "db": "postgres",
		"sequence": fmt.Sprintf(`["%d","%d"]`, lsn-1, lsn), "schema": "public", "table": table,
		"txId": txid, "lsn": lsn, "xmin": nil}
}

type msg struct {
	topic      string
	key, value []byte
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// transaction frames events (each a payload without source and
// transaction) as one Debezium transaction of the items table.
func (u *debeziumTopics) transaction(table string, events []map[string]any, keys []any, values ...[]byte) []msg {
	u.txid++
	u.lsn += 0x100
	txID := fmt.Sprintf("%d:%d", u.txid, u.lsn)
	topic := u.name + ".public." + table
	out := []msg{{topic: u.txTop, key: mustJSON(map[string]any{"id": txID}),
		value: mustJSON(map[string]any{"status": "BEGIN", "id": txID, "event_count": nil, "data_collections": nil, "ts_ms": time.Now().UnixMilli()})}}
	for i, ev := range events {
		u.lsn += 0x28
		ev["source"] = u.source(table, u.txid, u.lsn)
		ev["transaction"] = map[string]any{"id": txID, "total_order": i + 1, "data_collection_order": i + 1}
		ev["ts_ms"] = time.Now().UnixMilli()
		value := mustJSON(ev)
		if i < len(values) && values[i] != nil {
			value = values[i]
		}
		out = append(out, msg{topic: topic, key: mustJSON(keys[i]), value: value})
	}
	out = append(out, msg{topic: u.txTop, key: mustJSON(map[string]any{"id": txID}),
		value: mustJSON(map[string]any{"status": "END", "id": txID, "event_count": len(events),
			"data_collections": []any{map[string]any{"data_collection": "public." + table, "event_count": len(events)}},
			"ts_ms":            time.Now().UnixMilli()})})
	return out
}

func (u *debeziumTopics) produce(ctx context.Context, msgs []msg) error {
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = &kgo.Record{Topic: m.topic, Key: m.key, Value: m.value}
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

func (u *debeziumTopics) Apply(ctx context.Context, tx capturetest.Tx) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var events []map[string]any
	var keys []any
	for _, ch := range tx.Changes {
		key := map[string]any{"id": ch.ID}
		switch ch.Op {
		case record.OpInsert:
			events = append(events, map[string]any{"before": nil, "after": image(ch.ID, ch.V), "op": "c"})
			u.rows[ch.ID] = ch.V
		case record.OpUpdate:
			events = append(events, map[string]any{"before": image(ch.ID, u.rows[ch.ID]), "after": image(ch.ID, ch.V), "op": "u"})
			u.rows[ch.ID] = ch.V
		case record.OpDelete:
			events = append(events, map[string]any{"before": image(ch.ID, u.rows[ch.ID]), "after": nil, "op": "d"})
			delete(u.rows, ch.ID)
		default:
			return fmt.Errorf("op %s", ch.Op)
		}
		keys = append(keys, key)
	}
	msgs := u.transaction("items", events, keys)
	// A delete is followed by its tombstone, as Debezium writes it for
	// log compaction.
	var withTombstones []msg
	for _, m := range msgs {
		withTombstones = append(withTombstones, m)
		if m.topic == u.items && strings.Contains(string(m.value), `"op":"d"`) {
			withTombstones = append(withTombstones, msg{topic: u.items, key: m.key})
		}
	}
	return u.produce(ctx, withTombstones)
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
	u.mu.Lock()
	offsets := make(map[string]int64, len(u.offset))
	for k, v := range u.offset {
		offsets[k] = v
	}
	u.mu.Unlock()
	return func(r *record.Record) bool {
		o, ok := offsets[r.ID]
		return ok && o < committed
	}, nil
}

func (u *debeziumTopics) Restart(t *testing.T) { u.b.restart(t) }

func (u *debeziumTopics) Truncate(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	clear(u.rows)
	return u.produce(ctx, u.transaction("items", []map[string]any{{"before": nil, "after": nil, "op": "t"}}, []any{nil}))
}

func (u *debeziumTopics) DDL(context.Context) error { return errors.New("unsupported") }

// typedEvent is a Debezium PostgreSQL insert with schemas on, one column of
// each logical type the decoder converts.
const typedEvent = `{"schema":{"type":"struct","fields":[{"type":"struct","field":"after","optional":true,"name":"x.public.typed.Value","fields":[
{"type":"int32","field":"id"},
{"type":"int32","field":"d","name":"io.debezium.time.Date"},
{"type":"int64","field":"t","name":"io.debezium.time.MicroTime"},
{"type":"int64","field":"ts","name":"io.debezium.time.MicroTimestamp"},
{"type":"string","field":"tz","name":"io.debezium.time.ZonedTimestamp"},
{"type":"bytes","field":"n","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
{"type":"struct","field":"vn","name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]},
{"type":"string","field":"j","name":"io.debezium.data.Json"},
{"type":"bytes","field":"by"},
{"type":"string","field":"nul"}]}]},
"payload":{"before":null,"after":{"id":1,"d":20455,"t":11045123456,"ts":1767323045123456,"tz":"2026-01-02T03:04:05.123456+02:00","n":"/4c=","vn":{"scale":3,"value":"AeJA"},"j":"{\"b\": 2, \"a\": [1, \"x\"]}","by":"3q2+7w==","nul":null},
"source":SOURCE,"transaction":TX,"op":"c","ts_ms":1}}`

func (u *debeziumTopics) WriteTyped(ctx context.Context) (capturetest.TypedRow, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	msgs := u.transaction("typed", []map[string]any{{}}, []any{map[string]any{"id": 1}})
	// Replace the event with the schema'd one, keeping its source and
	// transaction blocks.
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(msgs[1].value, &ev); err != nil {
		return capturetest.TypedRow{}, err
	}
	v := strings.Replace(strings.Replace(typedEvent, "SOURCE", string(ev["source"]), 1), "TX", string(ev["transaction"]), 1)
	msgs[1].value = []byte(v)
	return capturetest.TypedRow{Table: "typed", Key: `{"id":1}`, Want: map[string]string{
		"id": "1", "d": `"2026-01-02"`, "t": `"03:04:05.123456"`, "ts": `"2026-01-02T03:04:05.123456Z"`,
		"tz": `"2026-01-02T01:04:05.123456Z"`, "n": "-1.21", "vn": "123.456", "j": `{"a":[1,"x"],"b":2}`,
		"by": `"3q2+7w=="`, "nul": "null",
	}}, u.produce(ctx, msgs)
}

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
