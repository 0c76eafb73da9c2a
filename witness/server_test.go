package witness_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/witness"
)

const origin = "witness.test/log"

func openStore(t *testing.T, dir string) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// grow appends n records named prefix-i and returns a checkpoint of them.
func grow(t *testing.T, s *logstore.Store, prefix string, n int) *stele.Checkpoint {
	t.Helper()
	recs := make([]*record.Record, n)
	for i := range recs {
		recs[i] = &record.Record{ID: fmt.Sprintf("%s-%d", prefix, i), Source: record.Source{Name: "t", Kind: "http", Table: "t"}, Op: record.OpInsert, Key: []byte(fmt.Sprintf(`{"id":%q}`, fmt.Sprint(prefix, i)))}
	}
	if _, err := s.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func logVerifier(t *testing.T, s *logstore.Store) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(s.Keys().VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type testWitness struct {
	w    *witness.Witness
	c    *witness.Cosigner
	vkey string
	dir  string
	reg  *prometheus.Registry
}

func newWitness(t *testing.T, dir string, c *witness.Cosigner, logs ...note.Verifier) *testWitness {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := witness.New(witness.Config{Dir: dir, Signer: c, Logs: logs, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &testWitness{w: w, c: c, vkey: c.VerifierKey(), dir: dir, reg: reg}
}

func request(t *testing.T, s *logstore.Store, old uint64, cp *stele.Checkpoint) []byte {
	t.Helper()
	var p [][]byte
	if old > 0 {
		var err error
		if p, err = s.ConsistencyProof(old, cp.Size); err != nil {
			t.Fatal(err)
		}
	}
	return (&witness.AddCheckpoint{OldSize: old, Proof: p, Checkpoint: cp.Note}).Marshal()
}

func evidence(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "evidence", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestWitnessCosignsConsistentAndRefusesTheRest(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	c, _ := newCosigner(t, "w.test")
	tw := newWitness(t, t.TempDir(), c, logVerifier(t, s))
	v, _ := witness.NewVerifier(tw.vkey)

	cp3 := grow(t, s, "a", 3)
	res := tw.w.AddCheckpoint(ctx, request(t, s, 0, cp3))
	if res.Status != 200 {
		t.Fatalf("first checkpoint: %d %v", res.Status, res.Err)
	}
	cosigned := append(bytes.Clone(cp3.Note), res.Body...)
	if _, err := note.Open(cosigned, note.VerifierList(logVerifier(t, s), v)); err != nil {
		t.Fatalf("cosigned note does not open: %v", err)
	}

	// A client that does not know the witness's size learns it from 409.
	cp5 := grow(t, s, "b", 2)
	res = tw.w.AddCheckpoint(ctx, request(t, s, 0, cp5))
	if res.Status != 409 || string(res.Body) != "3\n" || !errors.Is(res.Err, witness.ErrConflict) {
		t.Fatalf("stale old size: %d %q %v", res.Status, res.Body, res.Err)
	}
	// A proof that does not verify is refused, with evidence.
	req, err := witness.ParseAddCheckpoint(request(t, s, 3, cp5))
	if err != nil {
		t.Fatal(err)
	}
	req.Proof[0][0] ^= 1
	res = tw.w.AddCheckpoint(ctx, req.Marshal())
	if res.Status != 422 || !errors.Is(res.Err, witness.ErrInconsistent) {
		t.Fatalf("bad proof: %d %v", res.Status, res.Err)
	}
	if n := testutil.ToFloat64(splitView(t, tw.reg)); n != 1 {
		t.Fatalf("split view alarm %v, want 1", n)
	}
	if res = tw.w.AddCheckpoint(ctx, request(t, s, 3, cp5)); res.Status != 200 {
		t.Fatalf("good proof: %d %v", res.Status, res.Err)
	}
	// The same checkpoint again is cosigned again (a fresh timestamp).
	if res = tw.w.AddCheckpoint(ctx, request(t, s, 5, cp5)); res.Status != 200 {
		t.Fatalf("same checkpoint again: %d %v", res.Status, res.Err)
	}
	rollback := (&witness.AddCheckpoint{OldSize: 5, Proof: [][]byte{make([]byte, 32)}, Checkpoint: cp3.Note}).Marshal()
	if res = tw.w.AddCheckpoint(ctx, rollback); res.Status != 400 || !strings.Contains(res.Err.Error(), "old size 5 is above the checkpoint's size 3") {
		t.Fatalf("old above size: %d %v", res.Status, res.Err)
	}

	// Another key for the same origin: 403. An unknown origin: 404.
	other := openStore(t, t.TempDir())
	ocp := grow(t, other, "x", 1)
	if res = tw.w.AddCheckpoint(ctx, request(t, other, 0, ocp)); res.Status != 403 {
		t.Fatalf("unknown key: %d %v", res.Status, res.Err)
	}
	ls, _, _ := newLog(t, "elsewhere.test/log")
	ecp, _ := stele.SignCheckpoint(ls, 1, make([]byte, 32))
	if res = tw.w.AddCheckpoint(ctx, (&witness.AddCheckpoint{Checkpoint: ecp.Note}).Marshal()); res.Status != 404 {
		t.Fatalf("unknown origin: %d %v", res.Status, res.Err)
	}
	if res = tw.w.AddCheckpoint(ctx, []byte("garbage")); res.Status != 400 {
		t.Fatalf("garbage: %d %v", res.Status, res.Err)
	}

	// Evidence: the refusals of checkpoints the log signed (the 422 and
	// the 400; the stale-size 409 is the protocol's handshake), each with
	// the held checkpoint and the request, once however often it is sent.
	if res := tw.w.AddCheckpoint(ctx, rollback); res.Status != 400 {
		t.Fatalf("rollback again: %d %v", res.Status, res.Err)
	}
	ev := evidence(t, tw.dir)
	if len(ev) != 2 {
		t.Fatalf("%d evidence files, want 2: %q", len(ev), ev)
	}
	for _, e := range ev {
		if !strings.Contains(e, "--- held checkpoint\n"+origin+"\n") || !strings.Contains(e, "--- request\nold ") {
			t.Fatalf("evidence lacks a checkpoint: %q", e)
		}
	}

	// The state survives a restart: a new witness on the directory holds 5.
	tw2 := newWitness(t, tw.dir, c, logVerifier(t, s))
	if res = tw2.w.AddCheckpoint(ctx, request(t, s, 3, cp5)); res.Status != 409 || string(res.Body) != "5\n" {
		t.Fatalf("after restart: %d %q", res.Status, res.Body)
	}
}

func splitView(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	for _, mf := range mfs {
		if mf.GetName() == "stele_witness_split_view_total" {
			for _, m := range mf.GetMetric() {
				total.Add(m.GetCounter().GetValue())
			}
		}
	}
	return total
}

// TestForkedLogRefused: a copy of the data directory that diverges after N
// records, signed with the same key, is refused by a witness that cosigned
// the original, and the refusal raises the split-view alarm.
func TestForkedLogRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	grow(t, s, "common", 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	forkDir := t.TempDir()
	if err := os.CopyFS(forkDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(forkDir, "LOCK"))
	a := openStore(t, dir)
	b := openStore(t, forkDir)
	if a.Keys().VerifierKey != b.Keys().VerifierKey {
		t.Fatal("fork has another key")
	}
	acp := grow(t, a, "honest", 3)
	bcp := grow(t, b, "forged", 3)
	if bytes.Equal(acp.Root, bcp.Root) || acp.Size != bcp.Size {
		t.Fatalf("fork did not diverge: sizes %d %d", acp.Size, bcp.Size)
	}
	c, _ := newCosigner(t, "w.test")
	tw := newWitness(t, t.TempDir(), c, logVerifier(t, a))
	if res := tw.w.AddCheckpoint(ctx, request(t, a, 0, acp)); res.Status != 200 {
		t.Fatalf("honest: %d %v", res.Status, res.Err)
	}
	// Same size, other root: 409, alarm.
	res := tw.w.AddCheckpoint(ctx, request(t, b, acp.Size, bcp))
	if res.Status != 409 || !errors.Is(res.Err, witness.ErrInconsistent) {
		t.Fatalf("fork at the same size: %d %v", res.Status, res.Err)
	}
	// Larger, with the fork's own proof from the held size: 422, alarm.
	bcp2 := grow(t, b, "forged-more", 2)
	res = tw.w.AddCheckpoint(ctx, request(t, b, acp.Size, bcp2))
	if res.Status != 422 || !errors.Is(res.Err, witness.ErrInconsistent) {
		t.Fatalf("larger fork: %d %v", res.Status, res.Err)
	}
	if n := testutil.ToFloat64(splitView(t, tw.reg)); n != 2 {
		t.Fatalf("split view alarm %v, want 2", n)
	}
	held, err := tw.w.Latest(origin)
	if err != nil || held.Size != acp.Size || !bytes.Equal(held.Root, acp.Root) {
		t.Fatalf("witness holds %+v, %v; want the honest checkpoint", held, err)
	}
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
