package logstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

const replicaOrigin = "test.example/log"

// openReplica opens a replica store in dir holding the key skey/vkey.
func openReplica(t testing.TB, dir, skey, vkey string) *logstore.Store {
	t.Helper()
	kd := filepath.Join(dir, "keys")
	if err := os.MkdirAll(kd, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kd, "checkpoint.skey"), []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kd, "checkpoint.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: replicaOrigin, Replica: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sequence encodes records from seq first on, as a cluster writer does, and
// signs the checkpoint after them.
func sequence(t testing.TB, s *logstore.Store, signer note.Signer, first uint64, n int) ([][]byte, []byte) {
	t.Helper()
	raws := make([][]byte, n)
	for i := range raws {
		r := testRecord(int(first) + i)
		r.Seq, r.RecordedAt = first+uint64(i), time.Unix(1700000000, 0).UTC()
		raws[i] = record.Encode(r)
	}
	root, err := s.RootAfter(first, raws)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := stele.SignCheckpoint(signer, first+uint64(n), root)
	if err != nil {
		t.Fatal(err)
	}
	return raws, cp.Note
}

// Two replicas fed the same sequenced batches hold the same records.log,
// byte for byte, and adopt the writer's checkpoint; a batch out of order,
// one whose checkpoint another key signed and one whose bytes do not give
// the signed root are refused with nothing stored.
func TestAppendSequenced(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, replicaOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	a, b := openReplica(t, t.TempDir(), skey, vkey), openReplica(t, t.TempDir(), skey, vkey)
	ctx := context.Background()
	for _, n := range []int{3, 1, 5} {
		raws, cp := sequence(t, a, signer, a.Size(), n)
		for _, s := range []*logstore.Store{a, b} {
			res, err := s.AppendSequenced(ctx, raws, cp)
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Seq != s.Size()-uint64(n) || res[0].ID == "" {
				t.Fatalf("result %+v", res[0])
			}
		}
	}
	if _, err := a.Append(ctx, []*record.Record{testRecord(99)}); !errors.Is(err, logstore.ErrReplica) {
		t.Fatalf("Append on a replica: %v, want ErrReplica", err)
	}
	raws, cp := sequence(t, a, signer, a.Size(), 2)
	if _, err := a.AppendSequenced(ctx, raws[1:], cp); !errors.Is(err, logstore.ErrOutOfSequence) {
		t.Fatalf("batch starting past the log's end: %v, want ErrOutOfSequence", err)
	}
	otherS, _, _ := note.GenerateKey(rand.Reader, replicaOrigin)
	other, _ := note.NewSigner(otherS)
	_, forged := sequence(t, a, other, a.Size(), 2)
	if _, err := a.AppendSequenced(ctx, raws, forged); !errors.Is(err, logstore.ErrTampered) {
		t.Fatalf("checkpoint by another key: %v, want ErrTampered", err)
	}
	// Still a valid record, so only the root can tell.
	changed := bytes.Replace(bytes.Clone(raws[1]), []byte("customers"), []byte("customerz"), 1)
	if _, err := a.AppendSequenced(ctx, [][]byte{raws[0], changed}, cp); !errors.Is(err, logstore.ErrTampered) || !strings.Contains(fmt.Sprint(err), "root") {
		t.Fatalf("bytes that do not give the signed root: %v, want ErrTampered naming the root", err)
	}
	if a.Size() != 9 {
		t.Fatalf("refused batches changed the log: size %d, want 9", a.Size())
	}
	for _, s := range []*logstore.Store{a, b} {
		cp, err := s.Checkpoint(ctx)
		if err != nil || cp.Size != 9 {
			t.Fatalf("adopted checkpoint %+v, %v; want the writer's for size 9", cp, err)
		}
	}
	a.Close()
	b.Close()
	ra, _ := os.ReadFile(filepath.Join(a.Dir(), "records.log"))
	rb, _ := os.ReadFile(filepath.Join(b.Dir(), "records.log"))
	if len(ra) == 0 || !bytes.Equal(ra, rb) {
		t.Fatalf("records.log of the two replicas differ (%d and %d bytes)", len(ra), len(rb))
	}
	if _, err := logstore.VerifyDir(ctx, a.Dir(), logstore.VerifyOptions{}); err != nil {
		t.Fatalf("verify a replica: %v", err)
	}
}

// A replica that has applied nothing yet still serves a checkpoint (the
// empty tree's, the very note the writer would sign), so a reader asking a
// node that joined an empty cluster, or one whose follower lags, gets an
// answer instead of nothing.
func TestEmptyReplicaHasCheckpoint(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, replicaOrigin)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	s := openReplica(t, t.TempDir(), skey, vkey)
	for name, cp := range map[string]*stele.Checkpoint{"LatestCheckpoint": s.LatestCheckpoint(), "Checkpoint": mustCheckpoint(t, s)} {
		if cp == nil {
			t.Fatalf("%s of an empty replica is nil", name)
		}
		if cp.Size != 0 {
			t.Fatalf("%s of an empty replica has size %d", name, cp.Size)
		}
		if _, err := note.Open(cp.Note, note.VerifierList(v)); err != nil {
			t.Fatalf("%s of an empty replica: %v", name, err)
		}
	}
}

func mustCheckpoint(t *testing.T, s *logstore.Store) *stele.Checkpoint {
	t.Helper()
	cp, err := s.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// BenchmarkAppendSequenced stores sequenced batches of 100 records, the
// replica's path, next to BenchmarkAppend's single-node one.
func BenchmarkAppendSequenced(b *testing.B) {
	skey, vkey, err := note.GenerateKey(rand.Reader, replicaOrigin)
	if err != nil {
		b.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	s := openReplica(b, b.TempDir(), skey, vkey)
	ctx := context.Background()
	for b.Loop() {
		raws, cp := sequence(b, s, signer, s.Size(), 100)
		if _, err := s.AppendSequenced(ctx, raws, cp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Size())/b.Elapsed().Seconds(), "records/s")
}
