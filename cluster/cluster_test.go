package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/cluster"
	"github.com/stele/stele/index"
	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

const origin = "stele.test/cluster"

// logKey is one checkpoint key, given to every node as a key file: the
// cluster signs with one log key.
type logKey struct{ skey, vkey string }

func newLogKey(t testing.TB) logKey {
	s, v, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	return logKey{s, v}
}

func (k logKey) install(t testing.TB, dir string) {
	t.Helper()
	kd := filepath.Join(dir, "keys")
	if err := os.MkdirAll(kd, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kd, "checkpoint.skey"), []byte(k.skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kd, "checkpoint.vkey"), []byte(k.vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testNode is one Stele node in the test process: its own data directory,
// replica store, index and NATS connection.
type testNode struct {
	dir   string
	nc    *nats.Conn
	store *logstore.Store
	ix    *index.Index
	node  *cluster.Node
}

func startNode(t testing.TB, c *natstest.Cluster, key logKey, dir, name string, ttl time.Duration) *testNode {
	t.Helper()
	tn, err := tryStartNode(t, c, key, dir, name, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// tryStartNode is startNode answering cluster.Start's refusal.
func tryStartNode(t testing.TB, c *natstest.Cluster, key logKey, dir, name string, ttl time.Duration) (*testNode, error) {
	t.Helper()
	key.install(t, dir)
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: origin, Hook: ix, Replica: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Start(ctx, cluster.Config{JS: js, Local: store, Index: ix, Name: name, LeaseTTL: ttl, AckTimeout: ackTimeout, AckWait: time.Second})
	if err != nil {
		nc.Close()
		store.Close()
		ix.Close()
		return nil, err
	}
	tn := &testNode{dir: dir, nc: nc, store: store, ix: ix, node: n}
	t.Cleanup(tn.close)
	return tn, nil
}

func (tn *testNode) close() {
	if tn.node == nil {
		return
	}
	tn.node.Close()
	tn.nc.Close()
	tn.store.Close()
	tn.ix.Close()
	tn.node = nil
}

// ackTimeout is how long a test node's Append waits for its records to be
// sequenced. A loaded CI machine has taken more than 5 s to sequence the
// first batch of a freshly formed R3 cluster; what the tests check does not
// depend on it, only TestNATSQuorumLoss waits it out once.
const ackTimeout = 15 * time.Second

// startThree starts a three-server NATS cluster and three nodes on it
// sharing one log key, and waits until one of them writes.
func startThree(t testing.TB, ttl time.Duration) (*natstest.Cluster, []*testNode) {
	t.Helper()
	c := natstest.StartT(t, 3)
	key := newLogKey(t)
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, c, key, t.TempDir(), fmt.Sprintf("s%d", i+1), ttl))
	}
	waitLeader(t, nodes...)
	return c, nodes
}

func rec(id string, i int) *record.Record {
	return &record.Record{
		ID:         id,
		Source:     record.Source{Name: "test", Kind: "http", Table: "t"},
		Op:         record.OpInsert,
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, i)),
		After:      json.RawMessage(fmt.Sprintf(`{"id":%d,"v":"x"}`, i)),
		OccurredAt: time.Unix(1700000000, 0).UTC(),
	}
}

func waitLeader(t testing.TB, nodes ...*testNode) *testNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.node != nil && n.node.Leader() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no node won the writer lease within 30s")
	return nil
}

func waitSize(t *testing.T, n *testNode, size uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n.store.Size() < size {
		select {
		case <-ctx.Done():
			t.Fatalf("node %s holds %d records, want %d", n.dir, n.store.Size(), size)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sameLog fails unless every node holds the same records, byte for byte,
// with seqs 0..size-1 and each id once.
func sameLog(t *testing.T, nodes ...*testNode) uint64 {
	t.Helper()
	size := nodes[0].store.Size()
	ids := map[string]uint64{}
	for seq := uint64(0); seq < size; seq++ {
		want, err := nodes[0].store.ReadRaw(seq)
		if err != nil {
			t.Fatal(err)
		}
		r, err := record.Decode(want)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := ids[r.ID]; dup {
			t.Fatalf("id %s stored twice, at seqs %d and %d", r.ID, prev, seq)
		}
		ids[r.ID] = seq
		for _, n := range nodes[1:] {
			got, err := n.store.ReadRaw(seq)
			if err != nil {
				t.Fatalf("node %s seq %d: %v", n.dir, seq, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("seq %d differs between %s and %s", seq, nodes[0].dir, n.dir)
			}
		}
	}
	r0, _ := nodes[0].store.RootAt(size)
	for _, n := range nodes[1:] {
		if n.store.Size() != size {
			t.Fatalf("node %s holds %d records, node %s %d", n.dir, n.store.Size(), nodes[0].dir, size)
		}
		if r, _ := n.store.RootAt(size); !bytes.Equal(r, r0) {
			t.Fatalf("root at %d differs on %s", size, n.dir)
		}
	}
	return size
}

// Records appended through any node are sequenced once, in one log that
// every node holds byte for byte; a resubmitted id is a duplicate with the
// first seq.
func TestReplicatedAppend(t *testing.T) {
	_, nodes := startThree(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	seqs := make([][]stele.Appended, 3)
	for i, n := range nodes {
		wg.Go(func() {
			var recs []*record.Record
			for j := range 50 {
				recs = append(recs, rec(fmt.Sprintf("n%d-%d", i, j), j))
			}
			res, err := n.node.Append(ctx, recs)
			if err != nil {
				t.Errorf("append through node %d: %v", i, err)
			}
			seqs[i] = res
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, res := range seqs {
		for j, a := range res {
			if a.Duplicate || a.ID != fmt.Sprintf("n%d-%d", i, j) {
				t.Fatalf("node %d record %d: %+v", i, j, a)
			}
		}
	}
	for _, n := range nodes {
		waitSize(t, n, 150)
	}
	if size := sameLog(t, nodes...); size != 150 {
		t.Fatalf("log holds %d records, want 150", size)
	}
	again, err := nodes[2].node.Append(ctx, []*record.Record{rec("n0-7", 7)})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].Seq != seqs[0][7].Seq {
		t.Fatalf("resubmitted id: %+v, want duplicate of seq %d", again[0], seqs[0][7].Seq)
	}
	// The checkpoint every node adopted is the writer's, valid under the
	// one log key, for the same tree.
	for _, n := range nodes {
		cp, err := n.store.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stele.OpenCheckpoint(cp.Note, n.store.Keys().Verifier); err != nil || cp.Size != 150 {
			t.Fatalf("node %s checkpoint %+v: %v", n.dir, cp, err)
		}
	}
	if _, err := nodes[0].store.Append(ctx, []*record.Record{rec("x", 0)}); !errors.Is(err, logstore.ErrReplica) {
		t.Fatalf("Append on a replica store: %v, want ErrReplica", err)
	}
	// Each node's status and the partition listing agree on the writer;
	// every candidate was sequenced.
	leaders := 0
	var writer string
	for i, n := range nodes {
		st := n.node.Status()
		if st.Log != "main" || st.Node != fmt.Sprintf("s%d", i+1) || st.Records != 150 {
			t.Fatalf("node %d status %+v", i, st)
		}
		if st.Leader {
			leaders++
			writer = st.Node
		}
	}
	// The writer acks the last candidates once its own copy indexed them,
	// which may be just after the appends returned.
	var parts []cluster.Partition
	for {
		parts, err = nodes[0].node.Partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 1 || parts[0].Backlog == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if leaders != 1 || len(parts) != 1 || parts[0].Log != "main" || parts[0].Writer != writer || parts[0].Backlog != 0 || parts[0].Batches == 0 {
		t.Fatalf("%d leaders (%s); partitions %+v: want main alone, written by %s, nothing waiting", leaders, writer, parts, writer)
	}
}

// With one NATS server of three killed the cluster keeps sequencing; with
// two it refuses appends with stele.ErrUnavailable and loses nothing it
// acknowledged; with the quorum back, appends resume.
func TestNATSQuorumLoss(t *testing.T) {
	c, nodes := startThree(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	acked := map[string]uint64{}
	next := 0
	appendSome := func(n *testNode, k int) error {
		var recs []*record.Record
		for range k {
			recs = append(recs, rec(fmt.Sprintf("q-%d", next), next))
			next++
		}
		res, err := n.node.Append(ctx, recs)
		if err != nil {
			return err
		}
		for _, a := range res {
			acked[a.ID] = a.Seq
		}
		return nil
	}
	if err := appendSome(nodes[0], 20); err != nil {
		t.Fatal(err)
	}
	c.Kill(2)
	var err error
	for try := 0; try < 10; try++ {
		if err = appendSome(nodes[1], 20); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("appends with 2 of 3 NATS servers up: %v", err)
	}
	c.Kill(1)
	err = appendSome(nodes[0], 5)
	if !errors.Is(err, stele.ErrUnavailable) {
		t.Fatalf("append with 1 of 3 NATS servers up: %v, want ErrUnavailable", err)
	}
	for _, i := range []int{1, 2} {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err = appendSome(nodes[2], 10); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends did not resume once the quorum was back: %v", err)
		}
	}
	size := uint64(0)
	for _, s := range acked {
		size = max(size, s+1)
	}
	for _, n := range nodes {
		waitSize(t, n, size)
	}
	sameLog(t, nodes...)
	for id, seq := range acked {
		raw, err := nodes[0].store.ReadRaw(seq)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := record.Decode(raw)
		if r.ID != id {
			t.Fatalf("acknowledged %s at seq %d, the log holds %s there", id, seq, r.ID)
		}
	}
}

// A node given another log key is refused at start (the log stream names
// its key). On a stream that does not name it, the node starts, but its
// copy cannot hold the writer's batches (their checkpoints do not verify
// under its key): it stops following, says why with ErrDiverged, and
// refuses appends; the others go on.
func TestDivergedNodeStops(t *testing.T) {
	c, nodes := startThree(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A log with a batch: a node that cannot apply it can never catch up,
	// so it can never write either, whether or not it wins the lease.
	if _, err := nodes[0].node.Append(ctx, []*record.Record{rec("d-1", 1)}); err != nil {
		t.Fatal(err)
	}
	strayKey := newLogKey(t)
	if _, err := tryStartNode(t, c, strayKey, t.TempDir(), "stray", 2*time.Second); !errors.Is(err, cluster.ErrWrongKey) {
		t.Fatalf("a node with another log key started: %v, want ErrWrongKey", err)
	}
	// A log stream from before streams named their key: the node starts,
	// and the first batch's checkpoint stops it.
	js, err := jetstream.New(nodes[0].nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "STELE_MAIN_LOG")
	if err != nil {
		t.Fatal(err)
	}
	old := st.CachedInfo().Config
	old.Metadata = nil
	if _, err := js.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	stray := startNode(t, c, strayKey, t.TempDir(), "stray", 2*time.Second)
	if st, err = js.Stream(ctx, "STELE_MAIN_LOG"); err != nil {
		t.Fatal(err)
	}
	if k := st.CachedInfo().Config.Metadata["stele_verifier_key"]; k != "" {
		t.Fatalf("the stray node claimed the stream that named no key: it names %s", k)
	}
	deadline := time.Now().Add(20 * time.Second)
	for stray.node.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a node with another log key still follows the log")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = stray.node.Err()
	if !errors.Is(err, cluster.ErrDiverged) || !errors.Is(err, logstore.ErrTampered) {
		t.Fatalf("Err() = %v, want ErrDiverged wrapping ErrTampered", err)
	}
	if stray.store.Size() != 0 {
		t.Fatalf("the diverged node stored %d records", stray.store.Size())
	}
	if _, err := stray.node.Append(ctx, []*record.Record{rec("d-2", 2)}); !errors.Is(err, cluster.ErrDiverged) {
		t.Fatalf("append through the diverged node: %v, want ErrDiverged", err)
	}
	if stray.node.Leader() {
		t.Fatal("the diverged node leads")
	}
	if _, err := nodes[1].node.Append(ctx, []*record.Record{rec("d-3", 3)}); err != nil {
		t.Fatalf("the healthy nodes stopped: %v", err)
	}
}

// A partition refuses to start under an origin another partition signs
// with (a witness would see two histories of one origin); under its own
// it starts, and the listing names both partitions and their writers.
func TestPartitionOrigin(t *testing.T) {
	c := natstest.StartT(t, 3)
	key := newLogKey(t)
	main := startNode(t, c, key, t.TempDir(), "s1", 2*time.Second)
	waitLeader(t, main)
	start := func(o string, k logKey) (*cluster.Node, error) {
		dir := t.TempDir()
		k.install(t, dir)
		ix, err := index.Open(filepath.Join(dir, "index"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: o, Hook: ix, Replica: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		js, err := jetstream.New(main.nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return cluster.Start(ctx, cluster.Config{JS: js, Local: store, Index: ix, Name: "b1", Log: "billing", LeaseTTL: 2 * time.Second})
	}
	if _, err := start(origin, newLogKey(t)); !errors.Is(err, cluster.ErrOriginInUse) || !strings.Contains(err.Error(), origin+"/billing") {
		t.Fatalf("partition billing under main's origin: %v, want ErrOriginInUse suggesting %s/billing", err, origin)
	}
	other := origin + "/billing"
	s, v, err := note.GenerateKey(rand.Reader, other)
	if err != nil {
		t.Fatal(err)
	}
	b, err := start(other, logKey{s, v})
	if err != nil {
		t.Fatalf("partition billing under its own origin: %v", err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		parts, err := b.Partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) == 2 && parts[0].Log == "billing" && parts[0].Writer == "b1" && parts[1].Log == "main" && parts[1].Writer == "s1" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("partitions %+v: want billing written by b1 and main by s1", parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
