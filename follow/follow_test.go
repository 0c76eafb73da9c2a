package follow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

var t0 = time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *logstore.Store {
	t.Helper()
	s, err := logstore.Open(context.Background(), t.TempDir(), logstore.Options{Origin: "test.example/log", Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t *testing.T, s *logstore.Store, n int) {
	t.Helper()
	recs := make([]*record.Record, n)
	for i := range recs {
		k := int(s.Size()) + i
		recs[i] = &record.Record{
			ID:         fmt.Sprintf("id-%d", k),
			Source:     record.Source{Name: "crm", Kind: "http", Table: "customers"},
			Op:         record.OpInsert,
			Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, k)),
			After:      json.RawMessage(fmt.Sprintf(`{"id":%d}`, k)),
			OccurredAt: t0,
		}
	}
	if _, err := s.Append(context.Background(), recs); err != nil {
		t.Fatalf("append: %v", err)
	}
}

// tracedLog reports each call the follower makes to the log, in order, on
// an unbuffered channel, and hands out change channels the test closes: the
// test sees exactly when the follower reads and when it waits.
type tracedLog struct {
	*logstore.Store
	events chan event
}

type event struct {
	kind string // "changed" or "size"
	ch   chan struct{}
	size uint64
}

func (l *tracedLog) Changed() <-chan struct{} {
	ch := make(chan struct{})
	l.events <- event{kind: "changed", ch: ch}
	return ch
}

func (l *tracedLog) Size() uint64 {
	n := l.Store.Size()
	l.events <- event{kind: "size", size: n}
	return n
}

func (l *tracedLog) expect(t *testing.T, kind string) event {
	t.Helper()
	ev := <-l.events
	if ev.kind != kind {
		t.Fatalf("follower called %s (size %d), want %s", ev.kind, ev.size, kind)
	}
	return ev
}

func seqs(b follow.Batch) []uint64 {
	out := make([]uint64, len(b.Records))
	for i, r := range b.Records {
		out[i] = r.Seq
	}
	return out
}

// TestWakesOnChangeBatchesAndStops: a follower reads what is there in
// batches of at most Batch, then waits on the log's change channel without
// touching the log again until it is closed, and ends with its context.
func TestWakesOnChangeBatchesAndStops(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 3)
	lg := &tracedLog{Store: s, events: make(chan event)}
	batches := make(chan follow.Batch)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- follow.New(lg, follow.Options{Batch: 2}).Run(ctx, 0, func(_ context.Context, b follow.Batch) error {
			batches <- follow.Batch{Records: append([]*record.Record(nil), b.Records...), Size: b.Size}
			return nil
		})
	}()

	lg.expect(t, "changed")
	if ev := lg.expect(t, "size"); ev.size != 3 {
		t.Fatalf("size %d, want 3", ev.size)
	}
	if b := <-batches; fmt.Sprint(seqs(b)) != "[0 1]" || b.CaughtUp() {
		t.Fatalf("first batch %v (caught up %t), want [0 1] not caught up", seqs(b), b.CaughtUp())
	}
	lg.expect(t, "changed")
	lg.expect(t, "size")
	if b := <-batches; fmt.Sprint(seqs(b)) != "[2]" || !b.CaughtUp() {
		t.Fatalf("second batch %v (caught up %t), want [2] caught up", seqs(b), b.CaughtUp())
	}
	wait := lg.expect(t, "changed")
	lg.expect(t, "size")
	// Now the follower waits on wait.ch. New records alone must not move it;
	// the next call it makes must come after the channel closes.
	appendN(t, s, 2)
	close(wait.ch)
	lg.expect(t, "changed")
	if ev := lg.expect(t, "size"); ev.size != 5 {
		t.Fatalf("size after wake %d, want 5", ev.size)
	}
	if b := <-batches; fmt.Sprint(seqs(b)) != "[3 4]" {
		t.Fatalf("batch after wake %v, want [3 4]", seqs(b))
	}
	lg.expect(t, "changed")
	lg.expect(t, "size")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
}

// TestWakesOnStoreAppend: with the real store's notification, an append
// after the follower caught up reaches the callback.
func TestWakesOnStoreAppend(t *testing.T) {
	s := openStore(t)
	got := make(chan uint64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- follow.New(s, follow.Options{}).Run(ctx, 0, func(_ context.Context, b follow.Batch) error {
			for _, r := range b.Records {
				got <- r.Seq
			}
			return nil
		})
	}()
	for i := range uint64(3) {
		appendN(t, s, 1)
		if seq := <-got; seq != i {
			t.Fatalf("got seq %d, want %d", seq, i)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

func TestStartsAtSeqAndRefusesBeyondEnd(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first uint64 = 99
	err := follow.New(s, follow.Options{}).Run(ctx, 3, func(_ context.Context, b follow.Batch) error {
		first = b.Records[0].Seq
		if !b.CaughtUp() || b.Next() != 5 {
			t.Errorf("batch %v: next %d caught up %t, want 5 and true", seqs(b), b.Next(), b.CaughtUp())
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || first != 3 {
		t.Fatalf("Run from 3: err %v, first seq %d; want context.Canceled and 3", err, first)
	}
	err = follow.New(s, follow.Options{Name: "test"}).Run(context.Background(), 6, func(context.Context, follow.Batch) error {
		t.Fatal("callback called for a start beyond the end")
		return nil
	})
	if !errors.Is(err, follow.ErrAhead) {
		t.Fatalf("Run from 6 of 5: %v, want ErrAhead", err)
	}
}

var errStop = errors.New("consumer stops")

func TestCallbackAndIdleErrorsEndRun(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 3)
	err := follow.New(s, follow.Options{}).Run(context.Background(), 0, func(context.Context, follow.Batch) error {
		return fmt.Errorf("apply: %w", errStop)
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Run with failing callback: %v, want errStop", err)
	}

	var idleAt uint64 = 99
	err = follow.New(s, follow.Options{IdleEvery: time.Millisecond, Idle: func(_ context.Context, next uint64) error {
		idleAt = next
		return errStop
	}}).Run(context.Background(), 0, func(context.Context, follow.Batch) error { return nil })
	if !errors.Is(err, errStop) || idleAt != 3 {
		t.Fatalf("Run with failing Idle: err %v at %d, want errStop at 3", err, idleAt)
	}
}

// brokenLog fails reading one seq, as a damaged frame would.
type brokenLog struct {
	*logstore.Store
	bad uint64
}

var errDamaged = errors.New("frame damaged")

func (l brokenLog) ReadRaw(seq uint64) ([]byte, error) {
	if seq == l.bad {
		return nil, errDamaged
	}
	return l.Store.ReadRaw(seq)
}

func TestReadErrorNamesTheSeqAndSkipsNothing(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 6)
	var seen []uint64
	err := follow.New(brokenLog{s, 4}, follow.Options{Batch: 3}).Run(context.Background(), 0, func(_ context.Context, b follow.Batch) error {
		seen = append(seen, seqs(b)...)
		return nil
	})
	var re *follow.ReadError
	if !errors.As(err, &re) || re.Seq != 4 || !errors.Is(err, errDamaged) {
		t.Fatalf("Run over a damaged record: %v, want *ReadError for seq 4 wrapping errDamaged", err)
	}
	if fmt.Sprint(seen) != "[0 1 2]" {
		t.Fatalf("records handed before the damaged one: %v, want [0 1 2] (the batch holding it is not handed)", seen)
	}
}

// metricValues gathers reg and returns name{follower=f} → value.
func metricValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{" + m.GetLabel()[0].GetValue() + "}"
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func checkLag(t *testing.T, reg *prometheus.Registry, name string, behind, seconds, processed, running float64) {
	t.Helper()
	v := metricValues(t, reg)
	got := [4]float64{v["stele_follow_behind_records{"+name+"}"], v["stele_follow_behind_seconds{"+name+"}"],
		v["stele_follow_processed_records_total{"+name+"}"], v["stele_follow_running{"+name+"}"]}
	if want := [4]float64{behind, seconds, processed, running}; got != want {
		t.Fatalf("%s: behind records, behind seconds, processed, running = %v, want %v", name, got, want)
	}
}

// TestLagMetrics: while the callback holds a batch (backpressure: the next
// batch is not read), the backlog and the age of the oldest unprocessed
// record grow; they fall to 0 once caught up, and processed stays counted
// after the follower ends.
func TestLagMetrics(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 10)
	m := follow.NewMetrics(func() time.Time { return t0.Add(90 * time.Second) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	entered := make(chan follow.Batch)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- follow.New(s, follow.Options{Name: "pub", Batch: 4, Metrics: m}).Run(ctx, 0, func(_ context.Context, b follow.Batch) error {
			entered <- b
			<-release
			return nil
		})
	}()
	<-entered // holds 0..3
	checkLag(t, reg, "pub", 10, 90, 0, 1)
	appendN(t, s, 2)
	checkLag(t, reg, "pub", 12, 90, 0, 1)
	release <- struct{}{}
	if b := <-entered; b.Records[0].Seq != 4 {
		t.Fatalf("second batch starts at %d, want 4", b.Records[0].Seq)
	}
	checkLag(t, reg, "pub", 8, 90, 4, 1)
	release <- struct{}{}
	<-entered // 8..11
	release <- struct{}{}
	// Caught up at 12: wait until the follower has recorded it.
	for metricValues(t, reg)["stele_follow_processed_records_total{pub}"] != 12 {
		time.Sleep(time.Millisecond)
	}
	checkLag(t, reg, "pub", 0, 0, 12, 1)
	cancel()
	<-done
	checkLag(t, reg, "pub", 0, 0, 12, 0)

	// A second follower of the same name adds to processed; the index
	// reports through Observe with the same metrics.
	var indexed uint64 = 2
	stop := m.Observe("index", s, func() uint64 { return indexed })
	checkLag(t, reg, "index", 10, 90, 0, 1)
	indexed = 12
	checkLag(t, reg, "index", 0, 0, 10, 1)
	stop()
	checkLag(t, reg, "index", 0, 0, 10, 0)
}

// TestRunRawHandsOutStoredBytes: RunRaw delivers every record's stored
// bytes in log order, in batches that name their first seq, from the
// start it was given, and waits for the log to grow like Run.
func TestRunRawHandsOutStoredBytes(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 7)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := follow.New(s, follow.Options{Batch: 3})
	var got []uint64
	done := make(chan error, 1)
	go func() {
		done <- f.RunRaw(ctx, 2, func(_ context.Context, b follow.RawBatch) error {
			if len(b.Records) == 0 || len(b.Records) > 3 {
				return fmt.Errorf("batch of %d records", len(b.Records))
			}
			for i, raw := range b.Records {
				want, err := s.ReadRaw(b.From + uint64(i))
				if err != nil {
					return err
				}
				if string(raw) != string(want) {
					return fmt.Errorf("record %d: bytes differ from ReadRaw's", b.From+uint64(i))
				}
				got = append(got, b.From+uint64(i))
			}
			if b.From+uint64(len(b.Records)) == 12 {
				cancel()
			}
			return nil
		})
	}()
	appendN(t, s, 5) // the follower waits for these after the first 7
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunRaw ended with %v, want context.Canceled", err)
	}
	if fmt.Sprint(got) != "[2 3 4 5 6 7 8 9 10 11]" {
		t.Errorf("seqs delivered %v, want 2..11 in order", got)
	}
}

// shortRanges reads at most two records per range, as a log may, and
// fails at seq bad after appending the records before it.
type shortRanges struct {
	*logstore.Store
	bad uint64
}

func (l shortRanges) ReadRawRange(from uint64, max int, dst [][]byte) ([][]byte, error) {
	for seq := from; seq < from+uint64(min(max, 2)); seq++ {
		if seq == l.bad {
			return dst, errDamaged
		}
		raw, err := l.Store.ReadRaw(seq)
		if err != nil {
			return dst, err
		}
		dst = append(dst, raw)
	}
	return dst, nil
}

// TestRunRawReadsRanges: over a log that reads ranges shorter than the
// batch, RunRaw still hands out full batches in order; a range that fails
// part-way ends Run with a *ReadError naming the failing seq, and the
// batch holding it is not handed out.
func TestRunRawReadsRanges(t *testing.T) {
	s := openStore(t)
	appendN(t, s, 9)
	var sizes []int
	var seen []uint64
	err := follow.New(shortRanges{s, 7}, follow.Options{Batch: 3}).RunRaw(context.Background(), 0, func(_ context.Context, b follow.RawBatch) error {
		sizes = append(sizes, len(b.Records))
		for i, raw := range b.Records {
			if seq, err := record.Seq(raw); err != nil || seq != b.From+uint64(i) {
				return fmt.Errorf("record %d of the batch from %d has seq %d (%v)", i, b.From, seq, err)
			}
			seen = append(seen, b.From+uint64(i))
		}
		return nil
	})
	var re *follow.ReadError
	if !errors.As(err, &re) || re.Seq != 7 || !errors.Is(err, errDamaged) {
		t.Fatalf("RunRaw over a damaged record: %v, want *ReadError for seq 7 wrapping errDamaged", err)
	}
	if fmt.Sprint(sizes, seen) != "[3 3] [0 1 2 3 4 5]" {
		t.Fatalf("batch sizes and seqs handed out: %v %v, want [3 3] [0 1 2 3 4 5]", sizes, seen)
	}
}
