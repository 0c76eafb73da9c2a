package auditor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/record"
)

// fakeLog is a test double of the real Stele HTTP API v1 (docs/api.md), for
// unit-level checks of the auditor. It is built from real parts: leaves are
// record.Encode bytes of records validated by record.ParseIngest, the tree is
// a real RFC 6962 tree (roots from merkle/compact, proofs from merkle/proof
// node lists rehashed from a reference subtree-hash implementation) and the
// checkpoints are real signed notes. The real stele binary is exercised
// against this same auditor by the integration tests.
//
// Misbehaviour is injected by editing leaves (rewriting history, truncating)
// or through the hooks, which alter a response after it was built honestly.
type fakeLog struct {
	t      *testing.T
	origin string
	vkey   string

	mu            sync.Mutex
	signer        note.Signer
	leaves        [][]byte
	checkpointRaw func(body string) []byte        // replaces the signed checkpoint
	tamper        func(seq uint64, r *recordBody) // alters a record response
	recordStatus  func(seq uint64) int            // non-zero: answer this status instead
	consistencyN  atomic.Int64
	recordsN      atomic.Int64
	failCP        bool
}

type recordBody struct {
	Record     json.RawMessage `json:"record"`
	Leaf       string          `json:"leaf"`
	LeafHash   string          `json:"leaf_hash"`
	Proof      proofBody       `json:"proof"`
	Checkpoint string          `json:"checkpoint,omitempty"`
}

type proofBody struct {
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	Hashes    []string `json:"hashes"`
}

const testOrigin = "stele.test/log"

func newFakeLog(t *testing.T, n int) (*fakeLog, *httptest.Server) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLog{t: t, origin: testOrigin, vkey: vkey, signer: signer}
	f.append(n)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/checkpoint", f.handleCheckpoint)
	mux.HandleFunc("GET /v1/log/key", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, f.vkey)
	})
	mux.HandleFunc("GET /v1/records/{seq}", f.handleRecord)
	mux.HandleFunc("GET /v1/proof/consistency", f.handleConsistency)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// makeLeaf builds the stored bytes of a real record at seq.
func makeLeaf(t *testing.T, seq uint64, variant string) []byte {
	t.Helper()
	in := fmt.Sprintf(`{"source":{"name":"crm","table":"customers"},"op":"update",`+
		`"key":{"id":%d},"before":{"id":%d,"email":"old@example.com","score":1.50},`+
		`"after":{"id":%d,"email":"new%s@example.com","score":12345678901234567890.5},`+
		`"actor":{"id":"u-%d","app":"billing"},"tx":{"position":"0/%X","index":0},`+
		`"occurred_at":"2026-03-31T12:00:00.123456Z"}`, seq, seq, seq, variant, seq%7, seq)
	r, err := record.ParseIngest([]byte(in), record.IngestOptions{})
	if err != nil {
		t.Fatalf("ParseIngest: %v", err)
	}
	r.Seq = seq
	r.RecordedAt = time.Date(2026, 3, 31, 12, 0, 1, int(seq), time.UTC)
	return record.Encode(r)
}

func (f *fakeLog) append(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.leaves = append(f.leaves, makeLeaf(f.t, uint64(len(f.leaves)), ""))
	}
}

// rewrite replaces leaf seq with a different record at the same seq.
func (f *fakeLog) rewrite(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaves[seq] = makeLeaf(f.t, seq, "-rewritten")
}

func (f *fakeLog) truncate(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaves = f.leaves[:n]
}

func (f *fakeLog) leafHashes() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	hs := make([][]byte, len(f.leaves))
	for i, l := range f.leaves {
		hs[i] = rfc6962.DefaultHasher.HashLeaf(l)
	}
	return hs
}

// refHash is the RFC 6962 MTH of a list of leaf hashes, computed by the
// definition (reference implementation).
func refHash(hs [][]byte) []byte {
	switch len(hs) {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return hs[0]
	}
	k := 1
	for k*2 < len(hs) {
		k *= 2
	}
	return rfc6962.DefaultHasher.HashChildren(refHash(hs[:k]), refHash(hs[k:]))
}

// compactRoot computes the root with the library's compact range.
func compactRoot(t *testing.T, hs [][]byte) []byte {
	t.Helper()
	if len(hs) == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range hs {
		if err := r.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func buildProof(hs [][]byte, nodes proof.Nodes) []string {
	raw := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		begin, end := id.Coverage()
		raw[i] = refHash(hs[begin:end])
	}
	rehashed, err := nodes.Rehash(raw, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		panic(err)
	}
	out := make([]string, len(rehashed))
	for i, h := range rehashed {
		out[i] = b64(h)
	}
	return out
}

func (f *fakeLog) checkpointBody(size uint64, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", f.origin, size, b64(root))
}

func (f *fakeLog) handleCheckpoint(w http.ResponseWriter, _ *http.Request) {
	if f.failCP {
		writeErr(w, http.StatusServiceUnavailable, "starting up")
		return
	}
	hs := f.leafHashes()
	body := f.checkpointBody(uint64(len(hs)), compactRoot(f.t, hs))
	f.mu.Lock()
	signer, raw := f.signer, f.checkpointRaw
	f.mu.Unlock()
	var msg []byte
	if raw != nil {
		msg = raw(body)
	} else {
		var err error
		if msg, err = note.Sign(&note.Note{Text: body}, signer); err != nil {
			f.t.Error(err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(msg)
}

func (f *fakeLog) handleRecord(w http.ResponseWriter, r *http.Request) {
	f.recordsN.Add(1)
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "seq: not a number")
		return
	}
	hs := f.leafHashes()
	size := uint64(len(hs))
	if ts := r.URL.Query().Get("tree_size"); ts != "" {
		n, err := strconv.ParseUint(ts, 10, 64)
		if err != nil || n > size {
			writeErr(w, http.StatusBadRequest, "tree_size: bad or beyond the log")
			return
		}
		size = n
	}
	if f.recordStatus != nil {
		if st := f.recordStatus(seq); st != 0 {
			writeErr(w, st, "injected")
			return
		}
	}
	if seq >= size {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("seq %d: no such record", seq))
		return
	}
	f.mu.Lock()
	leaf := slices.Clone(f.leaves[seq])
	f.mu.Unlock()
	rec, err := record.Decode(leaf)
	if err != nil {
		f.t.Error(err)
	}
	nodes, err := proof.Inclusion(seq, size)
	if err != nil {
		f.t.Error(err)
	}
	body := recordBody{
		Record:   record.AppendJSON(nil, rec),
		Leaf:     base64.StdEncoding.EncodeToString(leaf),
		LeafHash: b64(hs[seq]),
		Proof:    proofBody{LeafIndex: seq, TreeSize: size, Hashes: buildProof(hs[:size], nodes)},
	}
	if f.tamper != nil {
		f.tamper(seq, &body)
	}
	writeJSON(w, http.StatusOK, body)
}

func (f *fakeLog) handleConsistency(w http.ResponseWriter, r *http.Request) {
	f.consistencyN.Add(1)
	hs := f.leafHashes()
	from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	to, err2 := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
	if err1 != nil || err2 != nil || from > to || to > uint64(len(hs)) {
		writeErr(w, http.StatusBadRequest, "bad from/to")
		return
	}
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		f.t.Error(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "hashes": buildProof(hs[:to], nodes)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// --- helpers -------------------------------------------------------------

func opts(f *fakeLog, srv *httptest.Server, statePath string) Options {
	return Options{URL: srv.URL, VerifierKey: f.vkey, StatePath: statePath, HTTPClient: srv.Client()}
}

func mustCheck(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Check(context.Background(), o)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

func readState(t *testing.T, path string) stateFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	return sf
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectErr checks err wraps want and mentions every fragment.
func expectErr(t *testing.T, err, want error, fragments ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v; want it to wrap %v", err, want)
	}
	for _, frag := range fragments {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("error %q does not mention %q", err, frag)
		}
	}
}

// --- the test double itself ------------------------------------------------

// TestFakeLogProofsVerify pins the test double to the library: reference
// roots equal compact roots, and every proof it serves verifies.
func TestFakeLogProofsVerify(t *testing.T) {
	f, _ := newFakeLog(t, 0)
	for n := 1; n <= 33; n++ {
		f.append(1)
		hs := f.leafHashes()
		root := compactRoot(t, hs)
		if !bytes.Equal(root, refHash(hs)) {
			t.Fatalf("size %d: compact root != reference root", n)
		}
		for i := range uint64(n) {
			nodes, _ := proof.Inclusion(i, uint64(n))
			p, _ := decodeHashes(buildProof(hs, nodes))
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, uint64(n), hs[i], p, root); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, n, err)
			}
		}
		for m := uint64(1); m <= uint64(n); m++ {
			nodes, _ := proof.Consistency(m, uint64(n))
			p, _ := decodeHashes(buildProof(hs, nodes))
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, uint64(n), p, refHash(hs[:m]), root); err != nil {
				t.Fatalf("consistency %d->%d: %v", m, n, err)
			}
		}
	}
}

// --- honest log ------------------------------------------------------------

func TestFirstRunWritesState(t *testing.T) {
	f, srv := newFakeLog(t, 10)
	statePath := filepath.Join(t.TempDir(), "audit.json")
	rep := mustCheck(t, opts(f, srv, statePath))

	if rep.Checkpoint.Origin != testOrigin || rep.Checkpoint.Size != 10 {
		t.Errorf("checkpoint = %s/%d", rep.Checkpoint.Origin, rep.Checkpoint.Size)
	}
	if !bytes.Equal(rep.Checkpoint.RootHash, refHash(f.leafHashes())) {
		t.Error("root hash differs from the tree's")
	}
	if rep.Previous != nil {
		t.Errorf("Previous = %+v on a first run", rep.Previous)
	}
	// The default (16) exceeds the size, so every record is checked.
	if want := []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(rep.SpotChecked, want) {
		t.Errorf("SpotChecked = %v, want %v", rep.SpotChecked, want)
	}
	if f.consistencyN.Load() != 0 {
		t.Error("consistency proof fetched without previous state")
	}

	st, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", st.Mode().Perm())
	}
	sf := readState(t, statePath)
	if sf.Origin != testOrigin || sf.Size != 10 || sf.RootHash != b64(rep.Checkpoint.RootHash) ||
		sf.Checkpoint != rep.Checkpoint.Text || sf.CheckedAt.IsZero() {
		t.Errorf("state = %+v", sf)
	}
	if entries, _ := os.ReadDir(filepath.Dir(statePath)); len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the state file (temp file left?)", len(entries))
	}
	for _, want := range []string{"size 10", "first check", "10 records spot-checked", statePath, "OK"} {
		if !strings.Contains(rep.Summary(), want) {
			t.Errorf("summary %q lacks %q", rep.Summary(), want)
		}
	}
}

func TestGrowingLogConsistentAcrossRuns(t *testing.T) {
	f, srv := newFakeLog(t, 0)
	statePath := filepath.Join(t.TempDir(), "audit.json")
	prev := uint64(0)
	// Many size pairs exercise every proof shape (powers of two, odd sizes).
	for _, grow := range []int{1, 1, 1, 1, 3, 1, 7, 1, 15, 6, 27, 64, 100} {
		f.append(grow)
		o := opts(f, srv, statePath)
		o.SpotChecks = 3
		rep := mustCheck(t, o)
		size := rep.Checkpoint.Size
		if size != prev+uint64(grow) {
			t.Fatalf("size %d, want %d", size, prev+uint64(grow))
		}
		if prev > 0 && (rep.Previous == nil || rep.Previous.Size != prev) {
			t.Fatalf("size %d: Previous = %+v, want size %d", size, rep.Previous, prev)
		}
		if !slices.Contains(rep.SpotChecked, size-1) {
			t.Errorf("size %d: newest record not checked: %v", size, rep.SpotChecked)
		}
		if len(rep.SpotChecked) != min(3, int(size)) {
			t.Errorf("size %d: %d seqs checked, want %d", size, len(rep.SpotChecked), min(3, int(size)))
		}
		if size-prev > 1 && prev > 0 {
			n := 0
			for _, s := range rep.SpotChecked {
				if s >= prev {
					n++
				}
			}
			if n < 2 {
				t.Errorf("size %d from %d: only %d checks in the new range: %v", size, prev, n, rep.SpotChecked)
			}
		}
		if sf := readState(t, statePath); sf.Size != size {
			t.Fatalf("state size %d, want %d", sf.Size, size)
		}
		prev = size
	}
	// Sizes 1 -> 2 onward each needed a proof; 0 -> 1 did not.
	if got := f.consistencyN.Load(); got != 12 {
		t.Errorf("%d consistency proofs fetched, want 12", got)
	}
	rep := mustCheck(t, opts(f, srv, statePath))
	if !strings.Contains(rep.Summary(), "unchanged") || f.consistencyN.Load() != 12 {
		t.Errorf("unchanged log: summary %q, %d proofs", rep.Summary(), f.consistencyN.Load())
	}
}

func TestEmptyLog(t *testing.T) {
	f, srv := newFakeLog(t, 0)
	statePath := filepath.Join(t.TempDir(), "audit.json")
	rep := mustCheck(t, opts(f, srv, statePath))
	if rep.Checkpoint.Size != 0 || len(rep.SpotChecked) != 0 {
		t.Fatalf("report %+v", rep)
	}
	f.append(5)
	rep = mustCheck(t, opts(f, srv, statePath))
	if rep.Checkpoint.Size != 5 || rep.Previous.Size != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestNoStatePath(t *testing.T) {
	f, srv := newFakeLog(t, 4)
	rep := mustCheck(t, opts(f, srv, ""))
	if rep.StatePath != "" || strings.Contains(rep.Summary(), "state saved") {
		t.Errorf("report claims a state file: %+v", rep)
	}
}

func TestProgressAndURLPrefix(t *testing.T) {
	f, srv := newFakeLog(t, 50)
	var calls [][2]int
	o := opts(f, srv, "")
	o.URL = srv.URL + "/" // trailing slash is tolerated
	o.SpotChecks = 5
	o.Progress = func(done, total int) { calls = append(calls, [2]int{done, total}) }
	mustCheck(t, o)
	want := [][2]int{{0, 5}, {1, 5}, {2, 5}, {3, 5}, {4, 5}, {5, 5}}
	if !slices.Equal(calls, want) {
		t.Errorf("progress calls %v, want %v", calls, want)
	}
	if f.recordsN.Load() != 5 {
		t.Errorf("%d record fetches, want 5", f.recordsN.Load())
	}
}

func TestServedRecordSemanticallyEqual(t *testing.T) {
	f, srv := newFakeLog(t, 3)
	f.tamper = func(_ uint64, r *recordBody) {
		// Reorder members and add whitespace: still the same record.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.Record, &m); err != nil {
			t.Error(err)
		}
		r.Record, _ = json.MarshalIndent(m, "", "  ")
	}
	mustCheck(t, opts(f, srv, ""))
}

// --- a log that misbehaves -------------------------------------------------

// firstRun verifies an honest log of n records and returns the state path and
// the state bytes that must survive every later failure.
func firstRun(t *testing.T, n int) (*fakeLog, *httptest.Server, string, []byte) {
	t.Helper()
	f, srv := newFakeLog(t, n)
	statePath := filepath.Join(t.TempDir(), "audit.json")
	mustCheck(t, opts(f, srv, statePath))
	return f, srv, statePath, fileBytes(t, statePath)
}

func checkFails(t *testing.T, o Options, statePath string, stateBefore []byte, want error, fragments ...string) {
	t.Helper()
	rep, err := Check(context.Background(), o)
	if rep != nil {
		t.Errorf("report %+v returned with error", rep)
	}
	expectErr(t, err, want, fragments...)
	if statePath != "" && !bytes.Equal(fileBytes(t, statePath), stateBefore) {
		t.Errorf("state file changed after a failed check")
	}
}

func TestForkRewrittenHistoryLargerSize(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 10)
	f.rewrite(3)
	f.append(5)
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrInconsistent, "size 15", "size 10")
	if f.consistencyN.Load() != 1 {
		t.Errorf("%d consistency proofs fetched, want 1", f.consistencyN.Load())
	}
}

func TestForkSameSizeDifferentRoot(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 10)
	f.rewrite(9)
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrInconsistent, "size 10", "fork")
}

func TestForkRewrittenAndTruncatedThenRegrown(t *testing.T) {
	// Drop the last 4 records and append 6 others: larger, but not an
	// extension of what was verified.
	f, srv, statePath, before := firstRun(t, 12)
	f.truncate(8)
	f.mu.Lock()
	for i := 8; i < 14; i++ {
		f.leaves = append(f.leaves, makeLeaf(t, uint64(i), "-other"))
	}
	f.mu.Unlock()
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrInconsistent, "size 14", "size 12")
}

func TestRollback(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 10)
	f.truncate(6)
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrRollback, "size 6", "size 10")
}

func TestWrongKey(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 5)

	// Same name, different key: the checkpoint's signature is unknown.
	_, otherSameName, _ := note.GenerateKey(rand.Reader, testOrigin)
	o := opts(f, srv, "")
	o.VerifierKey = otherSameName
	checkFails(t, o, "", nil, ErrBadSignature, testOrigin)

	// Another log's key entirely.
	_, otherLog, _ := note.GenerateKey(rand.Reader, "elsewhere.test/log")
	o.VerifierKey = otherLog
	checkFails(t, o, "", nil, ErrBadSignature)

	// The server starts signing with a key the auditor does not trust.
	skey, _, _ := note.GenerateKey(rand.Reader, testOrigin)
	s, _ := note.NewSigner(skey)
	f.mu.Lock()
	f.signer = s
	f.mu.Unlock()
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrBadSignature)
}

func TestCorruptedSignature(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 5)
	f.checkpointRaw = func(body string) []byte {
		msg, _ := note.Sign(&note.Note{Text: body}, f.signer)
		// Change the size in the signed text: the signature no longer matches.
		return bytes.Replace(msg, []byte("\n5\n"), []byte("\n6\n"), 1)
	}
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrBadSignature)
}

func TestOriginMustMatchKeyName(t *testing.T) {
	f, srv := newFakeLog(t, 2)
	f.checkpointRaw = func(body string) []byte {
		body = "other.test/log" + body[len(testOrigin):]
		msg, _ := note.Sign(&note.Note{Text: body}, f.signer)
		return msg
	}
	checkFails(t, opts(f, srv, ""), "", nil, ErrBadSignature, "other.test/log", testOrigin)
}

func TestMalformedCheckpointBodies(t *testing.T) {
	root := b64(make([]byte, 32))
	for name, body := range map[string]string{
		"two lines":        testOrigin + "\n5\n",
		"leading zero":     testOrigin + "\n05\n" + root + "\n",
		"negative":         testOrigin + "\n-5\n" + root + "\n",
		"plus sign":        testOrigin + "\n+5\n" + root + "\n",
		"not a number":     testOrigin + "\nfive\n" + root + "\n",
		"overflow":         testOrigin + "\n18446744073709551616\n" + root + "\n",
		"root not base64":  testOrigin + "\n5\n!!!!\n",
		"root too short":   testOrigin + "\n5\n" + b64(make([]byte, 31)) + "\n",
		"root url base64":  testOrigin + "\n5\n" + strings.Repeat("_", 43) + "=\n",
		"empty size line":  testOrigin + "\n\n" + root + "\n",
		"empty extension":  testOrigin + "\n5\n" + root + "\n\n",
		"empty origin":     "\n5\n" + root + "\n",
		"size with spaces": testOrigin + "\n 5\n" + root + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			f, srv := newFakeLog(t, 1)
			f.checkpointRaw = func(string) []byte {
				msg, err := note.Sign(&note.Note{Text: body}, f.signer)
				if err != nil {
					// note refuses some texts outright; serve them unsigned.
					return []byte(body + "\n— " + testOrigin + " AAAA\n")
				}
				return msg
			}
			_, err := Check(context.Background(), opts(f, srv, ""))
			if !errors.Is(err, ErrBadResponse) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("error = %v, want ErrBadResponse", err)
			}
		})
	}
}

func TestNotASignedNote(t *testing.T) {
	f, srv := newFakeLog(t, 1)
	f.checkpointRaw = func(string) []byte { return []byte("<html>maintenance</html>") }
	checkFails(t, opts(f, srv, ""), "", nil, ErrBadResponse, "signed note")
}

func TestTamperedRecords(t *testing.T) {
	const target = 5
	flip := func(s string) string {
		b, _ := base64.StdEncoding.DecodeString(s)
		b[len(b)-1] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	cases := map[string]struct {
		tamper func(r *recordBody)
		frag   string
	}{
		"leaf bytes changed, hash kept": {func(r *recordBody) {
			leaf, _ := base64.StdEncoding.DecodeString(r.Leaf)
			leaf = bytes.Replace(leaf, []byte("billing"), []byte("billinG"), 1)
			r.Leaf = base64.StdEncoding.EncodeToString(leaf)
		}, "leaf_hash"},
		"leaf bytes and hash changed": {func(r *recordBody) {
			leaf, _ := base64.StdEncoding.DecodeString(r.Leaf)
			leaf = bytes.Replace(leaf, []byte("billing"), []byte("billinG"), 1)
			r.Leaf = base64.StdEncoding.EncodeToString(leaf)
			r.LeafHash = b64(rfc6962.DefaultHasher.HashLeaf(leaf))
			r.Record = bytes.Replace(r.Record, []byte("billing"), []byte("billinG"), 1)
		}, "inclusion proof"},
		"proof hash flipped": {func(r *recordBody) {
			r.Proof.Hashes[0] = flip(r.Proof.Hashes[0])
		}, "inclusion proof"},
		"proof truncated": {func(r *recordBody) {
			r.Proof.Hashes = r.Proof.Hashes[:len(r.Proof.Hashes)-1]
		}, "inclusion proof"},
		"proof for another index": {func(r *recordBody) {
			r.Proof.LeafIndex++
		}, "leaf_index 6"},
		"served record differs from leaf": {func(r *recordBody) {
			r.Record = bytes.Replace(r.Record, []byte(`"billing"`), []byte(`"payroll"`), 1)
		}, `"actor"`},
		"served record number text differs": {func(r *recordBody) {
			r.Record = bytes.Replace(r.Record, []byte(`12345678901234567890.5`), []byte(`12345678901234567890.50`), 1)
		}, `"after"`},
		"served record without a member": {func(r *recordBody) {
			var m map[string]json.RawMessage
			json.Unmarshal(r.Record, &m)
			delete(m, "tx")
			r.Record, _ = json.Marshal(m)
		}, `"tx" is missing`},
		"leaf of another seq": {func(r *recordBody) {
			// A record moved: the bytes of seq 4 (with seq 4 in the header)
			// served at seq 5, hash recomputed.
			leaf := makeLeaf(t, target-1, "")
			r.Leaf = base64.StdEncoding.EncodeToString(leaf)
			r.LeafHash = b64(rfc6962.DefaultHasher.HashLeaf(leaf))
		}, "carries seq 4"},
		"leaf not a record": {func(r *recordBody) {
			leaf := []byte{9, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, '{', '}'}
			r.Leaf = base64.StdEncoding.EncodeToString(leaf)
			r.LeafHash = b64(rfc6962.DefaultHasher.HashLeaf(leaf))
		}, "version 9"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, srv, statePath, before := firstRun(t, 10)
			f.append(3)
			f.tamper = func(seq uint64, r *recordBody) {
				if seq == target {
					tc.tamper(r)
				}
			}
			o := opts(f, srv, statePath)
			o.SpotChecks = 1000 // every seq, so the target is always hit
			checkFails(t, o, statePath, before, ErrInclusion, "seq 5", tc.frag)
		})
	}
}

func TestCommittedRecordMissing(t *testing.T) {
	f, srv, statePath, before := firstRun(t, 8)
	f.recordStatus = func(seq uint64) int {
		if seq == 7 {
			return http.StatusNotFound
		}
		return 0
	}
	checkFails(t, opts(f, srv, statePath), statePath, before, ErrInclusion, "seq 7", "404", "size 8")
}

func TestBadResponses(t *testing.T) {
	t.Run("checkpoint unavailable", func(t *testing.T) {
		f, srv, statePath, before := firstRun(t, 3)
		f.failCP = true
		checkFails(t, opts(f, srv, statePath), statePath, before, ErrBadResponse, "503", "starting up")
	})
	t.Run("record 500", func(t *testing.T) {
		f, srv := newFakeLog(t, 3)
		f.recordStatus = func(uint64) int { return http.StatusInternalServerError }
		checkFails(t, opts(f, srv, ""), "", nil, ErrBadResponse, "500", "injected")
	})
	t.Run("proof hash not base64", func(t *testing.T) {
		f, srv := newFakeLog(t, 3)
		f.tamper = func(_ uint64, r *recordBody) { r.Proof.Hashes[0] = "%%%" }
		checkFails(t, opts(f, srv, ""), "", nil, ErrBadResponse, "seq ")
	})
}

func TestStateFileProblems(t *testing.T) {
	f, srv := newFakeLog(t, 3)
	dir := t.TempDir()

	corrupt := filepath.Join(dir, "corrupt.json")
	os.WriteFile(corrupt, []byte("{not json"), 0o600)
	checkFails(t, opts(f, srv, corrupt), corrupt, []byte("{not json"), ErrState, corrupt)

	// A state file from another log is refused, not overwritten.
	other := filepath.Join(dir, "other.json")
	data := []byte(`{"origin":"elsewhere.test/log","size":1,"root_hash":"` + b64(make([]byte, 32)) + `","checked_at":"2026-01-01T00:00:00Z"}`)
	os.WriteFile(other, data, 0o600)
	checkFails(t, opts(f, srv, other), other, data, ErrState, "elsewhere.test/log")

	// The saved checkpoint must still verify and agree with the fields.
	good := filepath.Join(dir, "good.json")
	mustCheck(t, opts(f, srv, good))
	sf := readState(t, good)
	sf.Size = 2
	edited, _ := json.Marshal(sf)
	os.WriteFile(good, edited, 0o600)
	checkFails(t, opts(f, srv, good), good, edited, ErrState, "disagrees")

	// A hand-written state (no checkpoint text) is accepted.
	hand := filepath.Join(dir, "hand.json")
	root := refHash(f.leafHashes()[:2])
	os.WriteFile(hand, []byte(`{"origin":"`+testOrigin+`","size":2,"root_hash":"`+b64(root)+`","checked_at":"2026-01-01T00:00:00Z"}`), 0o600)
	rep := mustCheck(t, opts(f, srv, hand))
	if rep.Previous == nil || rep.Previous.Size != 2 {
		t.Fatalf("Previous = %+v", rep.Previous)
	}
}

func TestBadOptions(t *testing.T) {
	f, srv := newFakeLog(t, 1)
	for name, mod := range map[string]func(*Options){
		"no URL":         func(o *Options) { o.URL = "" },
		"ftp URL":        func(o *Options) { o.URL = "ftp://x" },
		"URL with query": func(o *Options) { o.URL = srv.URL + "?a=b" },
		"bad key":        func(o *Options) { o.VerifierKey = "nonsense" },
		"negative spot":  func(o *Options) { o.SpotChecks = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			o := opts(f, srv, "")
			mod(&o)
			_, err := Check(context.Background(), o)
			expectErr(t, err, ErrOptions)
		})
	}
}

func TestContextCancelled(t *testing.T) {
	f, srv := newFakeLog(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Check(ctx, opts(f, srv, ""))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

func TestPickSeqs(t *testing.T) {
	for _, tc := range []struct {
		size, old uint64
		prev      bool
		n         int
	}{
		{1, 0, false, 1}, {10, 0, false, 3}, {10, 0, false, 10}, {10, 0, false, 50},
		{100, 90, true, 2}, {100, 99, true, 2}, {1000, 10, true, 900}, {1000, 998, true, 999},
		{1 << 40, 1<<40 - 5, true, 16},
	} {
		for range 20 {
			got := pickSeqs(tc.size, tc.old, tc.prev, tc.n)
			want := min(uint64(tc.n), tc.size)
			if uint64(len(got)) != want {
				t.Fatalf("%+v: %d seqs, want %d", tc, len(got), want)
			}
			if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Fatalf("%+v: not sorted and distinct: %v", tc, got)
			}
			if got[len(got)-1] != tc.size-1 {
				t.Fatalf("%+v: newest seq missing", tc)
			}
			if tc.prev && tc.n > 1 && tc.size-tc.old > 1 {
				inNew := 0
				for _, s := range got {
					if s >= tc.old {
						inNew++
					}
				}
				if inNew < 2 {
					t.Fatalf("%+v: %d seqs in the new range: %v", tc, inNew, got)
				}
			}
		}
	}
	if pickSeqs(0, 0, false, 5) != nil {
		t.Error("empty tree yields seqs")
	}
}
