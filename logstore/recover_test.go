package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// openQuiet opens a store that issues checkpoints only when asked (and on
// open and close), so a test controls what the latest checkpoint covers.
func openQuiet(t *testing.T, dir string, hook logstore.Hook) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, Hook: hook})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func openErr(dir string) error {
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin})
	if err == nil {
		s.Close()
	}
	return err
}

func mustVerify(t *testing.T, dir string, records uint64) *logstore.VerifyReport {
	t.Helper()
	rep, err := verify(dir)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Records != records {
		t.Fatalf("verified %d records, want %d", rep.Records, records)
	}
	return rep
}

// snapshot is what a client could have learnt from a store before a crash.
type snapshot struct {
	size      uint64
	root      []byte
	incl      [][]byte // inclusion proof of seq 77 in the tree of size
	cons      [][]byte // consistency proof from 100 to size
	leafOf77  []byte
	rootAt100 []byte
}

func takeSnapshot(t *testing.T, s *logstore.Store) snapshot {
	t.Helper()
	var sn snapshot
	sn.size, sn.root = s.Root()
	var err error
	if sn.incl, err = s.InclusionProof(77, sn.size); err != nil {
		t.Fatal(err)
	}
	if sn.cons, err = s.ConsistencyProof(100, sn.size); err != nil {
		t.Fatal(err)
	}
	if sn.leafOf77, err = s.LeafHash(77); err != nil {
		t.Fatal(err)
	}
	if sn.rootAt100, err = s.RootAt(100); err != nil {
		t.Fatal(err)
	}
	return sn
}

// derivedFiles reads records.idx and every tree level.
func derivedFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"records.idx": readFile(t, filepath.Join(dir, "records.idx"))}
	ents, err := os.ReadDir(filepath.Join(dir, "tree"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		out["tree/"+e.Name()] = readFile(t, filepath.Join(dir, "tree", e.Name()))
	}
	return out
}

func (sn snapshot) check(t *testing.T, s *logstore.Store) {
	t.Helper()
	got := takeSnapshot(t, s)
	if got.size != sn.size || !bytes.Equal(got.root, sn.root) {
		t.Fatalf("after recovery size %d root %x, want %d %x", got.size, got.root, sn.size, sn.root)
	}
	if !slices.EqualFunc(got.incl, sn.incl, bytes.Equal) || !slices.EqualFunc(got.cons, sn.cons, bytes.Equal) {
		t.Fatal("proofs differ after recovery")
	}
	if !bytes.Equal(got.leafOf77, sn.leafOf77) || !bytes.Equal(got.rootAt100, sn.rootAt100) {
		t.Fatal("leaf hash or historic root differs after recovery")
	}
	raw, err := s.ReadRaw(77)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 77, got.size, rfc6962.DefaultHasher.HashLeaf(raw), got.incl, got.root); err != nil {
		t.Fatalf("inclusion after recovery: %v", err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 100, got.size, got.cons, got.rootAt100, got.root); err != nil {
		t.Fatalf("consistency after recovery: %v", err)
	}
}

func quarantined(t *testing.T, dir string) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "quarantine"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		out = append(out, readFile(t, filepath.Join(dir, "quarantine", e.Name())))
	}
	return out
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverTornTail(t *testing.T) {
	const n = 40
	next := testRecord(n)
	next.Seq = n
	whole := makeFrame(record.Encode(next))
	zeroed := bytes.Clone(whole)
	clear(zeroed[len(zeroed)-16:]) // the last sectors never reached the disk
	for _, tc := range []struct {
		name string
		tail []byte
		// tornForVerify: VerifyDir run before the restart reports the tail
		// as TornTail. VerifyDir and Open apply the same rule: any bad final
		// frame past the latest checkpoint that no good frame follows is an
		// interrupted write.
		tornForVerify bool
	}{
		{"three-bytes", []byte{1, 2, 3}, true},
		{"header-only", whole[:8], true},
		{"half-frame", whole[:len(whole)/2], true},
		{"all-but-one-byte", whole[:len(whole)-1], true},
		{"whole-frame-zeroed-tail", zeroed, true},
		{"garbage", bytes.Repeat([]byte{0xab}, 100), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			appendN(t, s, 0, 25)
			appendN(t, s, 25, n-25)
			size, root := s.Root()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "records.log")
			good := readFile(t, path)
			appendBytes(t, path, tc.tail)

			rep, err := verify(dir)
			if tc.tornForVerify {
				if err != nil || rep.TornTail != int64(len(tc.tail)) || rep.Records != n {
					t.Fatalf("verify before restart: %v %+v, want torn tail of %d", err, rep, len(tc.tail))
				}
			} else {
				var ve *logstore.VerifyError
				if !errors.As(err, &ve) || ve.Seq != n {
					t.Fatalf("verify before restart: %v, want damage at seq %d", err, n)
				}
			}

			s = openStore(t, dir)
			if s.Size() != n {
				t.Fatalf("size %d after recovery, want %d", s.Size(), n)
			}
			if sz, r := s.Root(); sz != size || !bytes.Equal(r, root) {
				t.Fatal("root changed by recovery")
			}
			if got := readFile(t, path); !bytes.Equal(got, good) {
				t.Fatalf("records.log is %d bytes after recovery, want the %d good ones", len(got), len(good))
			}
			q := quarantined(t, dir)
			if len(q) != 1 || !bytes.Equal(q[0], tc.tail) {
				t.Fatalf("quarantine holds %d files, want the cut tail", len(q))
			}
			appendN(t, s, n, 1) // asserts seq n
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rep = mustVerify(t, dir, n+1)
			if rep.Latest.Size != n+1 {
				t.Fatalf("latest checkpoint size %d", rep.Latest.Size)
			}
		})
	}
}

// crashImage copies a running store's directory: what a crash at this
// instant would leave (every write already acknowledged is on disk).
func crashImage(t *testing.T, s *logstore.Store) string {
	t.Helper()
	dst := t.TempDir()
	copyDir(t, s.Dir(), dst)
	return dst
}

// TestRecoverAfterCrash reopens images of a store that crashed with 50
// acknowledged records past its latest checkpoint.
func TestRecoverAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir, nil)
	appendN(t, s, 0, 100)
	if _, err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 100, 30)
	appendN(t, s, 130, 20)
	if cp := s.LatestCheckpoint(); cp.Size != 100 {
		t.Fatalf("latest checkpoint %d, want 100", cp.Size)
	}
	want := takeSnapshot(t, s)
	image := crashImage(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	frames := recordFrames(t, image)

	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		size    uint64 // 0: want ErrTampered from Open
		cutTail bool
	}{
		{"as-is", func(*testing.T, string) {}, 150, false},
		{"unsynced-derived-files-lost", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "records.idx"), 100*8)
			os.Truncate(filepath.Join(dir, "tree", "L00"), 100*32)
			os.Truncate(filepath.Join(dir, "tree", "L01"), 10*32)
		}, 150, false},
		{"garbage-in-derived-files", func(t *testing.T, dir string) {
			appendBytes(t, filepath.Join(dir, "tree", "L00"), bytes.Repeat([]byte{7}, 32*9))
			appendBytes(t, filepath.Join(dir, "records.idx"), bytes.Repeat([]byte{7}, 8*9))
		}, 150, false},
		{"torn-write-after-acknowledged", func(t *testing.T, dir string) {
			appendBytes(t, filepath.Join(dir, "records.log"), frames[3].payload[:20])
		}, 150, true},
		// A damaged record past the checkpoint with a good record after it
		// is never cut: that would destroy acknowledged records.
		{"damaged-uncheckpointed-record", func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, "records.log"), frames[120].off+30, 0x01)
		}, 0, false},
		// The same damage to the final record: before batch trailers it
		// was indistinguishable from a torn write and cut; now the trailer
		// after it shows its batch was written whole, so it is damage.
		{"damaged-final-record", func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, "records.log"), frames[149].off+30, 0x01)
		}, 0, false},
		// A batch whose trailer never reached the disk (the crash came
		// between the records and the trailer) is cut whole, quarantined.
		{"batch-without-trailer", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "records.log"), frames[149].end())
		}, 130, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, image, dir)
			tc.damage(t, dir)
			if tc.size == 0 {
				if err := openErr(dir); !errors.Is(err, logstore.ErrTampered) {
					t.Fatalf("open: %v, want ErrTampered", err)
				}
				return
			}
			s := openQuiet(t, dir, nil)
			if s.Size() != tc.size {
				t.Fatalf("size %d, want %d", s.Size(), tc.size)
			}
			if tc.size == 150 {
				want.check(t, s)
			}
			if cp := s.LatestCheckpoint(); cp.Size != tc.size {
				t.Fatalf("open issued no checkpoint for the recovered records: latest %d", cp.Size)
			}
			if got := len(quarantined(t, dir)); (got == 1) != tc.cutTail || got > 1 {
				t.Fatalf("%d quarantined tails", got)
			}
			appendN(t, s, int(tc.size), 3)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, dir, tc.size+3)
		})
	}
}

func TestRecoverRebuildsDerivedFiles(t *testing.T) {
	const n = 300
	base := t.TempDir()
	buildCheckpointedStore(t, base, verifyBatches)
	s := openStore(t, base)
	want := takeSnapshot(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantFiles := derivedFiles(t, base)

	rm := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	trunc := func(name string, size int64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, name), size); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"idx-deleted", rm("records.idx")},
		{"idx-empty", trunc("records.idx", 0)},
		{"idx-half", trunc("records.idx", 8*150)},
		{"idx-torn-entry", trunc("records.idx", 8*299+5)},
		{"idx-one-short", trunc("records.idx", 8*299)},
		{"tree-deleted", rm("tree")},
		{"L00-truncated", trunc("tree/L00", 32*200)},
		{"L00-deleted", rm("tree/L00")},
		{"L02-deleted", rm("tree/L02")},
		{"top-level-deleted", rm("tree/L08")},
		{"all-derived-deleted", func(t *testing.T, dir string) {
			rm("tree")(t, dir)
			rm("records.idx")(t, dir)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Rebuilt derived files are byte for byte the originals.
			dir := t.TempDir()
			copyDir(t, base, dir)
			tc.damage(t, dir)
			s := openStore(t, dir)
			want.check(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, dir, n)
			got := derivedFiles(t, dir)
			for name, b := range wantFiles {
				if !bytes.Equal(got[name], b) {
					t.Errorf("%s: %d bytes after rebuild, want %d identical bytes", name, len(got[name]), len(b))
				}
			}

			// The store that did the rebuild keeps growing correctly: new
			// records prove included and the files verify.
			dir = t.TempDir()
			copyDir(t, base, dir)
			tc.damage(t, dir)
			s = openStore(t, dir)
			for _, seq := range []uint64{0, 150, 299} {
				r, err := s.Read(seq)
				if err != nil || r.ID != fmt.Sprintf("id-%d", seq) {
					t.Fatalf("read %d: %v %+v", seq, err, r)
				}
			}
			appendN(t, s, n, n)
			size, root := s.Root()
			for _, seq := range []uint64{0, 299, 300, 301, 450, 511, 512, 599} {
				raw, err := s.ReadRaw(seq)
				if err != nil {
					t.Fatal(err)
				}
				p, err := s.InclusionProof(seq, size)
				if err != nil {
					t.Fatal(err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, size, rfc6962.DefaultHasher.HashLeaf(raw), p, root); err != nil {
					t.Fatalf("inclusion of seq %d after rebuild and growth: %v", seq, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, dir, 2*n)
			for name, b := range derivedFiles(t, dir) {
				var level int
				if _, err := fmt.Sscanf(name, "tree/L%02d", &level); err == nil {
					if want := (2 * n >> level) * 32; len(b) != want {
						t.Errorf("%s holds %d bytes for %d leaves, want %d", name, len(b), 2*n, want)
					}
				}
			}
			s = openStore(t, dir)
			defer s.Close()
			if sz, r := s.Root(); sz != size || !bytes.Equal(r, root) {
				t.Fatal("root differs after another reopen")
			}
		})
	}
}

// TestRecoverDetectsDamage covers damage to checkpointed records. Open
// checks records.log only where its derived files do not vouch for it: the
// tail, or everything when records.idx is gone. Damage in the middle of an
// intact store is left to VerifyDir and to readers.
func TestRecoverDetectsDamage(t *testing.T) {
	base := t.TempDir()
	buildCheckpointedStore(t, base, verifyBatches)
	frames := recordFrames(t, base)
	clone := func(t *testing.T) string {
		dir := t.TempDir()
		copyDir(t, base, dir)
		return dir
	}
	recPath := func(dir string) string { return filepath.Join(dir, "records.log") }

	t.Run("flip-middle-record-idx-intact", func(t *testing.T) {
		// Today Open does not see it (records.idx and the tree vouch for
		// the checkpointed prefix without rereading it); Read and VerifyDir do.
		dir := clone(t)
		flipByte(t, recPath(dir), frames[150].off+40, 0x01)
		s := openStore(t, dir)
		if s.Size() != 300 {
			t.Fatalf("size %d", s.Size())
		}
		if _, err := s.Read(150); !errors.Is(err, logstore.ErrTampered) {
			t.Fatalf("read damaged seq 150: %v, want ErrTampered", err)
		}
		if _, err := s.ReadRaw(150); !errors.Is(err, logstore.ErrTampered) {
			t.Fatalf("read raw damaged seq 150: %v, want ErrTampered", err)
		}
		for _, seq := range []uint64{149, 151} {
			if _, err := s.Read(seq); err != nil {
				t.Fatalf("read %d: %v", seq, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wantVerifyError(t, dir, 150, "records.log")
	})
	t.Run("flip-middle-record-idx-lost", func(t *testing.T) {
		dir := clone(t)
		flipByte(t, recPath(dir), frames[150].off+40, 0x01)
		os.Remove(filepath.Join(dir, "records.idx"))
		err := openErr(dir)
		if !errors.Is(err, logstore.ErrTampered) || !strings.Contains(err.Error(), "seq 150") {
			t.Fatalf("open: %v, want ErrTampered naming seq 150", err)
		}
	})
	t.Run("flip-last-record", func(t *testing.T) {
		dir := clone(t)
		flipByte(t, recPath(dir), frames[299].off+40, 0x01)
		err := openErr(dir)
		if !errors.Is(err, logstore.ErrTampered) || !strings.Contains(err.Error(), "seq 299") {
			t.Fatalf("open: %v, want ErrTampered naming seq 299", err)
		}
		if got := len(quarantined(t, dir)); got != 0 {
			t.Fatal("a checkpointed record was cut")
		}
	})
	t.Run("forged-record-valid-checksum", func(t *testing.T) {
		dir := clone(t)
		forged := slices.Clone(frames)
		p := bytes.Clone(forged[150].payload)
		i := bytes.Index(p, []byte(`"n150"`))
		p[i+1] = 'X'
		forged[150].payload = p
		writeFile(t, recPath(dir), joinFrames(forged))

		// With the tree intact Open does not reread the record, and Read
		// serves it (its frame is well formed) ...
		s := openStore(t, dir)
		raw, err := s.ReadRaw(150)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		// ... but a client checking inclusion of what it was served against
		// the signed checkpoint sees the forgery.
		cp := s.LatestCheckpoint()
		pr, err := s.InclusionProof(150, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 150, cp.Size, rfc6962.DefaultHasher.HashLeaf(raw), pr, cp.Root); err == nil {
			t.Fatal("forged record proved included in the signed checkpoint")
		}
		s.Close()
		wantVerifyError(t, dir, 150, "tree/L00")

		// Once the tree must be rebuilt, Open compares it with the checkpoint.
		os.RemoveAll(filepath.Join(dir, "tree"))
		if err := openErr(dir); !errors.Is(err, logstore.ErrTampered) {
			t.Fatalf("open with rebuilt tree: %v, want ErrTampered", err)
		}
	})
	for _, tc := range []struct {
		name string
		cut  int64
	}{
		{"truncated-mid-frame-below-checkpoint", frames[250].off + 20},
		{"truncated-at-boundary-below-checkpoint", frames[250].off},
		{"truncated-one-record", frames[299].off},
		{"truncated-far-below-checkpoint", frames[20].off}, // past the 64 records.idx hints tried
		{"truncated-to-empty", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := clone(t)
			if err := os.Truncate(recPath(dir), tc.cut); err != nil {
				t.Fatal(err)
			}
			before := readFile(t, filepath.Join(dir, "checkpoints.log"))
			err := openErr(dir)
			if !errors.Is(err, logstore.ErrTampered) {
				t.Fatalf("open: %v, want ErrTampered", err)
			}
			// A refused open changes nothing the evidence depends on.
			if st, _ := os.Stat(recPath(dir)); st.Size() != tc.cut {
				t.Fatalf("records.log is %d bytes after a refused open, was %d", st.Size(), tc.cut)
			}
			if !bytes.Equal(readFile(t, filepath.Join(dir, "checkpoints.log")), before) {
				t.Fatal("checkpoints.log changed by a refused open")
			}
		})
	}

	cpPath := func(dir string) string { return filepath.Join(dir, "checkpoints.log") }
	t.Run("checkpoint-note-flipped", func(t *testing.T) {
		for _, which := range []int{0, 3, 6} {
			dir := clone(t)
			f := checkpointFrames(t, dir)[which]
			flipByte(t, cpPath(dir), f.off+8+int64(len(f.payload))/2, 0x02)
			if err := openErr(dir); !errors.Is(err, logstore.ErrTampered) {
				t.Fatalf("checkpoint #%d flipped: open: %v, want ErrTampered", which, err)
			}
		}
	})
	t.Run("checkpoint-length-flipped", func(t *testing.T) {
		// Must not be taken for a torn final frame and cut, which would
		// destroy every later checkpoint.
		for _, which := range []int{0, 3, 6} {
			dir := clone(t)
			f := checkpointFrames(t, dir)[which]
			flipByte(t, cpPath(dir), f.off+1, 0x40)
			before := readFile(t, cpPath(dir))
			if err := openErr(dir); !errors.Is(err, logstore.ErrTampered) {
				t.Fatalf("checkpoint #%d length flipped: open: %v, want ErrTampered", which, err)
			}
			if !bytes.Equal(readFile(t, cpPath(dir)), before) {
				t.Fatalf("checkpoint #%d length flipped: checkpoints.log was changed", which)
			}
		}
	})
	t.Run("latest-checkpoint-by-another-key", func(t *testing.T) {
		dir := clone(t)
		skey, _ := newNoteKey(t)
		frames := checkpointFrames(t, dir)
		cp, err := stele.OpenCheckpoint(frames[len(frames)-1].payload, mustVerifier(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		frames[len(frames)-1].payload = signWith(t, skey, cp.Size, cp.Root)
		writeFile(t, cpPath(dir), joinFrames(frames))
		if err := openErr(dir); !errors.Is(err, logstore.ErrTampered) {
			t.Fatalf("open: %v, want ErrTampered", err)
		}
	})
	t.Run("torn-final-checkpoint", func(t *testing.T) {
		dir := clone(t)
		good := readFile(t, cpPath(dir))
		extra := makeFrame(signWith(t, ownSigningKey(t, dir), 300, make([]byte, 32)))
		appendBytes(t, cpPath(dir), extra[:len(extra)-10])
		s := openStore(t, dir)
		if s.Size() != 300 || s.LatestCheckpoint().Size != 300 {
			t.Fatalf("size %d latest %d", s.Size(), s.LatestCheckpoint().Size)
		}
		s.Close()
		if !bytes.Equal(readFile(t, cpPath(dir)), good) {
			t.Fatal("torn final checkpoint not cut")
		}
		mustVerify(t, dir, 300)
	})
}

// TestRecoverCheckpointsConsistent checks that every checkpoint a store
// ever issued, across restarts and a crash, is consistent with every later one.
func TestRecoverCheckpointsConsistent(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir, nil)
	appendN(t, s, 0, 10)
	s.Checkpoint(context.Background())
	appendN(t, s, 10, 20)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openQuiet(t, dir, nil)
	if got := s.LatestCheckpoint().Size; got != 30 {
		t.Fatalf("latest checkpoint after reopen %d, want 30", got)
	}
	appendN(t, s, 30, 7)
	s.Checkpoint(context.Background())
	appendN(t, s, 37, 64)
	// Crash with 64 records past the latest checkpoint.
	image := crashImage(t, s)
	s.Close()
	s = openQuiet(t, image, nil)
	if got := s.LatestCheckpoint().Size; got != 101 {
		t.Fatalf("reopen after crash issued checkpoint %d, want 101", got)
	}
	appendN(t, s, 101, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openQuiet(t, image, nil)
	defer s.Close()

	var cps []*stele.Checkpoint
	for _, f := range checkpointFrames(t, image) {
		cp, err := stele.OpenCheckpoint(f.payload, s.Keys().Verifier)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	var sizes []uint64
	for _, cp := range cps {
		sizes = append(sizes, cp.Size)
	}
	if want := []uint64{0, 10, 30, 37, 101, 102}; fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("checkpoint sizes %v, want %v", sizes, want)
	}
	for i, a := range cps {
		root, err := s.RootAt(a.Size)
		if err != nil || !bytes.Equal(root, a.Root) {
			t.Fatalf("checkpoint %d: root at size %d is %x (%v), signed %x", i, a.Size, root, err, a.Root)
		}
		for _, b := range cps[i:] {
			p, err := s.ConsistencyProof(a.Size, b.Size)
			if err != nil {
				t.Fatal(err)
			}
			if a.Size == 0 {
				// Every tree extends the empty one; merkle v0.0.3 refuses
				// to verify a proof from size 0 at all.
				if len(p) != 0 {
					t.Fatalf("proof from the empty tree has %d hashes", len(p))
				}
				continue
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, p, a.Root, b.Root); err != nil {
				t.Fatalf("checkpoints of sizes %d and %d are inconsistent: %v", a.Size, b.Size, err)
			}
		}
	}
	mustVerify(t, image, 102)
}

func TestOpenOriginMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 3)
	s.Close()

	for _, origin := range []string{"other.example/log", ""} {
		_, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: origin})
		if err == nil {
			t.Fatalf("open with origin %q succeeded", origin)
		}
		shown := origin
		if shown == "" {
			shown = "stele.local/log" // the default
		}
		if msg := err.Error(); !strings.Contains(msg, testOrigin) || !strings.Contains(msg, shown) || !strings.Contains(msg, dir) {
			t.Errorf("error %q does not name the directory and both origins", msg)
		}
		if errors.Is(err, logstore.ErrTampered) {
			t.Errorf("origin mismatch reported as tampering: %v", err)
		}
	}
	s = openStore(t, dir)
	if s.Size() != 3 {
		t.Fatalf("size %d", s.Size())
	}
	s.Close()

	for name, want := range map[string]os.FileMode{
		"keys":                 0o700,
		"keys/checkpoint.skey": 0o600,
		"keys/checkpoint.vkey": 0o644,
	} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %o, want %o", name, st.Mode().Perm(), want)
		}
	}
	vkey, err := logstore.LoadVerifierKey(dir)
	if err != nil || !strings.HasPrefix(vkey, testOrigin+"+") {
		t.Fatalf("verifier key %q (%v)", vkey, err)
	}
	if skey := ownSigningKey(t, dir); strings.Contains(vkey, skey) || !strings.HasPrefix(skey, "PRIVATE+KEY+"+testOrigin+"+") {
		t.Fatal("unexpected signing key format")
	}
}

func openIndex(t *testing.T, dir string) *index.Index {
	t.Helper()
	ix, err := index.Open(dir, nil)
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	return ix
}

func TestOpenCatchesUpIndex(t *testing.T) {
	dir := t.TempDir()
	ixDir := filepath.Join(dir, "index")
	ix := openIndex(t, ixDir)
	s := openQuiet(t, dir, ix)
	appendN(t, s, 0, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	lagging := filepath.Join(t.TempDir(), "index-at-100")
	copyDir(t, ixDir, lagging)

	ix = openIndex(t, ixDir)
	s = openQuiet(t, dir, ix)
	appendN(t, s, 100, 200)
	s.Close()
	ix.Close()

	check := func(t *testing.T, ixDir string, wantBefore uint64) {
		ix := openIndex(t, ixDir)
		defer ix.Close()
		if w, err := ix.Watermark(); err != nil || w != wantBefore {
			t.Fatalf("watermark before open %d (%v), want %d", w, err, wantBefore)
		}
		s := openQuiet(t, dir, ix)
		defer s.Close()
		if w, err := ix.Watermark(); err != nil || w != s.Size() || w != 300 {
			t.Fatalf("watermark after open %d (%v), log size %d", w, err, s.Size())
		}
		for i := range 300 {
			seq, ok, err := ix.LookupID(fmt.Sprintf("id-%d", i))
			if err != nil || !ok || seq != uint64(i) {
				t.Fatalf("lookup id-%d: %d %v %v", i, seq, ok, err)
			}
		}
		var seqs []uint64
		if err := ix.Scan(index.SourceList("crm"), false, 0, func(p index.Posting) bool {
			seqs = append(seqs, p.Seq)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 300 || seqs[0] != 0 || seqs[299] != 299 {
			t.Fatalf("source list holds %d postings", len(seqs))
		}
		// Duplicates are recognised through the caught-up index.
		res, err := s.Append(context.Background(), []*record.Record{testRecord(5), testRecord(250)})
		if err != nil || !res[0].Duplicate || res[0].Seq != 5 || !res[1].Duplicate || res[1].Seq != 250 {
			t.Fatalf("re-append: %+v %v", res, err)
		}
		if s.Size() != 300 {
			t.Fatalf("duplicates grew the log to %d", s.Size())
		}
	}
	t.Run("empty-index", func(t *testing.T) { check(t, filepath.Join(t.TempDir(), "fresh"), 0) })
	t.Run("lagging-index", func(t *testing.T) { check(t, lagging, 100) })

	t.Run("index-ahead-of-log", func(t *testing.T) {
		other := t.TempDir()
		s := openStore(t, other)
		appendN(t, s, 0, 10)
		s.Close()
		ix := openIndex(t, ixDir) // 300 records indexed
		defer ix.Close()
		_, err := logstore.Open(context.Background(), other, logstore.Options{Origin: testOrigin, Hook: ix})
		if err == nil || !strings.Contains(err.Error(), "ahead") {
			t.Fatalf("open with an index of another log: %v", err)
		}
	})
}

// deriveRecorder is a Sealer whose Rederive names each record's id as its
// subject, so a test sees which records the index got Derived for.
type deriveRecorder struct{ fail error }

func (deriveRecorder) Seal(context.Context, *record.Record) error { return nil }
func (deriveRecorder) Sync(context.Context) error                 { return nil }
func (d deriveRecorder) Rederive(_ context.Context, r *record.Record) error {
	if d.fail != nil {
		return d.fail
	}
	r.Derived = &record.Derived{Subjects: []string{"subject-of-" + r.ID}}
	return nil
}

// TestCatchUpRederivesPersonalDataEntries: records the index missed (it
// is not fsync'd) are indexed with the Derived entries the Sealer rebuilds,
// since Derived is never stored in the log; a failing Rederive stops the
// open rather than indexing records without them.
func TestCatchUpRederivesPersonalDataEntries(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	appendN(t, s, 0, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ixDir := filepath.Join(t.TempDir(), "index")
	ix, err := index.Open(ixDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("keystore unavailable")
	_, err = logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, Hook: ix, Sealer: deriveRecorder{fail: boom}})
	if !errors.Is(err, boom) {
		t.Fatalf("open with a failing Rederive: err = %v, want it wrapped", err)
	}
	if w, _ := ix.Watermark(); w != 0 {
		t.Fatalf("index watermark %d after a failed catch-up, want 0", w)
	}
	s, err = logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, Hook: ix, Sealer: deriveRecorder{}})
	if err != nil {
		t.Fatal(err)
	}
	for seq := range uint64(5) {
		r, err := s.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := ix.SubjectCount("subject-of-" + r.ID); err != nil || n != 1 {
			t.Errorf("seq %d: subject count %d (%v), want 1 from the rederived entry", seq, n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ix.Close()
}
