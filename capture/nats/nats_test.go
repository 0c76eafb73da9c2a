package nats

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// The server is the real nats-server, embedded in the test process.
func startNATS(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "DBZ", Subjects: []string{"dbserver1.>"}}); err != nil {
		t.Fatal(err)
	}
	return ns, js
}

func openStore(t *testing.T) *logstore.Store {
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

func event(id int, v string, lsn int) []byte {
	return fmt.Appendf(nil, `{"before":null,"after":{"id":%d,"v":%q},"source":{"version":"2.7.3.Final","connector":"postgresql","name":"dbserver1","ts_ms":1767323045123,"snapshot":"false","db":"postgres","schema":"public","table":"items","txId":%d,"lsn":%d,"xmin":null},"transaction":null,"op":"c","ts_ms":1767323045500}`, id, v, 700+id, lsn)
}

func publish(t *testing.T, js jetstream.JetStream, subject string, key string, data []byte) {
	t.Helper()
	m := natsgo.NewMsg(subject)
	m.Data = data
	if key != "" {
		m.Header.Set("debezium-key", key)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

type parked struct {
	mu   sync.Mutex
	recs []*record.Record
}

func (p *parked) park(_ context.Context, r *record.Record, _ *record.FieldError) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs = append(p.recs, r)
	return nil
}

func run(t *testing.T, cfg Config, st *logstore.Store) func() {
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, st) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitSize(t *testing.T, st *logstore.Store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for st.Size() < n {
		if time.Now().After(deadline) {
			t.Fatalf("log holds %d records, want %d", st.Size(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJetStream: Debezium events from a JetStream stream land once each,
// across a restart of the source (acked only after they were durable), a
// re-sent duplicate and a malformed message (parked, acked, passed).
func TestJetStream(t *testing.T) {
	ns, js := startNATS(t)
	st := openStore(t)
	dl := &parked{}
	cfg := Config{Name: "shop", URL: ns.ClientURL(), Stream: "DBZ", DeadLetter: dl.park, MinBackoff: 10 * time.Millisecond}
	for i := 1; i <= 50; i++ {
		publish(t, js, "dbserver1.public.items", fmt.Sprintf(`{"id":%d}`, i), event(i, "v", 1000+i*40))
	}
	stop := run(t, cfg, st)
	waitSize(t, st, 50)
	stop()
	// Re-sent by Debezium, a malformed message, new changes.
	publish(t, js, "dbserver1.public.items", `{"id":7}`, event(7, "v", 1000+7*40))
	publish(t, js, "dbserver1.public.items", "", []byte(`{"op":"c"`))
	for i := 51; i <= 60; i++ {
		publish(t, js, "dbserver1.public.items", fmt.Sprintf(`{"id":%d}`, i), event(i, "v", 1000+i*40))
	}
	stop = run(t, cfg, st)
	waitSize(t, st, 60)
	// Everything acked: the consumer has nothing pending.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := js.Consumer(context.Background(), "DBZ", "stele-shop")
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer still has %d unacked and %d pending", info.NumAckPending, info.NumPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if st.Size() != 60 {
		t.Errorf("log holds %d records, want 60 (the re-sent change stored once)", st.Size())
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if len(dl.recs) != 1 || string(dl.recs[0].Key) != `{"message":"DBZ/52"}` {
		t.Errorf("dead letters %d (%v), want the malformed message DBZ/52", len(dl.recs), dl.recs)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{URL: "nats://x", Stream: "s"}, {Name: "n", Stream: "s"}, {Name: "n", URL: "nats://x"}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
