package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/internal/stelebin"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// TestCrashExactlyOnce runs the real stele binary as a child process
// consuming a Debezium topic from kfake (which lives here, in the test
// process, so it outlives the kills), kill -9s it three times while
// transactions keep arriving, and checks that the log holds every change
// exactly once and verifies.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	b := startBroker(t)
	u := newDebeziumTopics(t, b, "crash", 3)
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "stele.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `log_level: debug
sources:
  - name: crash
    kafka:
      brokers: [%q]
      topics: ['^crash\.public\..*']
      topic_regex: true
      transaction_topic: crash.transaction
      sasl_mechanism: PLAIN
      sasl_user: %s
      session_timeout: 2s
`, b.addr(), saslUser), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := stelebin.New(t, stelebin.Build(t), "--config", conf)
	srv.Env = []string{"STELE_KAFKA_PASSWORD=" + saslPass}
	srv.Start()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	var changes atomic.Int64
	wg.Go(func() {
		ctx := context.Background()
		for n := int64(1); !stop.Load(); n++ {
			// Each transaction inserts a row and updates an earlier one:
			// two changes.
			err := u.Apply(ctx, txOf(n, 1+rand.Int64N(n)))
			if err != nil {
				workErr = err
				return
			}
			changes.Add(2)
			time.Sleep(time.Millisecond)
		}
	})
	for range 3 {
		time.Sleep(time.Duration(400+rand.IntN(400)) * time.Millisecond)
		srv.Restart()
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if workErr != nil {
		t.Fatalf("workload: %v", workErr)
	}
	want := uint64(changes.Load())
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for size := uint64(0); size < want; size = srv.CheckpointSize() {
		if time.Now().After(deadline) {
			t.Fatalf("log reached %d records, want %d; the group as the broker sees it:\n%s", size, want, groupReport(b, "stele-crash", u))
		}
		time.Sleep(100 * time.Millisecond)
	}
	caughtUp := time.Since(start).Round(time.Millisecond)
	if err := srv.Stop(); err != nil {
		t.Fatalf("stele exit: %v", err)
	}
	if _, err := logstore.VerifyDir(context.Background(), srv.Data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	st, err := logstore.Open(context.Background(), srv.Data, logstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Size() != want {
		t.Fatalf("log holds %d records, want %d (one per change)", st.Size(), want)
	}
	seen := map[string]bool{}
	for seq := range st.Size() {
		r, err := st.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s %s %s", r.Op, r.Key, r.After)
		if seen[k] {
			t.Fatalf("change %s stored twice", k)
		}
		seen[k] = true
	}
	t.Logf("%d changes, 3 kills, caught up %v after the workload stopped", want, caughtUp)
}

// groupReport says what a stalled consumer group looks like to the
// broker: its state and generation, each member with what it is assigned,
// and each partition's committed offset against its end, so a stall names
// the partitions nobody reads and the member holding them.
func groupReport(b *broker, group string, u *debeziumTopics) string {
	c := b.cluster()
	gi := c.GroupInfo(group)
	if gi == nil {
		return "  no such group"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "  state %s, generation %d, %d members\n", gi.State, gi.Epoch, len(gi.Members))
	for _, m := range gi.Members {
		inst := "dynamic"
		if m.InstanceID != nil {
			inst = "instance " + *m.InstanceID
		}
		fmt.Fprintf(&sb, "  member %s (%s, from %s) assigned %v\n", m.MemberID, inst, m.ClientHost, m.Assignment)
	}
	for _, topic := range []string{u.items, u.typed, u.txTop} {
		for _, p := range c.PartitionInfos(topic) {
			committed := int64(-1)
			if oc, ok := gi.Commits[topic][p.Partition]; ok {
				committed = oc.Offset
			}
			fmt.Fprintf(&sb, "  %s/%d committed %d of %d\n", topic, p.Partition, committed, p.HighWatermark)
		}
	}
	return sb.String()
}

func txOf(n, upd int64) capturetest.Tx {
	return capturetest.Tx{Changes: []capturetest.Change{
		{Op: record.OpInsert, ID: n, V: fmt.Sprintf("n%d", n)},
		{Op: record.OpUpdate, ID: upd, V: fmt.Sprintf("u%d", n)},
	}}
}
