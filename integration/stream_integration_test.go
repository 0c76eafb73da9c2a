package integration_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The real binary publishes every record on its embedded NATS exactly once
// and in log order, even when killed with SIGKILL while publishing.
func TestStreamExactlyOnceAcrossKill9(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir, "--stream-listen", natsAddr)

	postBatch := func(s *server, from, n int) {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			b.WriteString(good(fmt.Sprintf("stream-%d", i)))
			b.WriteByte('\n')
		}
		s.post("application/x-ndjson", []byte(b.String()))
	}
	for i := 0; i < 2000; i += 200 {
		postBatch(s, i, 200)
	}
	s.kill() // publishing is likely still in flight
	s.start()
	s.waitHealthy()
	for i := 2000; i < 3000; i += 100 {
		postBatch(s, i, 100)
	}

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var st jetstream.Stream
	for {
		if st, err = js.Stream(ctx, "STELE_LINEAGE"); err == nil {
			info, err := st.Info(ctx)
			if err == nil && info.State.Msgs >= 3000 {
				if info.State.Msgs != 3000 || info.State.LastSeq != 3000 {
					t.Fatalf("stream holds %d messages up to sequence %d, want exactly 3000", info.State.Msgs, info.State.LastSeq)
				}
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream did not reach 3000 messages: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Records are stored in the order their batches committed; ids are
	// unique, so a duplicate or gap shows as a repeated id or a seq off by one.
	seen := make(map[string]bool)
	for n := uint64(1); n <= 3000; n++ {
		m, err := st.GetMsg(ctx, n)
		if err != nil {
			t.Fatalf("message %d: %v", n, err)
		}
		if got := m.Header.Get("Stele-Seq"); got != strconv.FormatUint(n-1, 10) {
			t.Fatalf("message %d has Stele-Seq %q, want %d", n, got, n-1)
		}
		id := m.Header.Get("Nats-Msg-Id")
		if seen[id] {
			t.Fatalf("message %d repeats record id %q", n, id)
		}
		seen[id] = true
		if m.Subject != "stele.lineage.app.orders.insert" {
			t.Fatalf("message %d on subject %q", n, m.Subject)
		}
	}
}
