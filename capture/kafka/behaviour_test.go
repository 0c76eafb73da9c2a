package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/debezium/dbztest"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// openStore is the real log with its index (it recognises stored ids) on a
// temporary directory.
func openStore(t testing.TB) *logstore.Store {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); ix.Close() })
	return st
}

func allRecords(t *testing.T, st *logstore.Store) []*record.Record {
	t.Helper()
	var out []*record.Record
	for seq := range st.Size() {
		r, err := st.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

type parked struct {
	mu   sync.Mutex
	recs []*record.Record
	errs []*record.FieldError
}

func (p *parked) park(_ context.Context, r *record.Record, fe *record.FieldError) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs, p.errs = append(p.recs, r), append(p.errs, fe)
	return nil
}

func runSource(t *testing.T, cfg Config, st *logstore.Store) (stop func()) {
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, st) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitRecords(t *testing.T, st *logstore.Store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(msgTimeout)
	for st.Size() < n {
		if time.Now().After(deadline) {
			for _, r := range allRecords(t, st) {
				t.Logf("  %s %s %s %s", r.Source.Table, r.Op, r.Key, r.After)
			}
			t.Fatalf("the log holds %d records after %v, want %d", st.Size(), msgTimeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBackbone: over three partitions, two group members joining and
// leaving (two rebalances), a multi-table transaction with metadata, a
// snapshot row, a delete with its tombstone, a re-sent duplicate and a
// malformed message: every change is stored exactly once, the malformed
// message is parked naming its topic, partition and offset, and the group
// commits past everything.
func TestBackbone(t *testing.T) {
	b := startBroker(t)
	u := newDebeziumTopics(t, b, "bb", 3)
	if err := b.cluster().CreateTopic("bb.public.orders", 3, nil); err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	dl := &parked{}
	cfg := u.config(false)
	cfg.DeadLetter = dl.park
	ctx := context.Background()

	var sent []msg
	send := func(ms []msg) {
		t.Helper()
		sent = append(sent, ms...)
		u.Mu.Lock()
		defer u.Mu.Unlock()
		if err := u.produce(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot row: no transaction block.
	u.LSN += 8
	snap := dbztest.MustJSON(map[string]any{"before": nil, "after": dbztest.Image(1, "snap"), "op": "r",
		"source": u.SourceBlock("items", u.LSN), "ts_ms": 1})
	send([]msg{{Topic: u.items, Key: dbztest.MustJSON(map[string]any{"id": 1}), Value: snap}})
	a := runSource(t, cfg, st)
	// One transaction over two tables.
	send(u.Transaction("items", []map[string]any{
		{"before": nil, "after": dbztest.Image(2, "two"), "op": "c"},
	}, []any{map[string]any{"id": 2}}))
	multi := u.Transaction("items", []map[string]any{
		{"before": nil, "after": dbztest.Image(3, "three"), "op": "c"},
		{"before": nil, "after": map[string]any{"id": 10, "item": 3}, "op": "c"},
		{"before": dbztest.Image(2, "two"), "after": dbztest.Image(2, "deux"), "op": "u"},
	}, []any{map[string]any{"id": 3}, map[string]any{"id": 10}, map[string]any{"id": 2}})
	// The second event belongs to the orders table: Debezium writes it to
	// that table's topic with that table in its source block.
	var ev map[string]any
	_ = json.Unmarshal(multi[2].Value, &ev)
	ev["source"].(map[string]any)["table"] = "orders"
	multi[2].Topic, multi[2].Value = "bb.public.orders", dbztest.MustJSON(ev)
	send(multi)
	waitRecords(t, st, 5)
	// A second member joins: a rebalance.
	bStop := runSource(t, cfg, st)
	del := u.Transaction("items", []map[string]any{{"before": dbztest.Image(3, "three"), "after": nil, "op": "d"}}, []any{map[string]any{"id": 3}})
	del = append(del[:2:2], msg{Topic: u.items, Key: del[1].Key}, del[2])
	send(del)
	// Debezium re-sends a change after its own crash: the same event
	// again, later in the topic.
	send([]msg{sent[len(sent)-3]})
	// Not a Debezium event.
	send([]msg{{Topic: u.items, Key: []byte(`{"id":99}`), Value: []byte(`{"op":"c","after":{"id":99}`)}})
	send(u.Transaction("items", []map[string]any{{"before": nil, "after": dbztest.Image(4, "four"), "op": "c"}}, []any{map[string]any{"id": 4}}))
	waitRecords(t, st, 7)
	// The first member leaves: another rebalance.
	a()
	send(u.Transaction("items", []map[string]any{{"before": dbztest.Image(4, "four"), "after": dbztest.Image(4, "vier"), "op": "u"}}, []any{map[string]any{"id": 4}}))
	waitRecords(t, st, 8)
	time.Sleep(200 * time.Millisecond) // anything stored twice would show now
	bStop()

	recs := allRecords(t, st)
	want := []string{
		"items snapshot {\"id\":1}", "items insert {\"id\":2}", "items insert {\"id\":3}", "orders insert {\"id\":10}",
		"items update {\"id\":2}", "items delete {\"id\":3}", "items insert {\"id\":4}", "items update {\"id\":4}",
	}
	got := map[string]int{}
	for _, r := range recs {
		got[fmt.Sprintf("%s %s %s", r.Source.Table, r.Op, r.Key)]++
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("%s stored %d times, want once", w, got[w])
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%d records, want %d", len(recs), len(want))
	}
	// The transaction over two tables is stored together, in its order.
	for i, r := range recs {
		if r.Source.Table == "orders" {
			if i == 0 || i+1 >= len(recs) || string(recs[i-1].Key) != `{"id":3}` || string(recs[i+1].Key) != `{"id":2}` || *r.Tx.Index != 1 {
				t.Errorf("the multi-table transaction is not stored together in order around record %d", i)
			}
		}
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if len(dl.recs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl.recs))
	}
	var key struct{ Message string }
	_ = json.Unmarshal(dl.recs[0].Key, &key)
	gotTopic, gotPart, gotOff := "", int32(-1), int64(-1)
	if _, err := fmt.Sscanf(key.Message, "bb.public.items/%d/%d", &gotPart, &gotOff); err == nil {
		gotTopic = "bb.public.items"
	}
	if gotTopic == "" || dl.errs[0].Field != "value" {
		t.Errorf("dead letter %s field %q reason %q: want the topic/partition/offset and the field", key.Message, dl.errs[0].Field, dl.errs[0].Reason)
	}
	// Everything is committed: a new member reads nothing new.
	gi := b.cluster().GroupInfo("stele-bb")
	ends := map[int32]int64{}
	for _, p := range b.cluster().PartitionInfos(u.items) {
		ends[p.Partition] = p.HighWatermark
	}
	for p, end := range ends {
		if c := gi.Commits[u.items][p]; c.Offset != end {
			t.Errorf("partition %d committed at %d, its end is %d", p, c.Offset, end)
		}
	}
}

// gateSink holds every append until the gate opens.
type gateSink struct {
	capture.Sink
	open chan struct{}
}

func (g gateSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Sink.Append(ctx, recs)
}

// TestLag: Stats reports the consumer lag (high watermark minus the
// committed offset, in messages) while records wait for the log, and 0
// with the committed offsets as the position once they are durable; the
// per-partition figures add up to it.
func TestLag(t *testing.T) {
	b := startBroker(t)
	topic := "lag.public.items"
	if err := b.cluster().CreateTopic(topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	prod := b.producer(t)
	produce := func(from, to int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			v := fmt.Sprintf(`{"before":null,"after":{"id":%d},"source":{"connector":"postgresql","db":"d","schema":"public","table":"items","ts_ms":1,"lsn":%d},"op":"c","ts_ms":1}`, i, 1000+i)
			recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, `{"id":%d}`, i), Value: []byte(v)})
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 20)
	st := openStore(t)
	sink := gateSink{Sink: st, open: make(chan struct{})}
	src, err := New(Config{Name: "lag", Brokers: []string{b.addr()}, Topics: []string{topic},
		SASL: SASL{Mechanism: "PLAIN", User: saslUser, Password: saslPass}, MinBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitStats := func(what string, ok func(capture.Stats) bool) capture.Stats {
		t.Helper()
		deadline := time.Now().Add(msgTimeout)
		for {
			s := src.Stats()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v (partitions %v), still not %s", s, src.PartitionLag(), what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStats("lagging 20 messages while the log is held", func(s capture.Stats) bool { return s.LagBytes == 20 })
	close(sink.open)
	s := waitStats("caught up", func(s capture.Stats) bool { return s.LagBytes == 0 && st.Size() == 20 })
	var ends []string
	for _, p := range b.cluster().PartitionInfos(topic) {
		ends = append(ends, fmt.Sprintf("%s/%d:%d", topic, p.Partition, p.HighWatermark))
	}
	if want := strings.Join(ends, " "); s.Position != want {
		t.Errorf("position %q, want %q", s.Position, want)
	}
	produce(20, 26)
	waitStats("caught up again", func(s capture.Stats) bool { return s.LagBytes == 0 && st.Size() == 26 })
	if got := src.PartitionLag(); len(got) != 2 || got[topic+"/0"] != 0 || got[topic+"/1"] != 0 {
		t.Errorf("partition lag %v, want both partitions at 0", got)
	}
}
