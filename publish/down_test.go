package publish_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/publish"
)

// startNATS runs a standalone NATS server with JetStream on a TCP port, as
// an external cluster would be; port 0 picks a free one.
func startNATS(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	return ns
}

// With NATS down, appends go on at full speed and the backlog is published
// in order, exactly once, when NATS is back.
func TestNATSDownAppendsUnaffectedBacklogCaughtUp(t *testing.T) {
	dir := t.TempDir()
	natsDir := filepath.Join(dir, "nats")
	ns := startNATS(t, natsDir, 0)
	url := ns.ClientURL()
	port := ns.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	store := openLog(t, filepath.Join(dir, "log"))
	defer store.Close()
	pub := startPublisher(t, publish.Config{Log: store, Conn: nc, AckTimeout: 300 * time.Millisecond, RetryWait: 20 * time.Millisecond})
	defer pub.stop(t)
	appendRange(t, store, 0, 100, 10)
	waitPublished(t, pub.p, 100, 10*time.Second)

	ns.Shutdown()
	ns.WaitForShutdown()
	appendRange(t, store, 100, 3100, 100) // fails the test if any append fails
	if got := pub.p.Published(); got != 100 {
		t.Fatalf("published %d records while NATS was down, want 100", got)
	}
	if store.Size() != 3100 {
		t.Fatalf("log size %d, want 3100", store.Size())
	}

	ns = startNATS(t, natsDir, port)
	defer ns.Shutdown()
	waitPublished(t, pub.p, 3100, 30*time.Second)
	newConsumer(t, nc).drain(store, 3100, publish.FormatRecord, true)
}

// syncBuffer is a log sink safe for the publisher's goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A stream that holds another log's records is never appended to: the
// publisher checks the stream's last message against its own log.
func TestForeignStreamRefused(t *testing.T) {
	dir := t.TempDir()
	nc := embeddedConn(t, filepath.Join(dir, "nats"))

	a := openLog(t, filepath.Join(dir, "a"))
	defer a.Close()
	appendRange(t, a, 0, 10, 10)
	pa := startPublisher(t, publish.Config{Log: a, Conn: nc})
	waitPublished(t, pa.p, 10, 10*time.Second)
	pa.stop(t)

	b := openLog(t, filepath.Join(dir, "b"))
	defer b.Close()
	appendRange(t, b, 100, 120, 20) // other ids at the same seqs
	var logs syncBuffer
	pb := startPublisher(t, publish.Config{Log: b, Conn: nc, RetryWait: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), publish.ErrForeignStream.Error()) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q warning; logs:\n%s", publish.ErrForeignStream, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	pb.stop(t)
	if got := pb.p.Published(); got != 0 {
		t.Fatalf("publisher of another log reports %d published", got)
	}
	newConsumer(t, nc).drain(a, 10, publish.FormatRecord, true) // the stream still holds exactly a's records
}

// With every message gone from the stream (purged or expired), the
// publisher resumes at the cursor file, not at seq 0.
func TestResumeAtCursorWhenStreamEmptied(t *testing.T) {
	dir := t.TempDir()
	cursor := filepath.Join(dir, "stream.cursor")
	emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store := openLog(t, filepath.Join(dir, "log"))
	defer store.Close()
	appendRange(t, store, 0, 10, 10)
	p := startPublisher(t, publish.Config{Log: store, Conn: nc, CursorFile: cursor})
	waitPublished(t, p.p, 10, 10*time.Second)
	p.stop(t)

	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, publish.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	appendRange(t, store, 10, 15, 5)
	p = startPublisher(t, publish.Config{Log: store, Conn: nc, CursorFile: cursor})
	defer p.stop(t)
	waitPublished(t, p.p, 15, 10*time.Second)
	for n := uint64(11); n <= 15; n++ {
		m, err := st.GetMsg(ctx, n)
		if err != nil {
			t.Fatalf("stream message %d: %v", n, err)
		}
		if got := m.Header.Get(publish.HeaderSeq); got != strconv.FormatUint(n-1, 10) {
			t.Fatalf("stream message %d has Stele-Seq %s, want %d", n, got, n-1)
		}
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 5 || info.State.LastSeq != 15 {
		t.Fatalf("stream state %+v, %v; want 5 messages up to 15", info.State, err)
	}
}
