package logstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

const testOrigin = "test.example/log"

// verifyBatches are the Append batches of the store the verify tests tamper
// with; a checkpoint is issued after each, and Close issues the last.
var verifyBatches = []int{1, 49, 50, 100, 37, 63} // 300 records

// buildCheckpointedStore writes the batches with a checkpoint after each and
// closes the store. It returns the checkpoint sizes it asked for.
func buildCheckpointedStore(t *testing.T, dir string, batches []int) []uint64 {
	t.Helper()
	s := openStore(t, dir)
	var sizes []uint64
	n := 0
	for _, b := range batches {
		appendN(t, s, n, b)
		n += b
		cp, err := s.Checkpoint(context.Background())
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		if cp.Size != uint64(n) {
			t.Fatalf("checkpoint size %d, want %d", cp.Size, n)
		}
		sizes = append(sizes, cp.Size)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return sizes
}

// pristine is built once per test binary run and copied by each case.
var pristineDir string

func pristine(t *testing.T) string {
	t.Helper()
	if pristineDir == "" {
		dir, err := os.MkdirTemp("", "stele-verify-pristine-")
		if err != nil {
			t.Fatal(err)
		}
		buildCheckpointedStore(t, dir, verifyBatches)
		pristineDir = dir
	}
	dst := t.TempDir()
	copyDir(t, pristineDir, dst)
	return dst
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pristineDir != "" {
		os.RemoveAll(pristineDir)
	}
	os.Exit(code)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipByte XORs the byte at off of path with mask.
func flipByte(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	b := readFile(t, path)
	if off >= int64(len(b)) {
		t.Fatalf("flip at %d: %s is only %d bytes", off, path, len(b))
	}
	b[off] ^= mask
	writeFile(t, path, b)
}

// patchByte overwrites the byte at off of path in place.
func patchByte(t *testing.T, path string, off int64, b byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{b}, off); err != nil {
		t.Fatal(err)
	}
}

// frame is one frame of records.log or checkpoints.log. In records.log a
// record that ends a batch carries the batch's trailer frame along with it.
type frame struct {
	off     int64
	payload []byte
	trailer []byte // the whole trailer frame after this record, if any
}

// trailerTag starts a batch trailer's payload (logstore/batch.go).
const trailerTag = 0xB7

func (f frame) end() int64 { return f.off + 8 + int64(len(f.payload)) }

// parseFrames splits a whole, untampered frame file (u32 LE length, u32
// CRC-32C of length||payload, payload).
func parseFrames(t *testing.T, b []byte) []frame {
	t.Helper()
	var out []frame
	for off := int64(0); off < int64(len(b)); {
		if int64(len(b))-off < 8 {
			t.Fatalf("trailing %d bytes at %d", int64(len(b))-off, off)
		}
		n := int64(binary.LittleEndian.Uint32(b[off:]))
		if off+8+n > int64(len(b)) {
			t.Fatalf("frame at %d runs past the end", off)
		}
		f := frame{off: off, payload: b[off+8 : off+8+n]}
		if !bytes.Equal(makeFrame(f.payload), b[off:off+8+n]) {
			t.Fatalf("frame at %d: bad checksum in an untampered file", off)
		}
		out = append(out, f)
		off += 8 + n
	}
	return out
}

// makeFrame builds a frame exactly as the log does.
func makeFrame(payload []byte) []byte {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	crc := crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), hdr[0:4])
	crc = crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), payload)
	binary.LittleEndian.PutUint32(hdr[4:8], crc)
	return append(hdr[:], payload...)
}

// recordFrames parses records.log and checks it against records.idx. Batch
// trailers ride with the record before them, so the tests can drop, move
// and copy records with or without their batch's trailer.
func recordFrames(t *testing.T, dir string) []frame {
	t.Helper()
	var frames []frame
	for _, f := range parseFrames(t, readFile(t, filepath.Join(dir, "records.log"))) {
		if len(f.payload) > 0 && f.payload[0] == trailerTag {
			if len(frames) == 0 || frames[len(frames)-1].trailer != nil {
				t.Fatalf("batch trailer at %d follows no record", f.off)
			}
			frames[len(frames)-1].trailer = makeFrame(f.payload)
			continue
		}
		frames = append(frames, f)
	}
	idx := readFile(t, filepath.Join(dir, "records.idx"))
	if len(idx) != 8*len(frames) {
		t.Fatalf("records.idx has %d bytes for %d frames", len(idx), len(frames))
	}
	for i, f := range frames {
		if got := int64(binary.LittleEndian.Uint64(idx[8*i:])); got != f.off {
			t.Fatalf("records.idx[%d] = %d, frame at %d", i, got, f.off)
		}
		if seq, err := record.Seq(f.payload); err != nil || seq != uint64(i) {
			t.Fatalf("frame %d holds seq %d (%v)", i, seq, err)
		}
	}
	return frames
}

func joinFrames(frames []frame) []byte {
	var out []byte
	for _, f := range frames {
		out = append(out, makeFrame(f.payload)...)
		out = append(out, f.trailer...)
	}
	return out
}

func verify(dir string) (*logstore.VerifyReport, error) {
	return logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{})
}

// wantVerifyError asserts VerifyDir fails with ErrTampered pointing at seq
// (and, when file is not empty, naming file).
func wantVerifyError(t *testing.T, dir string, seq int64, file string) *logstore.VerifyError {
	t.Helper()
	rep, err := verify(dir)
	if err == nil {
		t.Fatalf("verify passed (%d records), want tampering at seq %d", rep.Records, seq)
	}
	if !errors.Is(err, logstore.ErrTampered) {
		t.Fatalf("verify error %v does not wrap ErrTampered", err)
	}
	var ve *logstore.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("verify error %v is not a *VerifyError", err)
	}
	if ve.Seq != seq {
		t.Fatalf("verify error names seq %d, want %d: %v", ve.Seq, seq, err)
	}
	if file != "" && ve.File != file {
		t.Fatalf("verify error names file %q, want %q: %v", ve.File, file, err)
	}
	return ve
}

func TestVerifyUntampered(t *testing.T) {
	dir := pristine(t)
	rep, err := verify(dir)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Records != 300 {
		t.Errorf("Records = %d, want 300", rep.Records)
	}
	if rep.Latest == nil || rep.Latest.Size != 300 {
		t.Fatalf("Latest = %+v, want size 300", rep.Latest)
	}
	if rep.Checkpoints < len(verifyBatches) {
		t.Errorf("Checkpoints = %d, want at least %d", rep.Checkpoints, len(verifyBatches))
	}
	if rep.TornTail != 0 {
		t.Errorf("TornTail = %d", rep.TornTail)
	}
	st, err := os.Stat(filepath.Join(dir, "records.log"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bytes != st.Size() {
		t.Errorf("Bytes = %d, want %d", rep.Bytes, st.Size())
	}
	// An auditor's copy holds only the verifier key: pinning it works, and the
	// missing signing key is not an error.
	vkey, err := logstore.LoadVerifierKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "keys", "checkpoint.skey")); err != nil {
		t.Fatal(err)
	}
	if _, err := logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{VerifierKey: vkey}); err != nil {
		t.Fatalf("verify with pinned key: %v", err)
	}
}

func TestVerifyPinnedKeyOfAnotherLog(t *testing.T) {
	dir := pristine(t)
	_, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{VerifierKey: vkey})
	var ve *logstore.VerifyError
	if !errors.Is(err, logstore.ErrTampered) || !errors.As(err, &ve) || ve.Seq != -1 {
		t.Fatalf("verify with another log's key: %v, want a VerifyError with seq -1", err)
	}
	// Without the signing key the mismatch shows at the checkpoints.
	if err := os.Remove(filepath.Join(dir, "keys", "checkpoint.skey")); err != nil {
		t.Fatal(err)
	}
	_, err = logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{VerifierKey: vkey})
	if !errors.As(err, &ve) || ve.Seq != -1 || ve.File != "checkpoints.log" {
		t.Fatalf("verify with another log's key, no signing key: %v, want checkpoints.log at seq -1", err)
	}
}

// TestVerifyFlippedRecordBytes flips single bytes in chosen frames: the
// length, the checksum, the version byte, the seq header and the body.
func TestVerifyFlippedRecordBytes(t *testing.T) {
	dir := pristine(t)
	path := filepath.Join(dir, "records.log")
	frames := recordFrames(t, dir)
	orig := readFile(t, path)
	chosen := []int{0, 1, 50, 128, 199, 255, 299}
	for _, seq := range chosen {
		f := frames[seq]
		var positions []int64
		// Frame header, then the record header (version, seq, recorded_at).
		for i := int64(0); i < 8+record.HeaderSize; i++ {
			positions = append(positions, f.off+i)
		}
		positions = append(positions, f.off+8+record.HeaderSize, f.off+8+int64(len(f.payload))/2, f.end()-1)
		for i, pos := range positions {
			// Vary the flip: a low bit, a high bit, a whole byte.
			mask := []byte{0x01, 0x80, 0xff}[(i+seq)%3]
			patchByte(t, path, pos, orig[pos]^mask)
			ve := wantVerifyError(t, dir, int64(seq), "records.log")
			if !strings.Contains(ve.Error(), fmt.Sprintf("seq %d", seq)) {
				t.Errorf("message %q does not name seq %d", ve.Error(), seq)
			}
			patchByte(t, path, pos, orig[pos])
		}
	}
	writeFile(t, path, orig)
	if _, err := verify(dir); err != nil {
		t.Fatalf("restored store: %v", err)
	}
}

// TestVerifyFlipSweep flips bytes at 200 positions drawn with a fixed seed
// across the whole of records.log.
func TestVerifyFlipSweep(t *testing.T) {
	dir := pristine(t)
	path := filepath.Join(dir, "records.log")
	frames := recordFrames(t, dir)
	orig := readFile(t, path)
	// A fault in a batch trailer is reported at the batch's last record,
	// unless it hits the tag that says it is a trailer.
	owner := func(pos int64) (int, bool) {
		for i, f := range frames {
			if pos >= f.off && pos < f.end()+int64(len(f.trailer)) {
				return i, pos != f.end()+8
			}
		}
		t.Fatalf("position %d is in no frame", pos)
		return -1, false
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		pos := rng.Int64N(int64(len(orig)))
		seq, ok := owner(pos)
		if !ok {
			continue
		}
		mask := byte(1 + rng.IntN(255))
		patchByte(t, path, pos, orig[pos]^mask)
		wantVerifyError(t, dir, int64(seq), "records.log")
		patchByte(t, path, pos, orig[pos])
	}
}

// TestVerifyRecomputedChecksum changes a record and fixes its frame
// checksum: the stored leaf hash gives it away; when the attacker also
// rewrites the whole tree, the signed checkpoints do.
func TestVerifyRecomputedChecksum(t *testing.T) {
	const seq = 137
	dir := pristine(t)
	frames := recordFrames(t, dir)
	p := bytes.Clone(frames[seq].payload)
	i := bytes.Index(p, []byte(`"n137"`))
	if i < 0 {
		t.Fatalf("record %d: %s", seq, p)
	}
	p[i+1] = 'm' // same length, valid JSON
	frames[seq].payload = p
	writeFile(t, filepath.Join(dir, "records.log"), joinFrames(frames))
	wantVerifyError(t, dir, seq, "tree/L00")

	// Rewrite every tree level to match the forged record.
	rewriteTree(t, dir, frames)
	// Checkpoints of sizes 100 and 200 bracket seq 137: verification can only
	// say the fault lies in [100, 200).
	ve := wantVerifyError(t, dir, 100, "records.log")
	if !strings.Contains(ve.Reason, "checkpoint") {
		t.Errorf("reason %q does not mention the checkpoint", ve.Reason)
	}
}

// rewriteTree replaces tree/ with the levels computed from frames.
func rewriteTree(t *testing.T, dir string, frames []frame) {
	t.Helper()
	levels := map[uint][]byte{}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	for _, f := range frames {
		err := rng.Append(rfc6962.DefaultHasher.HashLeaf(f.payload), func(id compact.NodeID, h []byte) {
			levels[id.Level] = append(levels[id.Level], h...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "tree")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	for l, b := range levels {
		writeFile(t, filepath.Join(dir, "tree", fmt.Sprintf("L%02d", l)), b)
	}
}

func TestVerifyTruncatedRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  int
		mid  bool
	}{
		{"mid-frame", 123, true},
		{"mid-header", 200, true},
		{"at-boundary", 123, false},
		{"last-record-mid", 299, true},
		{"last-record-boundary", 299, false},
		{"empty", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pristine(t)
			path := filepath.Join(dir, "records.log")
			frames := recordFrames(t, dir)
			cut := frames[tc.seq].off
			if tc.mid {
				cut += 4
				if tc.name != "mid-header" {
					cut += 8 + int64(len(frames[tc.seq].payload))/2 - 4
				}
			}
			if err := os.Truncate(path, cut); err != nil {
				t.Fatal(err)
			}
			wantVerifyError(t, dir, int64(tc.seq), "records.log")
		})
	}
}

func TestVerifyRearrangedFrames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   int64
		change func([]frame) []frame
	}{
		{"delete-middle", 150, func(f []frame) []frame { return append(f[:150:150], f[151:]...) }},
		{"delete-first", 0, func(f []frame) []frame { return f[1:] }},
		{"delete-last", 299, func(f []frame) []frame { return f[:299] }},
		{"swap-adjacent", 77, func(f []frame) []frame {
			f[77], f[78] = f[78], f[77]
			return f
		}},
		{"swap-last-two", 298, func(f []frame) []frame {
			f[298], f[299] = f[299], f[298]
			return f
		}},
		{"insert-copy-after-itself", 101, func(f []frame) []frame {
			return append(f[:101:101], append([]frame{f[100]}, f[101:]...)...)
		}},
		{"insert-copy-elsewhere", 220, func(f []frame) []frame {
			return append(f[:220:220], append([]frame{f[10]}, f[220:]...)...)
		}},
		{"append-copy-at-end", 300, func(f []frame) []frame { return append(f, f[5]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pristine(t)
			frames := tc.change(recordFrames(t, dir))
			writeFile(t, filepath.Join(dir, "records.log"), joinFrames(frames))
			wantVerifyError(t, dir, tc.want, "records.log")
		})
	}
}

func TestVerifyDerivedFiles(t *testing.T) {
	t.Run("L00", func(t *testing.T) {
		for _, seq := range []int64{0, 1, 150, 299} {
			dir := pristine(t)
			flipByte(t, filepath.Join(dir, "tree", "L00"), seq*32+17, 0x40)
			wantVerifyError(t, dir, seq, "tree/L00")
		}
	})
	t.Run("higher-levels", func(t *testing.T) {
		for _, tc := range []struct {
			level int
			index int64
		}{{1, 0}, {1, 70}, {2, 30}, {3, 12}, {5, 4}, {7, 0}, {8, 0}} {
			dir := pristine(t)
			path := filepath.Join(dir, "tree", fmt.Sprintf("L%02d", tc.level))
			flipByte(t, path, tc.index*32, 0x01)
			first := tc.index << tc.level
			wantVerifyError(t, dir, first, fmt.Sprintf("tree/L%02d", tc.level))
		}
	})
	t.Run("no-level-9", func(t *testing.T) {
		// 300 leaves complete no level-9 node.
		dir := pristine(t)
		if st, err := os.Stat(filepath.Join(dir, "tree", "L09")); err == nil && st.Size() != 0 {
			t.Fatalf("L09 holds %d bytes for 300 leaves", st.Size())
		}
	})
	t.Run("tree-level-missing", func(t *testing.T) {
		dir := pristine(t)
		if err := os.Remove(filepath.Join(dir, "tree", "L03")); err != nil {
			t.Fatal(err)
		}
		// The first level-3 node completes at leaf 7 and covers seqs 0..7.
		wantVerifyError(t, dir, 0, "tree/L03")
	})
	t.Run("records.idx", func(t *testing.T) {
		for _, seq := range []int64{0, 42, 299} {
			for _, b := range []int64{0, 3, 7} {
				dir := pristine(t)
				flipByte(t, filepath.Join(dir, "records.idx"), seq*8+b, 0x01)
				wantVerifyError(t, dir, seq, "records.idx")
			}
		}
	})
	t.Run("records.idx-truncated", func(t *testing.T) {
		dir := pristine(t)
		if err := os.Truncate(filepath.Join(dir, "records.idx"), 8*250+3); err != nil {
			t.Fatal(err)
		}
		wantVerifyError(t, dir, 250, "records.idx")
	})
}

// checkpointFrames parses checkpoints.log.
func checkpointFrames(t *testing.T, dir string) []frame {
	t.Helper()
	return parseFrames(t, readFile(t, filepath.Join(dir, "checkpoints.log")))
}

func signWith(t *testing.T, skey string, size uint64, root []byte) []byte {
	t.Helper()
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", signer.Name(), size, base64.StdEncoding.EncodeToString(root))
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func ownSigningKey(t *testing.T, dir string) string {
	t.Helper()
	return strings.TrimSpace(string(readFile(t, filepath.Join(dir, "keys", "checkpoint.skey"))))
}

func TestVerifyCheckpoints(t *testing.T) {
	t.Run("parse-all", func(t *testing.T) {
		dir := pristine(t)
		vkey, err := logstore.LoadVerifierKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []uint64
		for _, f := range checkpointFrames(t, dir) {
			cp, err := stele.OpenCheckpoint(f.payload, v)
			if err != nil {
				t.Fatal(err)
			}
			if cp.Origin != testOrigin {
				t.Errorf("origin %q", cp.Origin)
			}
			sizes = append(sizes, cp.Size)
		}
		// The open issues a checkpoint of the empty log, then one per batch.
		want := []uint64{0, 1, 50, 100, 200, 237, 300}
		if fmt.Sprint(sizes) != fmt.Sprint(want) {
			t.Fatalf("checkpoint sizes %v, want %v", sizes, want)
		}
	})
	t.Run("flip-inside-note", func(t *testing.T) {
		for _, which := range []int{0, 3, -1} {
			dir := pristine(t)
			frames := checkpointFrames(t, dir)
			if which < 0 {
				which = len(frames) - 1
			}
			f := frames[which]
			for _, at := range []int64{0, int64(len(f.payload)) / 2, int64(len(f.payload)) - 2} {
				flipByte(t, filepath.Join(dir, "checkpoints.log"), f.off+8+at, 0x04)
				wantVerifyError(t, dir, -1, "checkpoints.log")
				flipByte(t, filepath.Join(dir, "checkpoints.log"), f.off+8+at, 0x04)
			}
		}
	})
	t.Run("flip-frame-length", func(t *testing.T) {
		// A length pointing past the end looks like a torn final frame; an
		// earlier frame must not be mistaken for one, or every checkpoint
		// after it silently stops counting.
		for _, which := range []int{0, 3, -1} {
			for _, b := range []int64{0, 1, 2, 3} {
				t.Run(fmt.Sprintf("frame%d-byte%d", which, b), func(t *testing.T) {
					dir := pristine(t)
					frames := checkpointFrames(t, dir)
					f := frames[(which+len(frames))%len(frames)]
					flipByte(t, filepath.Join(dir, "checkpoints.log"), f.off+b, 0x40)
					wantVerifyError(t, dir, -1, "checkpoints.log")
				})
			}
		}
	})
	t.Run("signed-by-another-key", func(t *testing.T) {
		dir := pristine(t)
		frames := checkpointFrames(t, dir)
		skey, _, err := note.GenerateKey(rand.Reader, testOrigin)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := stele.OpenCheckpoint(frames[4].payload, mustVerifier(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		frames[4].payload = signWith(t, skey, cp.Size, cp.Root)
		writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames))
		wantVerifyError(t, dir, -1, "checkpoints.log")
	})
	t.Run("appended-by-another-key", func(t *testing.T) {
		dir := pristine(t)
		skey, _, err := note.GenerateKey(rand.Reader, testOrigin)
		if err != nil {
			t.Fatal(err)
		}
		frames := checkpointFrames(t, dir)
		last, err := stele.OpenCheckpoint(frames[len(frames)-1].payload, mustVerifier(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame{payload: signWith(t, skey, last.Size, last.Root)})
		writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames))
		wantVerifyError(t, dir, -1, "checkpoints.log")
	})
	t.Run("text-changed-checksum-fixed", func(t *testing.T) {
		dir := pristine(t)
		frames := checkpointFrames(t, dir)
		frames[2].payload = bytes.Replace(frames[2].payload, []byte("\n50\n"), []byte("\n51\n"), 1)
		writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames))
		wantVerifyError(t, dir, -1, "checkpoints.log")
	})
	t.Run("own-key-wrong-root", func(t *testing.T) {
		// Even a checkpoint signed with the log's own key is checked
		// against the records: the fault lies after the previous checkpoint.
		dir := pristine(t)
		frames := checkpointFrames(t, dir)
		frames = append(frames, frame{payload: signWith(t, ownSigningKey(t, dir), 300, make([]byte, 32))})
		writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames))
		wantVerifyError(t, dir, 300, "records.log")
	})
	t.Run("own-key-shrinking-size", func(t *testing.T) {
		dir := pristine(t)
		s0 := checkpointFrames(t, dir)
		cp, err := stele.OpenCheckpoint(s0[2].payload, mustVerifier(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		frames := append(s0, frame{payload: signWith(t, ownSigningKey(t, dir), cp.Size, cp.Root)})
		writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames))
		wantVerifyError(t, dir, -1, "checkpoints.log")
	})
	t.Run("torn-final-checkpoint", func(t *testing.T) {
		// A final checkpoint cut short by a crash was never relied on.
		dir := pristine(t)
		frames := checkpointFrames(t, dir)
		extra := makeFrame(signWith(t, ownSigningKey(t, dir), 300, make([]byte, 32)))
		b := append(joinFrames(frames), extra[:len(extra)/2]...)
		writeFile(t, filepath.Join(dir, "checkpoints.log"), b)
		rep, err := verify(dir)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep.Checkpoints != len(frames) || rep.Latest.Size != 300 {
			t.Fatalf("report %+v", rep)
		}
	})
}

func mustVerifier(t *testing.T, dir string) note.Verifier {
	t.Helper()
	vkey, err := logstore.LoadVerifierKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newNoteKey(t *testing.T) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}
