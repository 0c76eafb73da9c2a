package integration_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// On-disk format (logstore/doc.go): records.log is a sequence of frames, one per
// record in seq order: u32 LE payload length, u32 LE CRC-32C of length and
// payload, payload (the stored record bytes). records.idx holds one u64 LE
// frame offset per seq. tree/L00 holds the 32-byte leaf hashes.
const frameHeader = 8

// store is a data directory's raw files, for tampering.
type store struct {
	t   *testing.T
	dir string
	log []byte
	off []int64 // frame offset per seq, from records.idx
}

func readStore(t *testing.T, dir string) *store {
	t.Helper()
	st := &store{t: t, dir: dir}
	var err error
	if st.log, err = os.ReadFile(filepath.Join(dir, "records.log")); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(dir, "records.idx"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+8 <= len(idx); i += 8 {
		st.off = append(st.off, int64(binary.LittleEndian.Uint64(idx[i:])))
	}
	// The index must describe the frames exactly; a batch trailer frame
	// (payload tag 0xB7, logstore/doc.go) follows each group commit and
	// has no index entry.
	end := int64(0)
	skipTrailers := func() {
		for end+frameHeader < int64(len(st.log)) && st.log[end+frameHeader] == 0xB7 {
			end += frameHeader + int64(binary.LittleEndian.Uint32(st.log[end:]))
		}
	}
	for seq, off := range st.off {
		skipTrailers()
		if off != end {
			t.Fatalf("records.idx: seq %d at offset %d, but the previous frame ends at %d", seq, off, end)
		}
		end = off + frameHeader + int64(binary.LittleEndian.Uint32(st.log[off:]))
	}
	skipTrailers()
	if end != int64(len(st.log)) {
		t.Fatalf("records.log is %d bytes, its frames end at %d", len(st.log), end)
	}
	return st
}

// frame returns the bounds of frame seq.
func (st *store) frame(seq int) (start, end int64) {
	start = st.off[seq]
	return start, start + frameHeader + int64(binary.LittleEndian.Uint32(st.log[start:]))
}

func (st *store) writeLog(b []byte) {
	st.t.Helper()
	if err := os.WriteFile(filepath.Join(st.dir, "records.log"), b, 0o644); err != nil {
		st.t.Fatal(err)
	}
}

func (st *store) flipLogByte(off int64) {
	b := bytes.Clone(st.log)
	b[off] ^= 0x01
	st.writeLog(b)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// buildTamperStore runs a server on dir, appends 200 records in four
// batches with a checkpoint after each, and stops it gracefully.
func buildTamperStore(t *testing.T, dir string) {
	t.Helper()
	s := startServer(t, dir)
	vkey := s.verifierKey()
	var sizes []uint64
	for b := range 4 {
		var recs []string
		for i := range 50 {
			n := b*50 + i
			recs = append(recs, fmt.Sprintf(`{"id":"rec-%d","source":{"name":"crm","table":"customers"},"op":"update","key":{"id":%d},"after":{"id":%d,"note":"original-%d"},"actor":{"id":"u%d"}}`, n, n%17, n%17, n, n%5))
		}
		s.post("application/json", []byte("["+strings.Join(recs, ",")+"]"))
		sizes = append(sizes, s.checkpoint(vkey).size)
	}
	if sizes[3] != 200 {
		t.Fatalf("checkpoint sizes %v, want the last to be 200", sizes)
	}
	s.stop()
	out := mustStele(t, "verify", "--data", dir)
	if !strings.Contains(out, "verified 200 records") {
		t.Fatalf("stele verify on the untouched store:\n%s", out)
	}
	// Several checkpoints, the last covering all 200 records.
	cps, err := os.ReadFile(filepath.Join(dir, "checkpoints.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(cps, []byte("\n200\n")); n == 0 {
		t.Fatal("no checkpoint of size 200 in checkpoints.log")
	}
}

func TestTamper(t *testing.T) {
	t.Parallel()
	const k = 57 // inside the checkpointed prefix, not on a subtree boundary
	cases := []struct {
		name    string
		badSeq  int
		tamper  func(st *store)
		logSame bool // the tampering left records.log alone
	}{
		{"flip a byte in the body of record k", k, func(st *store) {
			start, end := st.frame(k)
			st.flipLogByte(start + frameHeader + leafHeader + (end-start-frameHeader-leafHeader)/2)
		}, false},
		{"flip a byte in the seq of record k", k, func(st *store) {
			start, _ := st.frame(k)
			st.flipLogByte(start + frameHeader + 8) // low byte of the seq
		}, false},
		{"flip a length byte in the header of frame k", k, func(st *store) {
			start, _ := st.frame(k)
			st.flipLogByte(start)
		}, false},
		{"flip the top length byte of frame k", k, func(st *store) {
			b := bytes.Clone(st.log)
			start, _ := st.frame(k)
			b[start+3] ^= 0x80
			st.writeLog(b)
		}, false},
		{"flip a checksum byte in the header of frame k", k, func(st *store) {
			start, _ := st.frame(k)
			st.flipLogByte(start + 5)
		}, false},
		{"truncate records.log inside record k", k, func(st *store) {
			start, end := st.frame(k)
			st.writeLog(st.log[:start+(end-start)/2])
		}, false},
		{"truncate records.log inside the header of frame k", k, func(st *store) {
			start, _ := st.frame(k)
			st.writeLog(st.log[:start+3])
		}, false},
		{"delete record k", k, func(st *store) {
			start, end := st.frame(k)
			st.writeLog(append(bytes.Clone(st.log[:start]), st.log[end:]...))
		}, false},
		{"swap records k and k+1", k, func(st *store) {
			s0, e0 := st.frame(k)
			_, e1 := st.frame(k + 1)
			b := bytes.Clone(st.log[:s0])
			b = append(b, st.log[e0:e1]...)
			b = append(b, st.log[s0:e0]...)
			st.writeLog(append(b, st.log[e1:]...))
		}, false},
		{"insert a copy of record k after it", k + 1, func(st *store) {
			s0, e0 := st.frame(k)
			b := bytes.Clone(st.log[:e0])
			b = append(b, st.log[s0:e0]...)
			st.writeLog(append(b, st.log[e0:]...))
		}, false},
		{"rewrite record k with a valid checksum", k, func(st *store) {
			start, end := st.frame(k)
			b := bytes.Clone(st.log)
			payload := b[start+frameHeader : end]
			i := bytes.Index(payload, []byte(`"original-`))
			if i < 0 {
				st.t.Fatalf("record %d: %q", k, payload)
			}
			payload[i+1] = 'O' // same length, still valid JSON
			crc := crc32.Update(0, castagnoli, b[start:start+4])
			crc = crc32.Update(crc, castagnoli, payload)
			binary.LittleEndian.PutUint32(b[start+4:], crc)
			st.writeLog(b)
		}, false},
		{"flip a byte of leaf k in tree/L00", k, func(st *store) {
			path := filepath.Join(st.dir, "tree", "L00")
			b, err := os.ReadFile(path)
			if err != nil {
				st.t.Fatal(err)
			}
			if len(b) != 32*200 {
				st.t.Fatalf("tree/L00 is %d bytes, want %d", len(b), 32*200)
			}
			b[32*k+7] ^= 0x01
			if err := os.WriteFile(path, b, 0o644); err != nil {
				st.t.Fatal(err)
			}
		}, true},
		// The last record was acknowledged and covered by the final
		// checkpoint: damage there is not a torn tail to cut.
		{"flip a byte in the body of the last record", 199, func(st *store) {
			start, end := st.frame(199)
			st.flipLogByte(start + frameHeader + leafHeader + (end-start-frameHeader-leafHeader)/2)
		}, false},
		{"flip a length byte of the last frame", 199, func(st *store) {
			start, _ := st.frame(199)
			st.flipLogByte(start)
		}, false},
		{"truncate records.log inside the last record", 199, func(st *store) {
			start, end := st.frame(199)
			st.writeLog(st.log[:start+(end-start)/2])
		}, false},
		{"delete the last record", 199, func(st *store) {
			start, _ := st.frame(199)
			st.writeLog(st.log[:start])
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			buildTamperStore(t, dir)
			st := readStore(t, dir)
			if len(st.off) != 200 {
				t.Fatalf("records.idx holds %d entries, want 200", len(st.off))
			}
			c.tamper(st)
			tampered, err := os.ReadFile(filepath.Join(dir, "records.log"))
			if err != nil {
				t.Fatal(err)
			}
			if c.logSame != bytes.Equal(tampered, st.log) {
				t.Fatalf("tampering changed records.log: %v, want %v", !bytes.Equal(tampered, st.log), !c.logSame)
			}

			// Offline verification fails and names the first bad seq.
			out, code := stele(t, "verify", "--data", dir)
			if code == 0 {
				t.Fatalf("stele verify --data passed a tampered store:\n%s", out)
			}
			want := regexp.MustCompile(fmt.Sprintf(`first bad seq %d\b`, c.badSeq))
			if !want.MatchString(out) {
				t.Errorf("stele verify --data (exit %d) does not name first bad seq %d:\n%s", code, c.badSeq, out)
			} else {
				t.Logf("stele verify --data (exit %d): %s", code, strings.TrimSpace(out))
			}

			// A server on the tampered store never says it is healthy.
			s := newServer(t, dir)
			s.start()
			h := waitTampered(t, s)
			t.Logf("/healthz: %+v", h)
			r := s.do(http.MethodGet, "/v1/records?limit=1", "", nil)
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("GET /v1/records on a tampered log: %s, want 503", r)
			}
			r = s.do(http.MethodGet, "/v1/records/0", "", nil)
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("GET /v1/records/0 on a tampered log: %s, want 503", r)
			}
			r = s.do(http.MethodPost, "/v1/records", "application/json", []byte(good("after-tamper")))
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("POST /v1/records on a tampered log: %s, want 503", r)
			}
			if r := s.do(http.MethodGet, "/v1/log/key", "", nil); r.status != http.StatusOK {
				t.Errorf("GET /v1/log/key on a tampered log: %s, want 200 (it is evidence)", r)
			}
			// The last signed checkpoint stays available as evidence whether
			// the damage was caught at open or by the start-up verification.
			if r := s.do(http.MethodGet, "/v1/checkpoint", "", nil); r.status != http.StatusOK {
				t.Errorf("GET /v1/checkpoint on a tampered log: %s, want 200", r)
			}
			if code, h, err := s.healthz(); err != nil || code == http.StatusOK {
				t.Errorf("/healthz after the checks: %d %+v %v", code, h, err)
			}
			s.stop()

			// The server destroyed nothing: no "torn tail" was cut.
			after, err := os.ReadFile(filepath.Join(dir, "records.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, tampered) {
				t.Errorf("the server changed records.log from %d to %d bytes", len(tampered), len(after))
			}
			if _, err := os.Stat(filepath.Join(dir, "quarantine")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the server quarantined part of the log: %v", err)
			}
			out2, code2 := stele(t, "verify", "--data", dir)
			if code2 == 0 || !want.MatchString(out2) {
				t.Errorf("stele verify --data after the server ran (exit %d):\n%s", code2, out2)
			}
		})
	}
}

// waitTampered polls /healthz until it reports "tampered"; a 200 on the
// way fails the test.
func waitTampered(t *testing.T, s *server) health {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		code, h, err := s.healthz()
		switch {
		case err != nil:
		case code == http.StatusOK:
			t.Fatalf("/healthz on a tampered log: 200 %+v", h)
		case code == http.StatusServiceUnavailable && h.Status == "tampered":
			if h.Detail == "" {
				t.Errorf("/healthz says tampered without detail")
			}
			return h
		case code == http.StatusServiceUnavailable && h.Status == "verifying":
		default:
			t.Fatalf("/healthz on a tampered log: %d %+v", code, h)
		}
		select {
		case <-s.done:
			t.Fatalf("stele serve exited on a tampered log: %v", s.exitErr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(h)
			t.Fatalf("/healthz did not report tampered within %v (last %d %s %v)", startDeadline, code, b, err)
		}
	}
}

// TestTornTail: bytes after the last checkpointed record that do not form
// a record are an unacknowledged write cut short by a crash. The server cuts
// them off (keeping a copy) and serves the log; nothing acknowledged is lost.
func TestTornTail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tail func(st *store) []byte
	}{
		{"partial frame", func(st *store) []byte {
			start, end := st.frame(199)
			frame := st.log[start:end]
			return frame[:len(frame)/2]
		}},
		{"partial header", func(*store) []byte { return []byte{0x40, 0x01, 0} }},
		{"zero-filled block", func(*store) []byte { return make([]byte, 4096) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			buildTamperStore(t, dir)
			st := readStore(t, dir)
			st.writeLog(append(bytes.Clone(st.log), c.tail(st)...))

			out, code := stele(t, "verify", "--data", dir)
			// A zero-filled tail is what ext4 may leave after a power loss:
			// the offline verifier and the server agree that it is an
			// interrupted write, not damage.
			if code != 0 {
				t.Fatalf("stele verify --data fails (exit %d) on a tail the server cuts as torn:\n%s", code, out)
			} else if !strings.Contains(out, "partial write") {
				t.Errorf("stele verify --data does not mention the torn tail:\n%s", out)
			}

			s := startServer(t, dir)
			if got := s.size(); got != 200 {
				t.Fatalf("size %d after cutting the torn tail, want 200", got)
			}
			got := s.post("application/json", []byte(good("after-torn-tail")))
			if got[0].Seq != 200 || got[0].Duplicate {
				t.Fatalf("append after the cut: %+v, want seq 200", got[0])
			}
			s.stop()
			after, err := os.ReadFile(filepath.Join(dir, "records.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after[:len(st.log)], st.log) {
				t.Error("cutting the torn tail changed the records before it")
			}
			q, err := filepath.Glob(filepath.Join(dir, "quarantine", "*"))
			if err != nil || len(q) != 1 {
				t.Errorf("quarantine holds %v (%v), want the cut tail", q, err)
			} else if b, _ := os.ReadFile(q[0]); !bytes.Equal(b, c.tail(st)) {
				t.Errorf("quarantined %d bytes, want the %d-byte tail", len(b), len(c.tail(st)))
			}
			mustStele(t, "verify", "--data", dir)
		})
	}
}
