package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele/logstore"
)

// steppedClock is a store's clock that moves only when told to: appends
// spread over seconds without a test waiting for them.
type steppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *steppedClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tailBatches is the store of the tail tests: 20 batches of 100 records,
// one second apart, each followed by a checkpoint, as a server under steady
// load leaves them (checkpoint sizes 0, 100, …, 2000).
const tailBatches, tailBatch = 20, 100

func buildTimedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	clock := &steppedClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	for b := range tailBatches {
		appendN(t, s, b*tailBatch, tailBatch)
		if _, err := s.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock.step(time.Second)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepCheckpoints rewrites checkpoints.log with its first n frames.
func keepCheckpoints(t *testing.T, dir string, n int) {
	t.Helper()
	frames := checkpointFrames(t, dir)
	writeFile(t, filepath.Join(dir, "checkpoints.log"), joinFrames(frames[:n]))
}

// wantUnproven asserts VerifyDir refuses the directory with ErrUnproven
// (and ErrTampered) naming seq and checkpoints.log.
func wantUnproven(t *testing.T, dir string, opts logstore.VerifyOptions, seq int64) *logstore.VerifyError {
	t.Helper()
	rep, err := logstore.VerifyDir(context.Background(), dir, opts)
	if err == nil {
		t.Fatalf("verify passed (%d records, %d unproven), want ErrUnproven from seq %d", rep.Records, rep.Unproven, seq)
	}
	var ve *logstore.VerifyError
	if !errors.Is(err, logstore.ErrUnproven) || !errors.Is(err, logstore.ErrTampered) || !errors.As(err, &ve) {
		t.Fatalf("verify error %v, want a *VerifyError wrapping ErrUnproven and ErrTampered", err)
	}
	if ve.Seq != seq || ve.File != "checkpoints.log" {
		t.Fatalf("verify error names seq %d in %q, want seq %d in checkpoints.log: %v", ve.Seq, ve.File, seq, err)
	}
	return ve
}

// TestVerifyForgedUncoveredHistory is the attack of issue 12 item 3(a),
// scaled down: cut checkpoints.log after an early checkpoint, alter a later
// record (fixing its frame checksum), rebuild the tree. Every checksum, leaf
// and node then agrees, and the remaining checkpoints match the records they
// cover; only the 1,100 records no checkpoint covers give the attack away.
func TestVerifyForgedUncoveredHistory(t *testing.T) {
	dir := buildTimedStore(t)
	// Frame 0 is the empty log's checkpoint; frame 9 has size 900.
	keepCheckpoints(t, dir, 10)
	frames := recordFrames(t, dir)
	const seq = 1500
	p := bytes.Clone(frames[seq].payload)
	i := bytes.Index(p, []byte(`"n1500"`))
	if i < 0 {
		t.Fatalf("record %d: %s", seq, p)
	}
	p[i+1] = 'm'
	frames[seq].payload = p
	// The attacker also rewrites the root in each later batch trailer (its
	// authenticator, which offline verify cannot check, stays as it was).
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	for k := range frames {
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(frames[k].payload), nil); err != nil {
			t.Fatal(err)
		}
		if k >= seq && frames[k].trailer != nil {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			tp := bytes.Clone(frames[k].trailer[8:])
			copy(tp[10:42], root)
			frames[k].trailer = makeFrame(tp)
		}
	}
	writeFile(t, filepath.Join(dir, "records.log"), joinFrames(frames))
	rewriteTree(t, dir, frames)

	ve := wantUnproven(t, dir, logstore.VerifyOptions{}, 900)
	for _, want := range []string{"records 900 to 1999", "1100 records", "size 900", "lost its newest checkpoints", "--allow-unproven 1100"} {
		if !strings.Contains(ve.Error(), want) {
			t.Errorf("error %q lacks %q", ve.Error(), want)
		}
	}
	// The pinned key changes nothing: the checkpoints kept are genuine.
	vkey, err := logstore.LoadVerifierKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantUnproven(t, dir, logstore.VerifyOptions{VerifierKey: vkey}, 900)
	// Fewer than the tail accepted is still a failure; told to expect all
	// of them, verify passes and reports them.
	wantUnproven(t, dir, logstore.VerifyOptions{AllowUnproven: 1099}, 900)
	rep, err := logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{AllowUnproven: 1100})
	if err != nil {
		t.Fatalf("verify with AllowUnproven 1100: %v", err)
	}
	if rep.Records != 2000 || rep.Unproven != 1100 || rep.UnprovenSpan != 10*time.Second {
		t.Fatalf("report: %d records, %d unproven over %s; want 2000, 1100 over 10s", rep.Records, rep.Unproven, rep.UnprovenSpan)
	}
	// A server that signs only every 15 s can leave 11 s of records
	// unsigned.
	if _, err := logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{CheckpointInterval: 15 * time.Second}); err != nil {
		t.Fatalf("verify with a 15s checkpoint interval: %v", err)
	}
}

func TestVerifyCheckpointsLogCut(t *testing.T) {
	t.Run("newest-removed", func(t *testing.T) {
		dir := buildTimedStore(t)
		n := len(checkpointFrames(t, dir))
		keepCheckpoints(t, dir, n-3) // sizes 1800, 1900 and 2000 go
		wantUnproven(t, dir, logstore.VerifyOptions{}, 1700)
	})
	t.Run("only-the-newest-removed", func(t *testing.T) {
		// One batch of 100 appended one second after the previous
		// checkpoint: within one interval plus the signing lag, a crash
		// could have left it so. It passes, and is reported.
		dir := buildTimedStore(t)
		n := len(checkpointFrames(t, dir))
		keepCheckpoints(t, dir, n-1)
		rep, err := verify(dir)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep.Unproven != 100 || rep.Latest.Size != 1900 {
			t.Fatalf("report: %d unproven, latest size %d; want 100 past 1900", rep.Unproven, rep.Latest.Size)
		}
		// The rule's limit: two batches stamped 1 s apart fit in one
		// 500 ms interval plus the 1 s signing lag, so dropping the two
		// newest checkpoints goes unnoticed offline (an auditor's state or
		// a witness catches it); three do not (newest-removed).
		keepCheckpoints(t, dir, n-2)
		if rep, err := verify(dir); err != nil || rep.Unproven != 200 {
			t.Fatalf("verify with two checkpoints dropped: %+v, %v", rep, err)
		}
	})
	t.Run("cut-mid-frame", func(t *testing.T) {
		dir := buildTimedStore(t)
		frames := checkpointFrames(t, dir)
		f := frames[10] // size 1000
		if err := os.Truncate(filepath.Join(dir, "checkpoints.log"), f.off+8+int64(len(f.payload))/2); err != nil {
			t.Fatal(err)
		}
		ve := wantUnproven(t, dir, logstore.VerifyOptions{}, 900)
		if want := "cut inside the frame at offset"; !strings.Contains(ve.Error(), want) {
			t.Errorf("error %q lacks %q", ve.Error(), want)
		}
	})
	t.Run("cut-mid-header", func(t *testing.T) {
		dir := buildTimedStore(t)
		frames := checkpointFrames(t, dir)
		if err := os.Truncate(filepath.Join(dir, "checkpoints.log"), frames[3].off+5); err != nil {
			t.Fatal(err)
		}
		wantUnproven(t, dir, logstore.VerifyOptions{}, 200)
	})
	t.Run("emptied", func(t *testing.T) {
		dir := buildTimedStore(t)
		if err := os.Truncate(filepath.Join(dir, "checkpoints.log"), 0); err != nil {
			t.Fatal(err)
		}
		ve := wantUnproven(t, dir, logstore.VerifyOptions{}, 0)
		if want := "holds no checkpoint"; !strings.Contains(ve.Error(), want) {
			t.Errorf("error %q lacks %q", ve.Error(), want)
		}
		// Not even an operator's "expected" makes an emptied file good.
		wantUnproven(t, dir, logstore.VerifyOptions{AllowUnproven: 1 << 40}, 0)
	})
	t.Run("cut-inside-first-frame", func(t *testing.T) {
		dir := buildTimedStore(t)
		if err := os.Truncate(filepath.Join(dir, "checkpoints.log"), 20); err != nil {
			t.Fatal(err)
		}
		wantUnproven(t, dir, logstore.VerifyOptions{}, 0)
	})
	t.Run("empty-store", func(t *testing.T) {
		// A store that crashed before signing its first checkpoint holds
		// no record: nothing is unproven.
		dir := t.TempDir()
		for _, name := range []string{"records.log", "records.idx", "checkpoints.log"} {
			writeFile(t, filepath.Join(dir, name), nil)
		}
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		_, vkey := newNoteKey(t)
		writeFile(t, filepath.Join(dir, "keys", "checkpoint.vkey"), []byte(vkey+"\n"))
		rep, err := verify(dir)
		if err != nil || rep.Records != 0 || rep.Unproven != 0 {
			t.Fatalf("verify of an empty store: %+v, %v", rep, err)
		}
	})
}

// TestVerifyInFlightTail: what a crash really leaves past the latest
// checkpoint passes, reported, and so does a checkpoint write it cut short.
func TestVerifyInFlightTail(t *testing.T) {
	clock := &steppedClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 0, 300)
	if _, err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.step(time.Minute) // a quiet minute, then a burst the crash catches
	appendN(t, s, 300, 1000)
	clock.step(400 * time.Millisecond)
	appendN(t, s, 1300, 1000)
	image := crashImage(t, s)
	rep, err := verify(image)
	if err != nil {
		t.Fatalf("verify of a crash image: %v", err)
	}
	if rep.Records != 2300 || rep.Unproven != 2000 || rep.UnprovenSpan != 400*time.Millisecond || rep.TornCheckpoint != 0 {
		t.Fatalf("report: %d records, %d unproven over %s, torn checkpoint %d; want 2300, 2000 over 400ms, 0", rep.Records, rep.Unproven, rep.UnprovenSpan, rep.TornCheckpoint)
	}

	// The crash interrupted the checkpoint of size 2300.
	cp := filepath.Join(image, "checkpoints.log")
	extra := makeFrame(signWith(t, ownSigningKey(t, image), 2300, make([]byte, 32)))
	writeFile(t, cp, append(readFile(t, cp), extra[:len(extra)-10]...))
	rep, err = verify(image)
	if err != nil {
		t.Fatalf("verify of a crash image with a torn checkpoint: %v", err)
	}
	if rep.TornCheckpoint != int64(len(extra)-10) || rep.Unproven != 2000 {
		t.Fatalf("report: torn checkpoint %d, %d unproven; want %d, 2000", rep.TornCheckpoint, rep.Unproven, len(extra)-10)
	}
	// The same burst a second later than the window allows is not in flight.
	clock.step(2 * time.Second)
	appendN(t, s, 2300, 1)
	image = crashImage(t, s)
	wantUnproven(t, image, logstore.VerifyOptions{}, 300)
}

// TestVerifyTailBounds: a tail stamped as if appended at one instant is
// still refused when it holds more records than one interval can commit,
// or records without a recorded_at.
func TestVerifyTailBounds(t *testing.T) {
	t.Run("too-many", func(t *testing.T) {
		clock := &steppedClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
		dir := t.TempDir()
		s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, Now: clock.now})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// With checkpoints every millisecond the bound is 262 + 16384.
		const n = 16384 + 262 + 1
		for b := 0; b < n; b += 4096 {
			appendN(t, s, b, min(4096, n-b))
		}
		image := crashImage(t, s)
		opts := logstore.VerifyOptions{CheckpointInterval: time.Millisecond}
		ve := wantUnproven(t, image, opts, 0)
		if want := "more than the 16646"; !strings.Contains(ve.Error(), want) {
			t.Errorf("error %q lacks %q", ve.Error(), want)
		}
		opts.CheckpointInterval = 2 * time.Millisecond // bound 16908
		if _, err := logstore.VerifyDir(context.Background(), image, opts); err != nil {
			t.Fatalf("verify with the bound above the tail: %v", err)
		}
	})
	t.Run("unstamped", func(t *testing.T) {
		dir := t.TempDir()
		zero := func() time.Time { return time.Time{} }
		s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, Now: zero})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		appendN(t, s, 0, 10)
		ve := wantUnproven(t, crashImage(t, s), logstore.VerifyOptions{}, 0)
		if want := "seq 0 has no recorded_at"; !strings.Contains(ve.Error(), want) {
			t.Errorf("error %q lacks %q", ve.Error(), want)
		}
	})
}
