package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/capture/debezium/dbztest"
	"github.com/stele/stele/record"
)

// The server of the conformance suite is the real nats-server with
// JetStream, embedded in the test process, with a user and password; it
// restarts on the same port and store directory, as a restarted server
// would. The payloads are those Debezium Server's JetStream sink publishes
// (dbztest's connector: one subject per table, the key in a header).

const (
	natsUser = "stele"
	natsPass = "nats-secret-pw"
	badPass  = "wrong-nats-pw"
)

func TestConformance(t *testing.T) {
	capturetest.Run(t, &natsHarness{})
}

type natsHarness struct {
	mu   sync.Mutex
	ns   *server.Server
	opts server.Options
	n    atomic.Int64
}

func (h *natsHarness) Kind() string { return "postgres" }

func (h *natsHarness) Unsupported() map[capturetest.Capability]string {
	return map[capturetest.Capability]string{
		capturetest.Actor: "Debezium change events carry no actor",
		capturetest.DDL:   "Debezium's schema-change events are not read (PostgreSQL's connector has none)",
	}
}

func (h *natsHarness) Start(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	h.opts = server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: natsUser, Password: natsPass}}}
	h.start(t)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.ns.Shutdown()
	})
}

func (h *natsHarness) start(t *testing.T) {
	opts := h.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	h.ns = ns
}

func (h *natsHarness) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", h.opts.Port) }

func (h *natsHarness) Open(t *testing.T) capturetest.Upstream {
	name := fmt.Sprintf("conform%d", h.n.Add(1))
	nc, err := natsgo.Connect(h.url(), natsgo.UserInfo(natsUser, natsPass), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	u := &subjects{h: h, js: js, stream: strings.ToUpper(name), seq: map[string]uint64{}}
	u.Connector, u.Send = dbztest.New(name), u.publish
	u.dec.SourceName = name
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: u.stream, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatal(err)
	}
	return u
}

// subjects is one case's stream: the connector's messages published to
// the subjects named like its topics.
type subjects struct {
	h      *natsHarness
	js     jetstream.JetStream
	stream string

	dbztest.Upstream                   // its Mu also guards seq
	seq              map[string]uint64 // record id → its message's stream sequence
	dec              debezium.Decoder
}

func (u *subjects) Name() string  { return u.Connector.Name }
func (u *subjects) Table() string { return "items" }

func (u *subjects) Source(t *testing.T, bad bool) capture.Source {
	name, pw := u.Connector.Name, natsPass
	if bad {
		name, pw = name+"_bad", badPass
	}
	src, err := New(Config{Name: name, URL: u.h.url(), Stream: u.stream, TxSubject: u.TxTopic(),
		User: natsUser, Password: pw, BatchSize: 16, AckWait: 2 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
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

// Ready: the durable consumer delivers the whole stream, so a source
// captures everything published before or after it started.
func (u *subjects) Ready(*testing.T) {}

// publish sends msgs in order, each acknowledged by the stream (a
// restarting server is waited for), and notes the stream sequence of
// each change.
func (u *subjects) publish(ctx context.Context, msgs []dbztest.Msg) error {
	for _, m := range msgs {
		nm := natsgo.NewMsg(m.Topic)
		nm.Data = m.Value
		if len(m.Key) > 0 {
			nm.Header.Set("debezium-key", string(m.Key))
		}
		var ack *jetstream.PubAck
		var err error
		for deadline := time.Now().Add(20 * time.Second); ; {
			if ack, err = u.js.PublishMsg(ctx, nm); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("publish to %s: %w", m.Topic, err)
		}
		if ev, err := u.dec.Decode(m.Key, m.Value); err == nil && ev.Kind == debezium.Change {
			u.seq[ev.Record.ID] = ack.Sequence
		}
	}
	return nil
}

// Acknowledged: the durable consumer's ack floor; a record is covered when
// its message is at or below it (every message up to the floor is acked,
// so the stream never delivers it again).
func (u *subjects) Acknowledged(ctx context.Context) (func(*record.Record) bool, error) {
	floor := uint64(0)
	c, err := u.js.Consumer(ctx, u.stream, "stele-"+u.Connector.Name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return nil, err
	default:
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		floor = info.AckFloor.Stream
	}
	u.Mu.Lock()
	seq := make(map[string]uint64, len(u.seq))
	for k, v := range u.seq {
		seq[k] = v
	}
	u.Mu.Unlock()
	return func(r *record.Record) bool {
		s, ok := seq[r.ID]
		return ok && s <= floor
	}, nil
}

func (u *subjects) Restart(t *testing.T) {
	u.h.mu.Lock()
	defer u.h.mu.Unlock()
	u.h.ns.Shutdown()
	u.h.ns.WaitForShutdown()
	u.h.start(t)
}

func (u *subjects) CheckCredentialError(t *testing.T, err error) {
	if !errors.Is(err, ErrAuth) {
		t.Errorf("bad password: err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "check the user and password") {
		t.Errorf("bad password: error %q does not say what to check", err)
	}
	if strings.Contains(err.Error(), badPass) {
		t.Errorf("the error reveals the password: %v", err)
	}
}
