package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stele/stele/internal/frame"
)

func openPos(t *testing.T, dir string) *PositionStore {
	t.Helper()
	s, err := OpenPositions(dir)
	if err != nil {
		t.Fatalf("OpenPositions: %v", err)
	}
	return s
}

func save(t *testing.T, s *PositionStore, p Positions) {
	t.Helper()
	if err := s.Save(context.Background(), p); err != nil {
		t.Fatalf("Save(%v): %v", p, err)
	}
}

func wantPositions(t *testing.T, s *PositionStore, want Positions) {
	t.Helper()
	if got := s.All(); !maps.Equal(got, want) {
		t.Fatalf("positions = %v, want %v", got, want)
	}
	for k, v := range want {
		if got, ok := s.Get(k); !ok || got != v {
			t.Fatalf("Get(%q) = %q, %v; want %q", k, got, ok, v)
		}
	}
}

func posFile(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("positions.%d", i)) }

func TestPositionsEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "src", "shop") // created when missing
	s := openPos(t, dir)
	if got := s.All(); len(got) != 0 {
		t.Fatalf("a new store holds %v", got)
	}
	if p, ok := s.Get("gtid"); ok {
		t.Fatalf("Get on a new store = %q, true", p)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory not created private: %v %v", fi, err)
	}
	// Opening writes nothing: no save, no file.
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("open wrote %v", left)
	}
	// Reopening an empty store is fine too.
	wantPositions(t, openPos(t, dir), Positions{})
}

func TestPositionsRoundTripSeveralPerSource(t *testing.T) {
	dir := t.TempDir()
	s := openPos(t, dir)
	save(t, s, Positions{"shard-0001": "49590338271490256608559692538361571095921575989136588898", "shard-0002": "7"})
	wantPositions(t, s, Positions{"shard-0001": "49590338271490256608559692538361571095921575989136588898", "shard-0002": "7"})
	// Save merges: keys not named keep their positions.
	save(t, s, Positions{"shard-0002": "8", "orders/3": "1200", "gtid": "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"})
	want := Positions{
		"shard-0001": "49590338271490256608559692538361571095921575989136588898",
		"shard-0002": "8", "orders/3": "1200", "gtid": "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5",
	}
	wantPositions(t, s, want)
	// Awkward names and values survive the JSON payload.
	odd := Positions{"": "empty name", "ünï\x00cödé": "", "quote\"and\\slash": strings.Repeat("9", 4096)}
	save(t, s, odd)
	maps.Copy(want, odd)
	wantPositions(t, s, want)
	// Both files now exist (saves alternate between them), and a reopen
	// reads the newest.
	for i := range 2 {
		if _, err := os.Stat(posFile(dir, i)); err != nil {
			t.Fatalf("after three saves: %v", err)
		}
	}
	wantPositions(t, openPos(t, dir), want)

	// Another source's directory is another store.
	other := openPos(t, filepath.Join(dir, "other"))
	save(t, other, Positions{"shard-0001": "1"})
	wantPositions(t, openPos(t, dir), want)
	wantPositions(t, openPos(t, filepath.Join(dir, "other")), Positions{"shard-0001": "1"})
}

func TestPositionsAllIsACopy(t *testing.T) {
	s := openPos(t, t.TempDir())
	save(t, s, Positions{"a": "1"})
	all := s.All()
	all["a"], all["b"] = "changed", "added"
	wantPositions(t, s, Positions{"a": "1"})
	// Nor does the caller's update map stay shared with the store.
	up := Positions{"c": "3"}
	save(t, s, up)
	up["c"] = "changed"
	wantPositions(t, s, Positions{"a": "1", "c": "3"})
}

// TestPositionsSurviveReopen saves many generations, reopening at every
// step, and compares with a model.
func TestPositionsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	model := Positions{}
	s := openPos(t, dir)
	for i := range 40 {
		up := Positions{fmt.Sprintf("p%d", i%7): fmt.Sprint(i), fmt.Sprintf("p%d", (i*3)%7): fmt.Sprint(i * 10)}
		save(t, s, up)
		maps.Copy(model, up)
		if i%3 == 0 {
			s = openPos(t, dir)
			wantPositions(t, s, model)
		}
	}
	wantPositions(t, openPos(t, dir), model)
	if s.gen != 40 {
		t.Errorf("generation %d after 40 saves", s.gen)
	}
}

// TestPositionsFrameFormat pins the on-disk frame the package comment
// draws, so a change to it is a deliberate one.
func TestPositionsFrameFormat(t *testing.T) {
	dir := t.TempDir()
	s := openPos(t, dir)
	save(t, s, Positions{"b": "2", "a": "1"})
	data, err := os.ReadFile(posFile(dir, 1)) // generation 1 goes to positions.1
	if err != nil {
		t.Fatal(err)
	}
	payload := `{"a":"1","b":"2"}` // keys sorted
	if len(data) != 25+len(payload) {
		t.Fatalf("frame is %d bytes, want an 8-byte frame header, a 17-byte position header and the payload", len(data))
	}
	if binary.LittleEndian.Uint32(data[0:]) != uint32(17+len(payload)) || string(data[8:16]) != "STELEPOS" || data[16] != 1 ||
		binary.BigEndian.Uint64(data[17:]) != 1 || string(data[25:]) != payload {
		t.Fatalf("frame = %q", data)
	}
	if frame.CRC(data[0:4], data[8:]) != binary.LittleEndian.Uint32(data[4:]) {
		t.Fatalf("the frame's CRC-32C does not cover its length and payload (internal/frame)")
	}
	if _, err := os.Stat(posFile(dir, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("positions.0 after the first save: %v", err)
	}
}

// damage is one way a position file can be left by a crash or by rot.
type damage struct {
	name string
	fn   func([]byte) []byte
}

func damages(frameLen int) []damage {
	var out []damage
	// Every torn length: a crash mid-write leaves a prefix (O_TRUNC
	// first, so a prefix of the new frame, possibly empty).
	for n := range frameLen {
		out = append(out, damage{fmt.Sprintf("torn at %d bytes", n), func(b []byte) []byte { return b[:n] }})
	}
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b = append([]byte(nil), b...); b[i] ^= 0x40; return b }
	}
	out = append(out,
		damage{"length", flip(0)},
		damage{"checksum", flip(5)},
		damage{"magic", flip(9)},
		damage{"version", flip(16)},
		damage{"generation", flip(20)},
		damage{"payload", flip(frameLen - 2)},
		damage{"trailing bytes", func(b []byte) []byte { return append(append([]byte(nil), b...), "xx"...) }},
		damage{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }},
	)
	return out
}

// TestPositionsDamagedNewestFallsBack: whatever is wrong with the newest
// file, Open takes the other one, the previous generation (positions.go:
// "the newer file is never touched, so a crash or torn write mid-save
// leaves the previous positions readable"), and the next save goes on.
func TestPositionsDamagedNewestFallsBack(t *testing.T) {
	base := t.TempDir()
	proto := openPos(t, filepath.Join(base, "proto"))
	save(t, proto, Positions{"a": "1", "b": "1"})
	save(t, proto, Positions{"b": "2"}) // generation 2: positions.0
	frame, err := os.ReadFile(posFile(filepath.Join(base, "proto"), 0))
	if err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile(posFile(filepath.Join(base, "proto"), 1))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range damages(len(frame)) {
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(posFile(dir, 1), older, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(posFile(dir, 0), d.fn(frame), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenPositions(dir)
		if err != nil {
			t.Fatalf("%s: newest file damaged: Open = %v, want the previous generation", d.name, err)
		}
		if got := s.All(); !maps.Equal(got, Positions{"a": "1", "b": "1"}) {
			t.Fatalf("%s: positions = %v, want generation 1's", d.name, got)
		}
		// Saving again rewrites the damaged file as generation 2, and
		// that is what the next open reads.
		save(t, s, Positions{"b": "3"})
		s2 := openPos(t, dir)
		if got := s2.All(); !maps.Equal(got, Positions{"a": "1", "b": "3"}) || s2.gen != 2 {
			t.Fatalf("%s: after a save over the damaged file: %v generation %d", d.name, got, s2.gen)
		}
		if got, err := os.ReadFile(posFile(dir, 1)); err != nil || string(got) != string(older) {
			t.Fatalf("%s: the save touched the good older file", d.name)
		}
	}
}

// TestPositionsFirstSaveTorn: a crash during the very first save leaves
// one file, invalid; the source has no positions yet (not an error).
func TestPositionsFirstSaveTorn(t *testing.T) {
	base := t.TempDir()
	proto := openPos(t, filepath.Join(base, "proto"))
	save(t, proto, Positions{"a": "1"})
	frame, err := os.ReadFile(posFile(filepath.Join(base, "proto"), 1))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range damages(len(frame)) {
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(posFile(dir, 1), d.fn(frame), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenPositions(dir)
		if err != nil {
			t.Fatalf("%s: first save torn: Open = %v, want no positions", d.name, err)
		}
		if got := s.All(); len(got) != 0 {
			t.Fatalf("%s: positions %v from a torn first save", d.name, got)
		}
		save(t, s, Positions{"a": "2"})
		wantPositions(t, openPos(t, dir), Positions{"a": "2"})
	}
}

// TestPositionsBothDamaged: with both files present one was written
// completely, so neither being valid is damage, refused with an error
// naming both files and the way out.
func TestPositionsBothDamaged(t *testing.T) {
	dir := t.TempDir()
	s := openPos(t, dir)
	save(t, s, Positions{"a": "1"})
	save(t, s, Positions{"a": "2"})
	for i := range 2 {
		b, err := os.ReadFile(posFile(dir, i))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1
		if err := os.WriteFile(posFile(dir, i), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := OpenPositions(dir)
	if !errors.Is(err, ErrPositionsDamaged) {
		t.Fatalf("Open = %v, want ErrPositionsDamaged", err)
	}
	for _, want := range []string{posFile(dir, 0), posFile(dir, 1), "checksum mismatch", "restore the directory from a backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// Empty files (a crash right after creating the second one, then rot
	// of the first) are damage too.
	for i := range 2 {
		if err := os.WriteFile(posFile(dir, i), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenPositions(dir); !errors.Is(err, ErrPositionsDamaged) || !strings.Contains(err.Error(), "not a position frame") {
		t.Fatalf("two empty files: Open = %v", err)
	}
}

// TestPositionsFrameChecks covers frames whose checksum is right but whose
// content is not what a save writes.
func TestPositionsFrameChecks(t *testing.T) {
	good, err := encodePositions(5, Positions{"a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if gen, pos, err := decodePositions(good); err != nil || gen != 5 || !maps.Equal(pos, Positions{"a": "1"}) {
		t.Fatalf("decode(encode) = %d %v %v", gen, pos, err)
	}
	// A payload that is not a JSON object of strings, checksummed.
	for _, js := range []string{`[1]`, `{"a":1}`, `nul`, ``} {
		b := make([]byte, posHeader, posHeader+len(js))
		copy(b, posMagic)
		b[8] = posVersion
		binary.BigEndian.PutUint64(b[9:], 9)
		if _, _, err := decodePositions(frame.Append(nil, append(b, js...))); err == nil || !strings.Contains(err.Error(), "payload") {
			t.Errorf("payload %q: err = %v", js, err)
		}
	}
	// Another version, checksummed correctly, is refused by version.
	body, _, err := frame.Parse(good, len(good))
	if err != nil {
		t.Fatal(err)
	}
	body = append([]byte(nil), body...)
	body[8] = 2
	if _, _, err := decodePositions(frame.Append(nil, body)); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2 frame: err = %v", err)
	}
	// A valid frame of a higher generation in the other file wins over
	// a lower one, whichever file holds which.
	dir := t.TempDir()
	g7, _ := encodePositions(7, Positions{"a": "seven"})
	g8, _ := encodePositions(8, Positions{"a": "eight"})
	if err := os.WriteFile(posFile(dir, 0), g8, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(posFile(dir, 1), g7, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := openPos(t, dir); s.gen != 8 || s.All()["a"] != "eight" {
		t.Errorf("open took generation %d (%v), want 8", s.gen, s.All())
	}
}

// TestPositionsConcurrentSaves: Save is safe for concurrent use within one
// store; every update lands, and the last save of each writer is what a
// reopen reads. (Two stores on one directory are not supported: a source
// has one.)
func TestPositionsConcurrentSaves(t *testing.T) {
	dir := t.TempDir()
	s := openPos(t, dir)
	const writers, saves = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*saves)
	for w := range writers {
		wg.Go(func() {
			for i := range saves {
				if err := s.Save(context.Background(), Positions{fmt.Sprintf("shard-%d", w): fmt.Sprint(i)}); err != nil {
					errs <- err
				}
				_ = s.All()
				_, _ = s.Get(fmt.Sprintf("shard-%d", (w+1)%writers))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := Positions{}
	for w := range writers {
		want[fmt.Sprintf("shard-%d", w)] = fmt.Sprint(saves - 1)
	}
	wantPositions(t, s, want)
	r := openPos(t, dir)
	wantPositions(t, r, want)
	if r.gen != writers*saves {
		t.Errorf("generation %d after %d saves", r.gen, writers*saves)
	}
}

func TestPositionsErrors(t *testing.T) {
	t.Run("CanceledContext", func(t *testing.T) {
		dir := t.TempDir()
		s := openPos(t, dir)
		save(t, s, Positions{"a": "1"})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Save(ctx, Positions{"a": "2"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Save with a canceled context = %v", err)
		}
		wantPositions(t, s, Positions{"a": "1"})
		wantPositions(t, openPos(t, dir), Positions{"a": "1"})
	})
	t.Run("DirIsAFile", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenPositions(f); err == nil || !strings.Contains(err.Error(), "open position store "+f) {
			t.Fatalf("OpenPositions on a file = %v", err)
		}
	})
	t.Run("UnreadableFile", func(t *testing.T) {
		// A position file that cannot be read (here: a directory in its
		// place) is an error, not "no positions": the source must not
		// start over from the upstream's oldest position by accident.
		dir := t.TempDir()
		if err := os.Mkdir(posFile(dir, 0), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenPositions(dir); err == nil || !strings.Contains(err.Error(), "open position store") {
			t.Fatalf("Open with an unreadable file = %v", err)
		}
	})
	t.Run("FailedSaveKeepsPositions", func(t *testing.T) {
		dir := t.TempDir()
		s := openPos(t, dir)
		save(t, s, Positions{"a": "1"}) // generation 1: positions.1
		// Generation 2 goes to positions.0; put a directory in its way.
		if err := os.Mkdir(posFile(dir, 0), 0o700); err != nil {
			t.Fatal(err)
		}
		err := s.Save(context.Background(), Positions{"a": "2"})
		if err == nil || !strings.Contains(err.Error(), "save source positions") {
			t.Fatalf("Save over a directory = %v", err)
		}
		// The failed save changed nothing, in memory or on disk.
		wantPositions(t, s, Positions{"a": "1"})
		if s.gen != 1 {
			t.Fatalf("generation %d after a failed save", s.gen)
		}
		if err := os.Remove(posFile(dir, 0)); err != nil {
			t.Fatal(err)
		}
		wantPositions(t, openPos(t, dir), Positions{"a": "1"})
		// Once the obstacle is gone the same store saves again.
		save(t, s, Positions{"a": "3"})
		r := openPos(t, dir)
		wantPositions(t, r, Positions{"a": "3"})
		if r.gen != 2 {
			t.Fatalf("generation %d, want 2 (the failed save used none)", r.gen)
		}
	})
}

// TestPositionsUpdateForgets: Update sets and removes in one durable
// write, and a reopened store no longer holds what was removed.
func TestPositionsUpdateForgets(t *testing.T) {
	dir := t.TempDir()
	s := openPos(t, dir)
	save(t, s, Positions{"a": "1", "b": "2", "c": "3"})
	if err := s.Update(context.Background(), Positions{"d": "4"}, []string{"a", "c", "never-there"}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantPositions(t, s, Positions{"b": "2", "d": "4"})
	wantPositions(t, openPos(t, dir), Positions{"b": "2", "d": "4"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Update(ctx, nil, []string{"b"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with a canceled context = %v, want context.Canceled", err)
	}
	wantPositions(t, openPos(t, dir), Positions{"b": "2", "d": "4"})
}
