package witness_test

// Interop with implementations no one here wrote: transparency-dev's own
// witness cosigning Stele's checkpoints, Stele's witness cosigning a log
// written by transparency-dev/tessera, and every cosignature checked with
// filippo.io/torchwood and transparency-dev/formats as well as ours.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"
	"time"

	"filippo.io/torchwood"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	tclient "github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"github.com/transparency-dev/witness/persistence/inmemory"
	tdwitness "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/witness"
)

// interopKey makes a witness key from a known seed, so the same key can be
// handed to torchwood (which takes a crypto.Signer) and to the others
// (which take the key string).
func interopKey(t *testing.T, name string) (skey, vkey string, tw *torchwood.CosignatureVerifier) {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := witness.GenerateKey(bytes.NewReader(seed), name)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := torchwood.NewCosignatureSigner(name, ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	if ts.Verifier().String() != vkey {
		t.Fatalf("torchwood encodes the verifier key as %s, Stele as %s", ts.Verifier().String(), vkey)
	}
	return skey, vkey, ts.Verifier()
}

// openWithAll checks the cosigned note with torchwood's, formats' and
// Stele's verifiers of the witness key, each alongside the log's key.
func openWithAll(t *testing.T, msg []byte, logV note.Verifier, vkey string, tw *torchwood.CosignatureVerifier) {
	t.Helper()
	fv, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := witness.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]note.Verifier{"torchwood": tw, "formats": fv, "stele": sv} {
		n, err := note.Open(msg, note.VerifierList(logV, v))
		if err != nil {
			t.Fatalf("%s: cosigned note does not open: %v", name, err)
		}
		found := false
		for _, s := range n.Sigs {
			found = found || (s.Name == v.Name() && s.Hash == v.KeyHash())
		}
		if !found {
			t.Fatalf("%s: no verified cosignature among %+v", name, n.Sigs)
		}
	}
}

func TestInteropTransparencyDevWitnessCosignsStele(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	lv := logVerifier(t, s)
	skey, vkey, tw := interopKey(t, "tdwitness.test")
	fs, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tdwitness.New(ctx, tdwitness.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{fs},
		VerifierForLog: func(_ context.Context, o string) (note.Verifier, bool, error) {
			return lv, o == lv.Name(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", tdwitness.NewHTTPHandler(w).AddCheckpoint)
	srv := serve(t, mux)
	p, err := witness.ParsePolicy([]byte("witness td " + vkey + " " + srv.URL + "\nquorum td\n"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := witness.NewSubmitter(witness.SubmitterConfig{Policy: p, Log: s, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cp1 := grow(t, s, "a", 4)
	if !sub.Round(ctx, cp1) {
		t.Fatal("transparency-dev witness did not cosign the first checkpoint")
	}
	cp2 := grow(t, s, "b", 5)
	if !sub.Round(ctx, cp2) {
		t.Fatal("transparency-dev witness did not cosign the second checkpoint (consistency proof from 4 to 9)")
	}
	got := sub.Witnessed()
	if got.Size != 9 {
		t.Fatalf("witnessed size %d, want 9", got.Size)
	}
	openWithAll(t, got.Note, lv, vkey, tw)
	if _, err := p.Verify(got.Note); err != nil {
		t.Fatal(err)
	}

	// A fork under the same key: same size, another root (409 from a
	// witness that holds size 9), and a larger tree with a proof that
	// does not extend what it holds (422).
	fork, err := stele.SignCheckpoint(s.Keys().Signer, 9, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	_, err = witness.Submit(ctx, http.DefaultClient, &p.Witnesses[0], &witness.AddCheckpoint{OldSize: 9, Checkpoint: fork.Note})
	// C2SP tlog-witness says 409 here; transparency-dev's witness answers
	// 422. Either is a refusal, and Stele's submitter alarms on both.
	var conflict *witness.ConflictError
	if !(errors.As(err, &conflict) && conflict.Size == 9) && !errors.Is(err, witness.ErrWitnessBadProof) {
		t.Fatalf("fork at the same size: %v", err)
	}
	bigger, err := stele.SignCheckpoint(s.Keys().Signer, 12, bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	proof, err := s.ConsistencyProof(4, 9) // a real proof, of other sizes
	if err != nil {
		t.Fatal(err)
	}
	_, err = witness.Submit(ctx, http.DefaultClient, &p.Witnesses[0], &witness.AddCheckpoint{OldSize: 9, Proof: proof, Checkpoint: bigger.Note})
	if !errors.Is(err, witness.ErrWitnessBadProof) {
		t.Fatalf("larger fork: %v", err)
	}
}

func TestInteropSteleWitnessCosignsTessera(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	lskey, lvkey, err := note.GenerateKey(rand.Reader, "tessera.test/log")
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := note.NewSigner(lskey)
	lv, _ := note.NewVerifier(lvkey)
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(ls).WithBatching(64, 10*time.Millisecond).WithCheckpointInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)
	add := func(n int) []byte {
		var last tessera.IndexFuture
		for i := range n {
			last = appender.Add(ctx, tessera.NewEntry([]byte{byte(i), byte(n)}))
		}
		_, cp, err := awaiter.Await(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}

	wskey, vkey2, tw2 := interopKey(t, "stele-witness.test")
	c, err := witness.NewCosigner(wskey, nil)
	if err != nil {
		t.Fatal(err)
	}
	tw0 := newWitness(t, t.TempDir(), c, lv)

	cp1 := add(5)
	open1, err := stele.OpenCheckpoint(cp1, lv)
	if err != nil {
		t.Fatalf("tessera's checkpoint under Stele's strict parser: %v", err)
	}
	// Over HTTP, as `stele witness` serves it.
	srv := serve(t, tw0.w.Handler())
	sv, err := witness.NewVerifier(vkey2)
	if err != nil {
		t.Fatal(err)
	}
	m := &witness.Member{Name: "stele", Verifier: sv, VerifierKey: vkey2, URL: srv.URL}
	lines, err := witness.Submit(ctx, http.DefaultClient, m, &witness.AddCheckpoint{Checkpoint: cp1})
	if err != nil {
		t.Fatalf("first tessera checkpoint: %v", err)
	}
	openWithAll(t, append(bytes.Clone(cp1), lines...), lv, vkey2, tw2)

	cp2 := add(7)
	open2, err := stele.OpenCheckpoint(cp2, lv)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := tclient.NewProofBuilder(ctx, open2.Size, tclient.FileFetcher{Root: dir}.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := pb.ConsistencyProof(ctx, open1.Size, open2.Size)
	if err != nil {
		t.Fatal(err)
	}
	lines, err = witness.Submit(ctx, http.DefaultClient, m, &witness.AddCheckpoint{OldSize: open1.Size, Proof: proof, Checkpoint: cp2})
	if err != nil {
		t.Fatalf("second tessera checkpoint (%d -> %d): %v", open1.Size, open2.Size, err)
	}
	openWithAll(t, append(bytes.Clone(cp2), lines...), lv, vkey2, tw2)
	// Tessera's older checkpoint, now a rollback, is refused.
	res := tw0.w.AddCheckpoint(ctx, (&witness.AddCheckpoint{OldSize: open2.Size, Proof: nil, Checkpoint: cp1}).Marshal())
	if res.Status != 400 {
		t.Fatalf("rollback to the first checkpoint: %d %v", res.Status, res.Err)
	}
}
