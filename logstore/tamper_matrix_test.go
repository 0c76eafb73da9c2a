package logstore_test

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	framing "github.com/stele/stele/internal/frame"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// TestTamperMatrix tampers with every file of a closed, checkpointed store
// in every way an attacker with the disk can (bit flip, overwrite,
// truncate, swap of two blocks, appended bytes, an appended well-formed
// frame, and the file replaced by its counterpart from a rewritten
// history signed with another key), several times each at random places,
// and checks each outcome against what the log proves:
//
//   - a tamper that changes what the log proves (the records in
//     records.log, or the signed checkpoints) must be detected by offline
//     verification pinned to the log's verifier key;
//   - a tamper it does not detect must be harmless: the store opens and
//     serves exactly the original records, and verifies afterwards.
//
// It reports detection per file and kind; docs/security.md names the
// classes that are harmless and why.
func TestTamperMatrix(t *testing.T) {
	ctx := context.Background()
	base := pristine(t)
	vkey, err := logstore.LoadVerifierKey(base)
	if err != nil {
		t.Fatal(err)
	}
	want := storedRecords(t, base)
	other := t.TempDir()
	buildRewrittenHistory(t, other)

	var files []string
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "LOCK" {
			rel, _ := filepath.Rel(base, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	if !slices.Contains(files, "records.log") || !slices.Contains(files, "checkpoints.log") {
		t.Fatalf("the pristine store lacks its files: %v", files)
	}

	type tamper func(rng *mrand.Rand, b []byte, rel string) []byte
	kinds := []struct {
		name string
		fn   tamper
	}{
		{"bit flip", func(rng *mrand.Rand, b []byte, _ string) []byte {
			if len(b) == 0 {
				return nil
			}
			b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
			return b
		}},
		{"overwrite", func(rng *mrand.Rand, b []byte, _ string) []byte {
			if len(b) == 0 {
				return nil
			}
			off := rng.IntN(len(b))
			for i := off; i < min(len(b), off+16); i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}},
		{"truncate", func(rng *mrand.Rand, b []byte, _ string) []byte {
			if len(b) == 0 {
				return nil
			}
			return b[:rng.IntN(len(b))]
		}},
		{"swap", func(rng *mrand.Rand, b []byte, _ string) []byte {
			const n = 16
			if len(b) < 4*n {
				return nil
			}
			i, j := rng.IntN(len(b)/2-n), len(b)/2+rng.IntN(len(b)/2-n)
			x := bytes.Clone(b[i : i+n])
			copy(b[i:], b[j:j+n])
			copy(b[j:], x)
			return b
		}},
		{"append", func(rng *mrand.Rand, b []byte, _ string) []byte {
			extra := make([]byte, 1+rng.IntN(64))
			for i := range extra {
				extra[i] = byte(rng.Uint32())
			}
			return append(b, extra...)
		}},
		{"forged frame", func(rng *mrand.Rand, b []byte, rel string) []byte {
			// A well-formed frame holding a record like the last one, with
			// the checksum recomputed: what someone who knows the format
			// but not the key would add.
			recs := storedRecords(t, base)
			payload := bytes.Clone(recs[len(recs)-1])
			payload[len(payload)/2] ^= 0x01
			return framing.Append(b, payload)
		}},
		{"rewritten history", func(_ *mrand.Rand, b []byte, rel string) []byte {
			alt, err := os.ReadFile(filepath.Join(other, rel))
			if err != nil || bytes.Equal(alt, b) {
				return nil // the other history has no such file, or the same one
			}
			return alt
		}},
	}

	type tally struct{ trials, proofChanged, detected, harmless int }
	report := map[string]*tally{}
	rng := mrand.New(mrand.NewPCG(2026, 12))
	const trials = 4
	for _, rel := range files {
		orig, err := os.ReadFile(filepath.Join(base, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range kinds {
			for trial := range trials {
				if kind.name == "rewritten history" && trial > 0 {
					break // deterministic: once is enough
				}
				tampered := kind.fn(rng, bytes.Clone(orig), rel)
				if tampered == nil || bytes.Equal(tampered, orig) {
					continue
				}
				dir := t.TempDir()
				copyDir(t, base, dir)
				writeFile(t, filepath.Join(dir, rel), tampered)
				key := rel + " × " + kind.name
				tl := report[key]
				if tl == nil {
					tl = &tally{}
					report[key] = tl
				}
				tl.trials++
				changed := changesProof(t, dir, base)
				_, verr := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{VerifierKey: vkey})
				switch {
				case verr != nil:
					tl.detected++
					if changed {
						tl.proofChanged++
					}
				case changed:
					tl.proofChanged++
					t.Errorf("%s (trial %d): changes what the log proves, and verification pinned to the log's key passed", key, trial)
				default:
					if err := servesOriginal(ctx, dir, vkey, want); err != nil {
						t.Errorf("%s (trial %d): not detected and not harmless: %v", key, trial, err)
						continue
					}
					tl.harmless++
				}
			}
		}
	}
	// The whole directory replaced by another history, keys included: it is
	// consistent in itself, so only the pinned key (held outside the
	// directory, by the auditor) tells it from the real one.
	whole := t.TempDir()
	copyDir(t, other, whole)
	if _, err := logstore.VerifyDir(ctx, whole, logstore.VerifyOptions{VerifierKey: vkey}); err == nil {
		t.Error("a whole directory rewritten with another key passed verification pinned to the log's key")
	}
	if _, err := logstore.VerifyDir(ctx, whole, logstore.VerifyOptions{}); err != nil {
		t.Errorf("the rewritten directory should be consistent in itself (what an unpinned check sees): %v", err)
	}

	var lines []string
	var all tally
	for key, tl := range report {
		lines = append(lines, fmt.Sprintf("%-40s trials %d, proof changed %d, detected %d, undetected and harmless %d", key, tl.trials, tl.proofChanged, tl.detected, tl.harmless))
		all.trials += tl.trials
		all.proofChanged += tl.proofChanged
		all.detected += tl.detected
		all.harmless += tl.harmless
	}
	slices.Sort(lines)
	t.Logf("tamper matrix, %d files × %d kinds:\n%s\nall: %d trials; %d changed what the log proves, all detected; %d detected in all; %d undetected, each harmless",
		len(files), len(kinds), strings.Join(lines, "\n"), all.trials, all.proofChanged, all.detected, all.harmless)
}

// storedRecords reads every record's stored bytes through the store.
func storedRecords(t *testing.T, dir string) [][]byte {
	t.Helper()
	scratch := t.TempDir()
	copyDir(t, dir, scratch)
	s := openStore(t, scratch)
	defer s.Close()
	var out [][]byte
	for seq := range s.Size() {
		raw, err := s.ReadRaw(seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(raw))
	}
	return out
}

// changesProof reports whether dir's files claim something the original
// does not: other records (the record frames of records.log in order; a
// damaged remainder after them is a torn tail, not a record), or a
// checkpoint the original does not hold. Cutting the newest checkpoints off
// checkpoints.log claims nothing new — it suppresses evidence, which only a
// checkpoint held outside the directory (an auditor, a witness) catches —
// so it must then pass as harmless.
func changesProof(t *testing.T, dir, orig string) bool {
	t.Helper()
	records := func(d string) []byte {
		log, _ := os.ReadFile(filepath.Join(d, "records.log"))
		var out []byte
		for len(log) > 0 {
			payload, n, err := framing.Parse(log, logstore.MaxRecordSize+framing.HeaderSize)
			if err != nil {
				break
			}
			if len(payload) == 0 || payload[0] != 0xB7 {
				out = framing.Append(out, payload)
			}
			log = log[n:]
		}
		return out
	}
	cps, _ := os.ReadFile(filepath.Join(dir, "checkpoints.log"))
	origCps, _ := os.ReadFile(filepath.Join(orig, "checkpoints.log"))
	return !bytes.Equal(records(dir), records(orig)) || !bytes.HasPrefix(origCps, cps)
}

// servesOriginal opens the store as a server would and checks it serves
// exactly want, signs no other history, and verifies after its recovery.
func servesOriginal(ctx context.Context, dir, vkey string, want [][]byte) error {
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin})
	if err != nil {
		return nil // refused at open: a server would not serve it either
	}
	defer s.Close()
	if s.Size() != uint64(len(want)) {
		return fmt.Errorf("the store opens with %d records, the original has %d", s.Size(), len(want))
	}
	for seq := range s.Size() {
		raw, err := s.ReadRaw(seq)
		if err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if !bytes.Equal(raw, want[seq]) {
			return fmt.Errorf("record %d differs from the original", seq)
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if _, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{VerifierKey: vkey}); err != nil {
		return fmt.Errorf("after the store's own recovery, verification fails: %w", err)
	}
	return nil
}

// buildRewrittenHistory writes a store of the same shape with other
// records, signed by its own new key: the history an operator or intruder
// would put in place of the real one.
func buildRewrittenHistory(t *testing.T, dir string) {
	t.Helper()
	s := openStore(t, dir)
	n := 0
	for _, b := range verifyBatches {
		recs := make([]*record.Record, b)
		for i := range recs {
			recs[i] = testRecord(100000 + n + i) // other ids, other content
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		n += b
		if _, err := s.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
