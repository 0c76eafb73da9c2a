package logstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// gatedIndex is the real index with fault-injection seams: while a gate is
// held, ApplyPrepared (called by the follower) or the store's clock (called
// by the writer once per commit, via now) waits, which opens the windows
// these tests need on purpose.
type gatedIndex struct {
	*index.Index
	mu            sync.Mutex
	applyGate     chan struct{}
	writerGate    chan struct{}
	applyEntered  chan struct{}
	writerEntered chan struct{}
}

// now is the clock to give the store as Options.Now: the writer reads it at
// the start of every commit, so holding writerGate holds the writer.
func (g *gatedIndex) now() time.Time {
	g.wait(&g.writerGate, g.writerEntered)
	return time.Now()
}

func newGatedIndex(t *testing.T, dir string) *gatedIndex {
	t.Helper()
	ix := openIndex(t, dir)
	t.Cleanup(func() { ix.Close() })
	return &gatedIndex{Index: ix, applyEntered: make(chan struct{}, 1), writerEntered: make(chan struct{}, 1)}
}

func (g *gatedIndex) wait(gate *chan struct{}, entered chan struct{}) {
	g.mu.Lock()
	ch := *gate
	g.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case entered <- struct{}{}:
	default:
	}
	<-ch
}

func (g *gatedIndex) ApplyPrepared(first uint64, entries [][]byte) error {
	g.wait(&g.applyGate, g.applyEntered)
	return g.Index.ApplyPrepared(first, entries)
}

// hold closes gate *which for the returned release function to open.
func (g *gatedIndex) hold(which *chan struct{}) (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	*which = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			*which = nil
			g.mu.Unlock()
			close(ch)
		})
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func openIndexed(t *testing.T, opts logstore.Options) (*logstore.Store, *index.Index) {
	t.Helper()
	dir := t.TempDir()
	ix := openIndex(t, filepath.Join(dir, "index"))
	t.Cleanup(func() { ix.Close() })
	opts.Origin = testOrigin
	opts.Hook = ix
	s, err := logstore.Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ix
}

func namedRecord(id string, i int) *record.Record {
	r := testRecord(i)
	r.ID = id
	return r
}

func TestConcurrentAppend(t *testing.T) {
	s, ix := openIndexed(t, logstore.Options{})
	ctx := context.Background()
	const writers = 32
	type ack struct {
		id  string
		seq uint64
	}
	acks := make([][]ack, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := range 12 {
				n := 1
				if call%3 == 0 {
					n = 1 + (g+call)%9
				}
				recs := make([]*record.Record, n)
				for j := range recs {
					recs[j] = namedRecord(fmt.Sprintf("w%d-c%d-r%d", g, call, j), g*1000+call*10+j)
				}
				res, err := s.Append(ctx, recs)
				if err != nil {
					t.Errorf("writer %d: %v", g, err)
					return
				}
				if len(res) != n {
					t.Errorf("writer %d: %d results for %d records", g, len(res), n)
					return
				}
				for j, r := range res {
					if r.Duplicate || r.ID != recs[j].ID || r.Seq != recs[j].Seq {
						t.Errorf("writer %d: result %+v for record %s with seq %d", g, r, recs[j].ID, recs[j].Seq)
					}
					// One call is committed whole, in order.
					if j > 0 && r.Seq != res[j-1].Seq+1 {
						t.Errorf("writer %d: batch seqs %d then %d", g, res[j-1].Seq, r.Seq)
					}
					if k := len(acks[g]); k > 0 && acks[g][k-1].seq >= r.Seq {
						t.Errorf("writer %d: seq %d acknowledged after %d", g, r.Seq, acks[g][k-1].seq)
					}
					acks[g] = append(acks[g], ack{r.ID, r.Seq})
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	bySeq := map[uint64]string{}
	for _, as := range acks {
		for _, a := range as {
			if prev, ok := bySeq[a.seq]; ok {
				t.Fatalf("seq %d acknowledged for %s and %s", a.seq, prev, a.id)
			}
			bySeq[a.seq] = a.id
		}
	}
	total := uint64(len(bySeq))
	if s.Size() != total {
		t.Fatalf("size %d, %d records acknowledged", s.Size(), total)
	}
	for seq := range total {
		if _, ok := bySeq[seq]; !ok {
			t.Fatalf("seq %d never acknowledged (gap)", seq)
		}
	}
	if err := s.WaitIndexed(ctx, total); err != nil {
		t.Fatal(err)
	}
	if s.Indexed() < total {
		t.Fatalf("Indexed %d after WaitIndexed(%d)", s.Indexed(), total)
	}
	if w, err := ix.Watermark(); err != nil || w != total {
		t.Fatalf("index watermark %d (%v), want %d", w, err, total)
	}
	for seq, id := range bySeq {
		got, ok, err := ix.LookupID(id)
		if err != nil || !ok || got != seq {
			t.Fatalf("lookup %s: %d %v %v, want %d", id, got, ok, err, seq)
		}
		r, err := s.Read(seq)
		if err != nil || r.ID != id {
			t.Fatalf("read %d: %v %v, want id %s", seq, err, r, id)
		}
	}
	var postings int
	if err := ix.Scan(index.SourceList("crm"), false, 0, func(index.Posting) bool { postings++; return true }); err != nil {
		t.Fatal(err)
	}
	if uint64(postings) != total {
		t.Fatalf("source list holds %d postings for %d records", postings, total)
	}
}

func TestConcurrentDuplicates(t *testing.T) {
	s, ix := openIndexed(t, logstore.Options{})
	ctx := context.Background()
	appendN(t, s, 0, 10) // ids id-0..id-9 at seqs 0..9
	const ids = 20
	const writers = 32
	type res struct {
		seq uint64
		dup bool
	}
	results := make([][]map[string]res, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for round := range 3 {
				order := rng.Perm(ids)
				var recs []*record.Record
				if (g+round)%2 == 0 {
					for _, k := range order {
						recs = append(recs, namedRecord(fmt.Sprintf("dup-%d", k), k))
					}
				} else {
					recs = []*record.Record{namedRecord(fmt.Sprintf("dup-%d", order[0]), order[0])}
				}
				// An id already stored before the burst, mixed in.
				recs = append(recs, testRecord(g%10))
				out, err := s.Append(ctx, recs)
				if err != nil {
					t.Errorf("writer %d: %v", g, err)
					return
				}
				m := map[string]res{}
				for i, a := range out {
					if a.ID != recs[i].ID {
						t.Errorf("writer %d: result for %s names %s", g, recs[i].ID, a.ID)
					}
					m[a.ID] = res{a.Seq, a.Duplicate}
				}
				results[g] = append(results[g], m)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if s.Size() != 10+ids {
		t.Fatalf("size %d after the burst, want %d", s.Size(), 10+ids)
	}
	seqOf := map[string]uint64{}
	fresh := map[string]int{}
	for _, rounds := range results {
		for _, m := range rounds {
			for id, r := range m {
				if prev, ok := seqOf[id]; ok && prev != r.seq {
					t.Fatalf("%s acknowledged at seqs %d and %d", id, prev, r.seq)
				}
				seqOf[id] = r.seq
				if !r.dup {
					fresh[id]++
				}
			}
		}
	}
	for k := range ids {
		id := fmt.Sprintf("dup-%d", k)
		if fresh[id] != 1 {
			t.Errorf("%s stored %d times", id, fresh[id])
		}
		if seqOf[id] < 10 {
			t.Errorf("%s at seq %d", id, seqOf[id])
		}
	}
	for k := range 10 {
		id := fmt.Sprintf("id-%d", k)
		if fresh[id] != 0 || seqOf[id] != uint64(k) {
			t.Errorf("%s: stored %d times, seq %d, want its original seq %d", id, fresh[id], seqOf[id], k)
		}
	}

	// Later, once indexed: still duplicates at the same seqs.
	if err := s.WaitIndexed(ctx, s.Size()); err != nil {
		t.Fatal(err)
	}
	for id, seq := range seqOf {
		if got, ok, err := ix.LookupID(id); err != nil || !ok || got != seq {
			t.Fatalf("index: %s at %d %v %v, want %d", id, got, ok, err, seq)
		}
		out, err := s.Append(ctx, []*record.Record{namedRecord(id, 0)})
		if err != nil || !out[0].Duplicate || out[0].Seq != seq {
			t.Fatalf("late resubmission of %s: %+v %v, want duplicate of %d", id, out, err, seq)
		}
	}
	if s.Size() != 10+ids {
		t.Fatalf("resubmissions grew the log to %d", s.Size())
	}
}

// TestDuplicateBeforeIndexed re-appends records whose batch the index has
// not applied yet.
func TestDuplicateBeforeIndexed(t *testing.T) {
	ctx := context.Background()
	t.Run("immediate", func(t *testing.T) {
		s, _ := openIndexed(t, logstore.Options{})
		for i := range 200 {
			first, err := s.Append(ctx, []*record.Record{testRecord(i)})
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.Append(ctx, []*record.Record{testRecord(i)})
			if err != nil || !again[0].Duplicate || again[0].Seq != first[0].Seq {
				t.Fatalf("immediate re-append of id-%d: %+v %v, want duplicate of seq %d", i, again, err, first[0].Seq)
			}
		}
		if s.Size() != 200 {
			t.Fatalf("size %d, want 200", s.Size())
		}
	})
	t.Run("index-held", func(t *testing.T) {
		dir := t.TempDir()
		g := newGatedIndex(t, filepath.Join(dir, "index"))
		s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, Hook: g})
		if err != nil {
			t.Fatal(err)
		}
		release := g.hold(&g.applyGate)
		defer func() {
			release()
			s.Close()
		}()
		appendN(t, s, 0, 5)
		waitFor(t, g.applyEntered, "the follower to reach the index")
		if _, ok, _ := g.Index.LookupID("id-3"); ok {
			t.Fatal("index already holds id-3: the window under test is closed")
		}
		if s.Indexed() != 0 {
			t.Fatalf("Indexed %d while the index is held", s.Indexed())
		}
		out, err := s.Append(ctx, []*record.Record{testRecord(3), namedRecord("new", 99), testRecord(4)})
		if err != nil {
			t.Fatal(err)
		}
		if !out[0].Duplicate || out[0].Seq != 3 || out[1].Duplicate || out[1].Seq != 5 || !out[2].Duplicate || out[2].Seq != 4 {
			t.Fatalf("re-append before indexing: %+v", out)
		}
		if s.Size() != 6 {
			t.Fatalf("size %d, want 6", s.Size())
		}

		// WaitIndexed blocks while the index is held ...
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err = s.WaitIndexed(short, 6)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitIndexed with the index held: %v, want DeadlineExceeded", err)
		}
		// ... and returns once it has caught up.
		done := make(chan error, 1)
		go func() { done <- s.WaitIndexed(ctx, 6) }()
		release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("WaitIndexed did not return after the index caught up")
		}
		if s.Indexed() < 6 {
			t.Fatalf("Indexed %d after WaitIndexed(6)", s.Indexed())
		}
		if seq, ok, err := g.Index.LookupID("new"); err != nil || !ok || seq != 5 {
			t.Fatalf("lookup new: %d %v %v", seq, ok, err)
		}
		out, err = s.Append(ctx, []*record.Record{testRecord(3)})
		if err != nil || !out[0].Duplicate || out[0].Seq != 3 {
			t.Fatalf("re-append after indexing: %+v %v", out, err)
		}
	})
}

func TestAppendContextCancelled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g := newGatedIndex(t, filepath.Join(dir, "index"))
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, Hook: g, Now: g.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 0, 3)

	release := g.hold(&g.writerGate)
	defer release()
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Append(cctx, []*record.Record{testRecord(3)})
		errc <- err
	}()
	waitFor(t, g.writerEntered, "the writer to take the append")
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("append with a cancelled context: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append did not return after its context was cancelled")
	}
	// Not acknowledged does not mean not written: the writer goes on, and a
	// retry with the same id is recognised.
	release()
	out, err := s.Append(ctx, []*record.Record{testRecord(3)})
	if err != nil || len(out) != 1 || out[0].Seq != 3 {
		t.Fatalf("retry: %+v %v", out, err)
	}
	if s.Size() != 4 {
		t.Fatalf("size %d, want 4", s.Size())
	}

	// A context cancelled before the call returns an error too; the held
	// writer cannot acknowledge first.
	release = g.hold(&g.writerGate)
	done, cancel2 := context.WithCancel(ctx)
	cancel2()
	if _, err := s.Append(done, []*record.Record{testRecord(4)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a context cancelled beforehand: %v", err)
	}
	release()
	if err := s.WaitIndexed(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if s.Size() != 5 {
		t.Fatalf("size %d, want 5", s.Size())
	}
}

func TestAppendOverloaded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g := newGatedIndex(t, filepath.Join(dir, "index"))
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, Hook: g, QueueDepth: 1, Now: g.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := g.hold(&g.writerGate)
	defer release()
	errs := make(chan error, 3)
	go func() {
		_, err := s.Append(ctx, []*record.Record{testRecord(0)})
		errs <- err
	}()
	waitFor(t, g.writerEntered, "the writer to take the first append")
	// The writer is busy with the first append: one more fits the queue,
	// the next is pushed back.
	for i := 1; i <= 2; i++ {
		go func() {
			_, err := s.Append(ctx, []*record.Record{testRecord(i)})
			errs <- err
		}()
	}
	select {
	case err := <-errs:
		if !errors.Is(err, stele.ErrOverloaded) {
			t.Fatalf("first answer while the queue is full: %v, want ErrOverloaded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no append was pushed back")
	}
	release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("queued append: %v", err)
		}
	}
	if s.Size() != 2 {
		t.Fatalf("size %d, want 2", s.Size())
	}
}

func TestAppendAfterClose(t *testing.T) {
	s, _ := openIndexed(t, logstore.Options{})
	appendN(t, s, 0, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Append(context.Background(), []*record.Record{testRecord(2)}); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

// TestCloseWhileAppending closes the store under concurrent appends: every
// append either is acknowledged, and then durable and indexed, or fails
// with ErrClosed.
func TestCloseWhileAppending(t *testing.T) {
	dir := t.TempDir()
	ixDir := filepath.Join(dir, "index")
	ix := openIndex(t, ixDir)
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	started := make(chan struct{}, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-%d", g, i)
				out, err := s.Append(context.Background(), []*record.Record{namedRecord(id, i)})
				if errors.Is(err, logstore.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acked[id] = out[0].Seq
				mu.Unlock()
				if i == 3 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range 16 {
		waitFor(t, started, "writers")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = openIndex(t, ixDir)
	defer ix.Close()
	if w, _ := ix.Watermark(); w != uint64(len(acked)) {
		t.Fatalf("index watermark %d after close, %d acknowledged", w, len(acked))
	}
	s, err = logstore.Open(context.Background(), dir, logstore.Options{Origin: testOrigin, Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != uint64(len(acked)) {
		t.Fatalf("size %d after reopen, %d acknowledged", s.Size(), len(acked))
	}
	for id, seq := range acked {
		r, err := s.Read(seq)
		if err != nil || r.ID != id {
			t.Fatalf("read %d: %v %v, want %s", seq, err, r, id)
		}
	}
	if s.LatestCheckpoint().Size != s.Size() {
		t.Fatalf("close left records past the last checkpoint: %d of %d", s.LatestCheckpoint().Size, s.Size())
	}
}

// An appender looks its ids up in the index before the writer commits. An
// id indexed in between (its first copy was committed earlier but not yet
// indexed at the lookup) must still be recognised as a duplicate.
func TestDuplicateIndexedBetweenLookupAndCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g := newGatedIndex(t, filepath.Join(dir, "index"))
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, Hook: g, Now: g.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The first copy is durable but not yet indexed.
	releaseApply := g.hold(&g.applyGate)
	first, err := s.Append(ctx, []*record.Record{testRecord(0)})
	if err != nil || first[0].Seq != 0 {
		t.Fatalf("first append: %+v %v", first, err)
	}
	waitFor(t, g.applyEntered, "the follower to start indexing")

	// The second copy's lookup misses (not indexed yet); hold the writer
	// before it commits.
	releaseWriter := g.hold(&g.writerGate)
	res := make(chan []stele.Appended, 1)
	go func() {
		out, err := s.Append(ctx, []*record.Record{testRecord(0)})
		if err != nil {
			t.Error(err)
		}
		res <- out
	}()
	waitFor(t, g.writerEntered, "the writer to take the second copy")

	// Now the first copy reaches the index, then the writer commits.
	releaseApply()
	if err := s.WaitIndexed(ctx, 1); err != nil {
		t.Fatal(err)
	}
	releaseWriter()
	out := <-res
	if len(out) != 1 || !out[0].Duplicate || out[0].Seq != 0 {
		t.Fatalf("second copy: %+v, want a duplicate of seq 0", out)
	}
	if s.Size() != 1 {
		t.Fatalf("size %d, want 1", s.Size())
	}
}
