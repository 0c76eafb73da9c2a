package publish_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/publish"
)

// TestDuplicateWindowBounded: the stream the publisher creates remembers
// message ids for DedupeWindow, not JetStream's two minutes (memory that
// grows with the ingest rate), and a stream created with the default is
// narrowed when the publisher opens it; publishing still works after. The
// stream it creates (one replica) writes messages to disk in the
// background rather than one system call per message before each ack.
func TestDuplicateWindowBounded(t *testing.T) {
	dir := t.TempDir()
	store := openLog(t, filepath.Join(dir, "log"))
	defer store.Close()
	appendRange(t, store, 0, 50, 25)
	nc := embeddedConn(t, filepath.Join(dir, "nats"))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	window := func(name string) time.Duration {
		t.Helper()
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.Duplicates
	}

	pub := startPublisher(t, publish.Config{Log: store, Conn: nc, Stream: "FRESH", SubjectPrefix: "fresh"})
	waitPublished(t, pub.p, 50, 30*time.Second)
	pub.stop(t)
	if w := window("FRESH"); w != publish.DedupeWindow {
		t.Errorf("created stream's duplicate window %v, want %v", w, publish.DedupeWindow)
	}
	if st, err := js.Stream(ctx, "FRESH"); err != nil {
		t.Fatal(err)
	} else if m := st.CachedInfo().Config.PersistMode; m != jetstream.AsyncPersistMode {
		t.Errorf("created stream's persist mode %v, want async", m)
	}

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OLD", Subjects: []string{"old.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if w := window("OLD"); w <= publish.DedupeWindow {
		t.Fatalf("JetStream's default window is %v; the test needs a wider one", w)
	}
	pub = startPublisher(t, publish.Config{Log: store, Conn: nc, Stream: "OLD", SubjectPrefix: "old"})
	waitPublished(t, pub.p, 50, 30*time.Second)
	pub.stop(t)
	if w := window("OLD"); w != publish.DedupeWindow {
		t.Errorf("existing stream's duplicate window %v after the publisher opened it, want %v", w, publish.DedupeWindow)
	}
}

// embeddedConn starts an embedded NATS server with its store in dir and
// connects to it; both end with the test.
func embeddedConn(t testing.TB, dir string) *nats.Conn {
	t.Helper()
	emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
