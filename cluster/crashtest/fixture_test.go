package crashtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/internal/stelebin"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

const origin = "stele.test/cluster"

// fixture is a NATS cluster and three stele nodes on it serving one
// partition, sharing its log key (given to each node as a key file in its
// data directory).
type fixture struct {
	t          *testing.T
	nats       *natstest.Cluster
	bin        string
	nodes      []*stelebin.Server
	kv         jetstream.KeyValue // the partition's lease bucket
	js         jetstream.JetStream
	vkey       string
	ttl        time.Duration
	log        string // the partition
	origin     string
	masterFile string
}

// TestMain builds the stele binary once for every test of the package:
// a build takes most of a minute on a busy machine.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stele-crashtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "stele")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stele/stele/cmd/stele").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stele: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Setenv(binEnv, bin)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binEnv passes the binary TestMain built to the tests.
const binEnv = "STELE_CRASHTEST_BIN"

// newFixture starts the NATS cluster and three nodes serving partition
// main; extra gives node i more arguments (a capture source).
func newFixture(t *testing.T, ttl time.Duration, extra ...nodeArgs) *fixture {
	t.Helper()
	f := newUnstarted(t, ttl)
	f.launch(extra)
	f.ready()
	return f
}

// newUnstarted starts the NATS cluster and writes the master key file;
// the nodes are for launch.
func newUnstarted(t *testing.T, ttl time.Duration) *fixture {
	t.Helper()
	f := &fixture{t: t, nats: natstest.StartT(t, 3), bin: os.Getenv(binEnv), ttl: ttl, log: "main", origin: origin}
	// Every node unwraps the keys in the cluster's KV keystore with the
	// one master key, kept outside the data directories as advised.
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	f.masterFile = filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(f.masterFile, []byte(base64.StdEncoding.EncodeToString(master)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// launchPartition starts three more nodes on f's NATS cluster, one on
// each of the same three machines as far as the test can tell, serving
// partition log: its own streams, lease, log key, origin and data
// directories, sharing only the NATS servers and the keystore (and so its
// master key). It does not wait for them (ready).
func (f *fixture) launchPartition(log string, extra ...nodeArgs) *fixture {
	f.t.Helper()
	p := &fixture{t: f.t, nats: f.nats, bin: f.bin, ttl: f.ttl, log: log, origin: origin + "/" + log, masterFile: f.masterFile}
	p.launch(extra)
	return p
}

// newPartitions starts the NATS cluster and three nodes of partition main
// and of each other partition named, all at once (one start-up wait
// instead of one per partition).
func newPartitions(t *testing.T, ttl time.Duration, logs ...string) []*fixture {
	t.Helper()
	main := newUnstarted(t, ttl)
	main.launch(nil)
	all := []*fixture{main}
	for _, l := range logs {
		all = append(all, main.launchPartition(l))
	}
	for _, f := range all {
		f.ready()
	}
	return all
}

// launch starts f's three processes without waiting for them.
func (f *fixture) launch(extra []nodeArgs) {
	t := f.t
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, f.origin)
	if err != nil {
		t.Fatal(err)
	}
	f.vkey = vkey
	for i := range 3 {
		s := stelebin.New(t, f.bin, "--origin", f.origin, "--cluster", f.nats.URLs(), "--cluster-node", fmt.Sprintf("s%d", i),
			"--cluster-log", f.log, "--cluster-lease-ttl", f.ttl.String(), "--cluster-ack-timeout", "5s", "--log-level", "debug",
			"--master-key-file", f.masterFile)
		for _, e := range extra {
			if e.node == i {
				s.Args = append(s.Args, e.args...)
			}
		}
		kd := filepath.Join(s.Data, "keys")
		if err := os.MkdirAll(kd, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(kd, "checkpoint.skey"), []byte(skey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(kd, "checkpoint.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.Start()
		f.nodes = append(f.nodes, s)
	}
}

// ready waits until every node of f serves and its partition's lease
// bucket exists.
func (f *fixture) ready() {
	t := f.t
	t.Helper()
	for i := range f.nodes {
		f.waitServing(i)
	}
	nc, err := nats.Connect(f.nats.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if f.kv, err = f.js.KeyValue(ctx, "STELE_"+strings.ToUpper(f.log)+"_LEASE"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("lease bucket: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeArgs are more command-line arguments for one node of a fixture.
type nodeArgs struct {
	node int
	args []string
}

// waitServing waits until node i answers /healthz with 200.
func (f *fixture) waitServing(i int) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if addr := f.nodes[i].Addr(); addr != "" {
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("node %d not serving within 60s", i)
}

// leader is the index of the node holding the writer lease, waiting for
// one to hold it.
func (f *fixture) leader() int {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		e, err := f.kv.Get(ctx, "writer")
		cancel()
		if err == nil {
			var i int
			if _, err := fmt.Sscanf(string(e.Value()), "s%d", &i); err == nil {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatal("no node holds the writer lease")
	return -1
}

// post sends recs (JSON objects) to node i; it returns the seq of each
// id on a 201 and the status otherwise.
func post(addr string, ids []string) (map[string]uint64, int, error) {
	var body bytes.Buffer
	body.WriteByte('[')
	for j, id := range ids {
		if j > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"id":%q,"source":{"name":"app","table":"orders"},"op":"insert","key":{"id":%q},"after":{"id":%q,"amount":%d}}`, id, id, id, j)
	}
	body.WriteByte(']')
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Post("http://"+addr+"/v1/records", "application/json", &body)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return nil, resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var out struct {
		Records []struct {
			Seq uint64 `json:"seq"`
			ID  string `json:"id"`
		} `json:"records"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, resp.StatusCode, err
	}
	m := make(map[string]uint64, len(out.Records))
	for _, r := range out.Records {
		m[r.ID] = r.Seq
	}
	return m, resp.StatusCode, nil
}

// load posts batches of new records to the nodes in turn until stopped,
// and keeps what was acknowledged.
type load struct {
	f      *fixture
	mu     sync.Mutex
	acked  map[string]uint64
	stop   chan struct{}
	wg     sync.WaitGroup
	errors int
}

func startLoad(f *fixture, workers int) *load {
	l := &load{f: f, acked: map[string]uint64{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				addr := f.nodes[(w+k)%len(f.nodes)].Addr()
				ids := make([]string, 5)
				for j := range ids {
					ids[j] = fmt.Sprintf("w%d-%d-%d", w, k, j)
				}
				got, _, err := post(addr, ids)
				l.mu.Lock()
				if err != nil {
					l.errors++
				}
				for id, seq := range got {
					if prev, ok := l.acked[id]; ok && prev != seq {
						f.t.Errorf("id %s acknowledged at seq %d and %d", id, prev, seq)
					}
					l.acked[id] = seq
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *load) end() map[string]uint64 {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// probe posts one new record to any running node but skip until one is
// acknowledged, and returns when.
func (f *fixture) probe(skip int, tag string) time.Time {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for k := 0; time.Now().Before(deadline); k++ {
		i := k % len(f.nodes)
		if i == skip {
			continue
		}
		if _, _, err := post(f.nodes[i].Addr(), []string{fmt.Sprintf("probe-%s-%d", tag, k)}); err == nil {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatal("no write acknowledged within 60s")
	return time.Time{}
}

// signedCheckpoint is a checkpoint note fetched from a node, parsed with
// the note library alone.
type signedCheckpoint struct {
	size uint64
	root []byte
}

func (f *fixture) checkpoint(i int) signedCheckpoint {
	f.t.Helper()
	var b []byte
	// A 503 (with Retry-After) is a node with nothing signed yet; a
	// client waits it out. Anything else is answered at once.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + f.nodes[i].Addr() + "/v1/checkpoint")
		if err != nil {
			f.t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	v, err := note.NewVerifier(f.vkey)
	if err != nil {
		f.t.Fatal(err)
	}
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		f.t.Fatalf("checkpoint of node %d: %v\n%s", i, err, b)
	}
	lines := strings.Split(n.Text, "\n")
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		f.t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		f.t.Fatal(err)
	}
	return signedCheckpoint{size, root}
}

// settle waits until every node's checkpoint covers at least size, the
// partition's ingest stream holds no candidate left to sequence (a write
// refused with a 503 may still be sequenced afterwards) and every node's
// checkpoint is the same size: then their copies can be compared.
func (f *fixture) settle(size uint64) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sizes := make([]uint64, len(f.nodes))
		same := true
		for i := range f.nodes {
			sizes[i] = f.checkpoint(i).size
			same = same && sizes[i] == sizes[0]
		}
		if same && sizes[0] >= size && f.backlog() == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("checkpoints of the nodes at %v, want one size of at least %d and no backlog (%d)", sizes, size, f.backlog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// backlog is the number of candidates in the partition's ingest stream
// (-1 when it cannot be read).
func (f *fixture) backlog() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := f.js.Stream(ctx, "STELE_"+strings.ToUpper(f.log)+"_INGEST")
	if err != nil {
		return -1
	}
	return int64(st.CachedInfo().State.Msgs)
}

// verifyAll stops every node, then checks that their records.log files
// are identical, `stele verify` passes on each, every acknowledged id is
// stored once at its seq, and each checkpoint in cps is consistent with
// the next (proofs checked with transparency-dev/merkle's verifier). It
// returns the log's records.
func (f *fixture) verifyAll(acked map[string]uint64, cps []signedCheckpoint) []*record.Record {
	f.t.Helper()
	for _, s := range f.nodes {
		if err := s.Stop(); err != nil {
			f.t.Fatalf("stop node: %v", err)
		}
	}
	first, err := os.ReadFile(filepath.Join(f.nodes[0].Data, "records.log"))
	if err != nil {
		f.t.Fatal(err)
	}
	for i, s := range f.nodes {
		b, err := os.ReadFile(filepath.Join(s.Data, "records.log"))
		if err != nil {
			f.t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			f.t.Fatalf("records.log of node %d (%d bytes) differs from node 0's (%d bytes)", i, len(b), len(first))
		}
		if out, err := exec.Command(f.bin, "verify", "--data", s.Data).CombinedOutput(); err != nil {
			f.t.Fatalf("stele verify on node %d: %v\n%s", i, err, out)
		}
	}
	ctx := context.Background()
	store, err := logstore.Open(ctx, f.nodes[0].Data, logstore.Options{Origin: f.origin, Replica: true})
	if err != nil {
		f.t.Fatal(err)
	}
	defer store.Close()
	seen := map[string]uint64{}
	recs := make([]*record.Record, 0, store.Size())
	for seq := uint64(0); seq < store.Size(); seq++ {
		raw, err := store.ReadRaw(seq)
		if err != nil {
			f.t.Fatal(err)
		}
		r, err := record.Decode(raw)
		if err != nil {
			f.t.Fatal(err)
		}
		if prev, dup := seen[r.ID]; dup {
			f.t.Fatalf("id %s stored at seqs %d and %d", r.ID, prev, seq)
		}
		seen[r.ID] = seq
		recs = append(recs, r)
	}
	for id, seq := range acked {
		if got, ok := seen[id]; !ok || got != seq {
			f.t.Fatalf("acknowledged %s at seq %d; the log has it at %d (present %v)", id, seq, got, ok)
		}
	}
	// The checkpoints come from different nodes, and a node that just
	// restarted serves what its copy has caught up to, so a later one can
	// be smaller. Each consecutive pair by size being consistent proves
	// them all one history.
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].size < cps[j].size })
	for k := 0; k+1 < len(cps); k++ {
		a, b := cps[k], cps[k+1]
		if a.size == 0 {
			// A node that has applied nothing yet signs the empty tree;
			// every tree extends it, and merkle refuses a proof from it.
			if !bytes.Equal(a.root, rfc6962.DefaultHasher.EmptyRoot()) {
				f.t.Fatalf("a checkpoint of size 0 has root %x, not the empty tree's", a.root)
			}
			continue
		}
		p, err := store.ConsistencyProof(a.size, b.size)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.size, b.size, p, a.root, b.root); err != nil {
			f.t.Fatalf("checkpoints at %d and %d are not consistent: %v", a.size, b.size, err)
		}
	}
	f.t.Logf("%d records, %d acknowledged, %d checkpoints consistent", store.Size(), len(acked), len(cps))
	return recs
}

func maxSeq(acked map[string]uint64) uint64 {
	var n uint64
	for _, s := range acked {
		n = max(n, s+1)
	}
	return n
}

// status runs `stele status` against node i.
func (f *fixture) status(i int) string {
	f.t.Helper()
	out, err := exec.Command(f.bin, "status", "--url", "http://"+f.nodes[i].Addr()).CombinedOutput()
	if err != nil {
		f.t.Fatalf("stele status on node %d of partition %s: %v\n%s", i, f.log, err, out)
	}
	return string(out)
}

// statusNames checks that `stele status` on every running node of f
// names, for each partition of parts, the node holding its lease. Under
// load a lease can change hands between the status and the check, so a
// node's status counts only when the leases read before and after it
// agree (a few tries).
func (f *fixture) statusNames(parts ...*fixture) {
	f.t.Helper()
	leaders := func() []int {
		ws := make([]int, len(parts))
		for j, p := range parts {
			ws[j] = p.leader()
		}
		return ws
	}
	for i, s := range f.nodes {
		if !s.Running() {
			continue
		}
		for try := 0; ; try++ {
			before := leaders()
			out := f.status(i)
			if !slices.Equal(before, leaders()) && try < 10 {
				continue
			}
			if i == 0 {
				f.t.Logf("stele status on node 0 of partition %s:\n%s", f.log, out)
			}
			if want := fmt.Sprintf("serves partition %s:", f.log); !strings.Contains(out, want) {
				f.t.Errorf("stele status on node %d does not say %q:\n%s", i, want, out)
			}
			for j, p := range parts {
				if want := fmt.Sprintf(" %s: writer s%d", p.log, before[j]); !strings.Contains(out, want) {
					f.t.Errorf("stele status on node %d of partition %s does not say %q:\n%s", i, f.log, want, out)
				}
			}
			break
		}
	}
}

// lineageStream is the partition's lineage stream on the cluster's NATS.
func (f *fixture) lineageStream() string {
	if f.log == "main" {
		return "STELE_LINEAGE"
	}
	return "STELE_LINEAGE_" + strings.ToUpper(f.log)
}

// waitLineage waits until the partition's lineage stream holds at least
// size messages (its writer publishes them after the kills too).
func (f *fixture) waitLineage(size uint64) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := f.js.Stream(ctx, f.lineageStream())
		cancel()
		if err == nil && st.CachedInfo().State.Msgs >= size {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("lineage stream %s: %v, want %d messages (err %v)", f.lineageStream(), st, size, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkLineage checks that the lineage stream holds every record of the
// log once, in log order: message k carries Stele-Seq k and is the event
// of the record at seq k (its id), whichever writer published it.
func (f *fixture) checkLineage(recs []*record.Record) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// On a loaded machine the JetStream API can be briefly without a
	// responder (a meta leader election); the stream is there regardless.
	var st jetstream.Stream
	var cons jetstream.Consumer
	for {
		var err error
		if st, err = f.js.Stream(ctx, f.lineageStream()); err == nil {
			if cons, err = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{}); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			f.t.Fatalf("lineage stream %s: %v", f.lineageStream(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := st.CachedInfo().State.Msgs; n != uint64(len(recs)) {
		f.t.Fatalf("lineage stream %s holds %d messages, the log %d records", f.lineageStream(), n, len(recs))
	}
	for k := 0; k < len(recs); {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				f.t.Fatalf("lineage stream %s after %d messages: %v", f.lineageStream(), k, err)
			}
			time.Sleep(200 * time.Millisecond)
			continue // the ordered consumer resumes after the last delivered
		}
		for m := range batch.Messages() {
			if k >= len(recs) {
				f.t.Fatalf("lineage stream %s: more messages than records", f.lineageStream())
			}
			var ev struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				f.t.Fatalf("lineage message %d: %v", k, err)
			}
			if seq := m.Headers().Get("Stele-Seq"); seq != strconv.Itoa(k) || ev.ID != recs[k].ID {
				f.t.Fatalf("lineage message %d: Stele-Seq %s, event id %s; want seq %d, id %s", k, seq, ev.ID, k, recs[k].ID)
			}
			k++
		}
		if err := batch.Error(); err != nil && ctx.Err() != nil {
			f.t.Fatalf("lineage stream %s after %d messages: %v", f.lineageStream(), k, err)
		}
	}
	f.t.Logf("lineage stream %s: %d messages, the log's records once each in order", f.lineageStream(), len(recs))
}
