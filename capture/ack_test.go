package capture

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	stele "github.com/stele/stele"
	"github.com/stele/stele/record"
)

// gateSink records each Append's size; the first Append waits for release,
// so the jobs submitted meanwhile queue up behind it.
type gateSink struct {
	release chan struct{}
	entered chan struct{} // closed when the first Append starts
	mu      sync.Mutex
	sizes   []int
	fail    error
}

func (g *gateSink) Append(_ context.Context, recs []*record.Record) ([]stele.Appended, error) {
	g.mu.Lock()
	first := len(g.sizes) == 0
	g.sizes = append(g.sizes, len(recs))
	g.mu.Unlock()
	if first {
		if g.entered != nil {
			close(g.entered)
		}
		<-g.release
	}
	if g.fail != nil {
		return nil, g.fail
	}
	return make([]stele.Appended, len(recs)), nil
}

func recsOf(n int) []*record.Record {
	out := make([]*record.Record, n)
	for i := range out {
		out[i] = &record.Record{}
	}
	return out
}

func TestAcknowledgerCoalescesQueuedJobs(t *testing.T) {
	ctx := context.Background()
	sink := &gateSink{release: make(chan struct{}), entered: make(chan struct{})}
	var durable []int
	a := NewAcknowledger(ctx, AckOptions[int]{Sink: sink, BatchSize: 10, Queue: 16, Coalesce: 50,
		OnDurable: func(_ context.Context, p int) error { durable = append(durable, p); return nil }})
	// Job 1 blocks in the sink; jobs 2..7 (10 records each) queue up, then
	// a barrier, then job 8.
	if err := a.Submit(ctx, recsOf(10), 1); err != nil {
		t.Fatal(err)
	}
	<-sink.entered
	for p := 2; p <= 7; p++ {
		if err := a.Submit(ctx, recsOf(10), p); err != nil {
			t.Fatal(err)
		}
	}
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(ctx) }()
	for a.Inflight() < 8 { // until the barrier is submitted
		runtime.Gosched()
	}
	if err := a.Submit(ctx, recsOf(30), 8); err != nil {
		t.Fatal(err)
	}
	close(sink.release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	a.Stop()
	// 2..6 merge up to 50 records; 7 does not fit and goes alone; the
	// barrier ends the merging, and 8 after it is one append of 30 (not
	// three BatchSize pieces: it fits Coalesce).
	if want := []int{10, 50, 10, 30}; !slices.Equal(sink.sizes, want) {
		t.Errorf("append sizes %v, want %v", sink.sizes, want)
	}
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(durable, want) {
		t.Errorf("durable positions %v, want each job's, in order: %v", durable, want)
	}
	if p, ok := a.Durable(); !ok || p != 8 {
		t.Errorf("Durable() = %d, %v; want 8", p, ok)
	}
}

func TestAcknowledgerWithoutCoalesceAppendsEachJob(t *testing.T) {
	ctx := context.Background()
	sink := &gateSink{release: make(chan struct{})}
	a := NewAcknowledger(ctx, AckOptions[int]{Sink: sink, BatchSize: 10})
	for p := 1; p <= 3; p++ {
		if err := a.Submit(ctx, recsOf(15), p); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.release)
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	if want := []int{10, 5, 10, 5, 10, 5}; !slices.Equal(sink.sizes, want) {
		t.Errorf("append sizes %v, want BatchSize pieces of each job: %v", sink.sizes, want)
	}
}

func TestAcknowledgerCoalescedFailureMovesNoPosition(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk full")
	sink := &gateSink{release: make(chan struct{}), fail: boom}
	var durable []int
	a := NewAcknowledger(ctx, AckOptions[int]{Sink: sink, BatchSize: 10, Coalesce: 100,
		OnDurable: func(_ context.Context, p int) error { durable = append(durable, p); return nil }})
	for p := 1; p <= 3; p++ {
		if err := a.Submit(ctx, recsOf(10), p); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.release)
	if err := a.Drain(ctx); !errors.Is(err, boom) {
		t.Fatalf("Drain = %v, want the append's error", err)
	}
	a.Stop()
	noneDurable(t, a, durable)
}

// queueSink is an AsyncSink whose queued appends are answered only when
// the test says so, in order; answer n fails with fail[n] when set.
type queueSink struct {
	mu      sync.Mutex
	queued  []int         // sizes, in queue order
	refused []bool        // queued with an after that had failed
	results chan struct{} // one receive answers the oldest unanswered append
	fail    map[int]error
	maxOpen int // most appends queued and not yet answered at once
	open    int
	// gate, when set, holds every append until it is closed: a test
	// closes it once all its jobs are submitted, so the acknowledger
	// sees them waiting; otherwise, ahead of a slow submitter, it would
	// wait for the answer of an append the test answers only once more
	// are queued.
	gate chan struct{}
}

func (q *queueSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	panic("the pipelined acknowledger must queue, not append")
}

func (q *queueSink) AppendAsync(_ context.Context, recs []*record.Record, after func() bool) (func(context.Context) ([]stele.Appended, error), func() bool, error) {
	if q.gate != nil {
		<-q.gate
	}
	q.mu.Lock()
	n := len(q.queued)
	q.queued = append(q.queued, len(recs))
	q.refused = append(q.refused, after != nil && after())
	q.open++
	q.maxOpen = max(q.maxOpen, q.open)
	q.mu.Unlock()
	var failed atomic.Bool
	wait := func(ctx context.Context) ([]stele.Appended, error) {
		<-q.results
		q.mu.Lock()
		defer q.mu.Unlock()
		q.open--
		if err := q.fail[n]; err != nil {
			failed.Store(true)
			return nil, err
		}
		return make([]stele.Appended, len(recs)), nil
	}
	return wait, failed.Load, nil
}

// waitQueued waits until n appends were queued.
func (q *queueSink) waitQueued(n int) {
	for {
		q.mu.Lock()
		got := len(q.queued)
		q.mu.Unlock()
		if got >= n {
			return
		}
		runtime.Gosched()
	}
}

// TestAcknowledgerPipelinesAppends: with an AsyncSink the acknowledger
// queues the next jobs' batches before the first is answered (at most
// Pipeline at once), and each job's position becomes durable only once
// the append holding its last records is answered, in order.
func TestAcknowledgerPipelinesAppends(t *testing.T) {
	ctx := context.Background()
	sink := &queueSink{results: make(chan struct{}), gate: make(chan struct{})}
	var mu sync.Mutex
	var durable []int
	a := NewAcknowledger(ctx, AckOptions[int]{Sink: sink, BatchSize: 10, Pipeline: 3,
		OnDurable: func(_ context.Context, p int) error { mu.Lock(); durable = append(durable, p); mu.Unlock(); return nil }})
	// Job 1 is two batches, job 2 none (its position rides on job 1's
	// last batch), jobs 3 and 4 one each.
	for p, n := range []int{1: 15, 2: 0, 3: 10, 4: 10} {
		if p > 0 {
			if err := a.Submit(ctx, recsOf(n), p); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(sink.gate)
	sink.waitQueued(3)
	mu.Lock()
	if len(durable) != 0 {
		t.Errorf("positions %v durable before any append was answered", durable)
	}
	mu.Unlock()
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(ctx) }()
	for range 4 {
		sink.results <- struct{}{}
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	a.Stop()
	if want := []int{10, 5, 10, 10}; !slices.Equal(sink.queued, want) {
		t.Errorf("queued sizes %v, want %v", sink.queued, want)
	}
	if sink.maxOpen != 3 {
		t.Errorf("at most %d appends queued at once, want Pipeline (3)", sink.maxOpen)
	}
	if want := []int{1, 2, 3, 4}; !slices.Equal(durable, want) {
		t.Errorf("durable positions %v, want %v", durable, want)
	}
}

// TestAcknowledgerPipelinedFailure: when a queued append fails, no
// position becomes durable, not even that of a job queued behind it, and
// the acknowledger refuses further jobs.
func TestAcknowledgerPipelinedFailure(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk full")
	sink := &queueSink{results: make(chan struct{}), fail: map[int]error{0: boom, 1: boom}, gate: make(chan struct{})}
	var durable []int
	a := NewAcknowledger(ctx, AckOptions[int]{Sink: sink, BatchSize: 10, Pipeline: 4,
		OnDurable: func(_ context.Context, p int) error { durable = append(durable, p); return nil }})
	for p := 1; p <= 2; p++ {
		if err := a.Submit(ctx, recsOf(10), p); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.gate)
	sink.waitQueued(2)
	sink.results <- struct{}{}
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(ctx) }()
	if err := <-drained; !errors.Is(err, boom) {
		t.Fatalf("Drain = %v, want the append's error", err)
	}
	if err := a.Submit(ctx, recsOf(1), 3); !errors.Is(err, boom) {
		t.Errorf("Submit after the failure = %v, want it refused", err)
	}
	a.Stop()
	noneDurable(t, a, durable)
	if sink.refused[0] {
		t.Error("the first append was queued behind a failure")
	}
}

// noneDurable checks that after a failed append no position was made
// durable.
func noneDurable(t *testing.T, a *Acknowledger[int], durable []int) {
	t.Helper()
	if len(durable) != 0 {
		t.Errorf("positions %v made durable after a failed append", durable)
	}
	if _, ok := a.Durable(); ok {
		t.Error("Durable() reports a position after a failed append")
	}
}
