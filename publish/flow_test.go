package publish_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

// appender appends batches of 10 records to s back to back (the log busy
// appending all the time, as in a burst of ingest) on its own goroutine
// until stop is first called; stop returns the log's size then.
func appender(t *testing.T, s *logstore.Store, from int) (stop func() uint64) {
	t.Helper()
	// Stopping is a flag, not a cancelled context: an append whose
	// caller gave up can still be stored after it returned, and the size
	// stop reports must be the log's final one.
	var stopping atomic.Bool
	// Two appending goroutines keep an append in progress nearly all the
	// time, as a burst does, even on a loaded machine that deschedules
	// one of them between its appends: with one, the log's busy share
	// fell below the hold's threshold under a loaded test run.
	const appenders = 2
	next := atomic.Int64{}
	next.Store(int64(from))
	done := make(chan error, appenders)
	var wg sync.WaitGroup
	for range appenders {
		wg.Go(func() {
			for !stopping.Load() {
				i := int(next.Add(10)) - 10
				recs := make([]*record.Record, 10)
				for j := range recs {
					recs[j] = testRecord(i + j)
				}
				if _, err := s.Append(context.Background(), recs); err != nil {
					done <- err
					return
				}
			}
		})
	}
	var once sync.Once
	return func() uint64 {
		once.Do(func() {
			stopping.Store(true)
			wg.Wait()
			close(done)
			for err := range done {
				t.Errorf("append: %v", err)
			}
		})
		return s.Size()
	}
}

type slowLog struct {
	s    *logstore.Store
	fast atomic.Bool
}

func (l *slowLog) Size() uint64              { return l.s.Size() }
func (l *slowLog) Changed() <-chan struct{}  { return l.s.Changed() }
func (l *slowLog) AppendBusy() time.Duration { return l.s.AppendBusy() }

func (l *slowLog) ReadRaw(seq uint64) ([]byte, error) {
	if !l.fast.Load() {
		time.Sleep(time.Millisecond)
	}
	return l.s.ReadRaw(seq)
}

// burstRig is a publisher following a slowLog over a fresh log while an
// appender appends to it.
type burstRig struct {
	store *logstore.Store
	log   *slowLog
	nc    *nats.Conn
	pub   *running
	stop  func() uint64 // the appender's
}

// burst starts a publisher of cfg (Conn and Log filled in) and an
// appender; all end with the test, the appender first.
func burst(t *testing.T, cfg publish.Config) burstRig {
	t.Helper()
	dir := t.TempDir()
	r := burstRig{store: openLog(t, filepath.Join(dir, "log"))}
	t.Cleanup(func() { r.store.Close() })
	r.nc = embeddedConn(t, filepath.Join(dir, "nats"))
	r.log = &slowLog{s: r.store}
	cfg.Conn, cfg.Log = r.nc, r.log
	r.pub = startPublisher(t, cfg)
	t.Cleanup(func() { r.pub.stop(t) })
	r.stop = appender(t, r.store, 0)
	t.Cleanup(func() { r.stop() })
	return r
}

// waitHolding waits until the publisher holds off for a burst.
func waitHolding(t *testing.T, p *publish.Publisher) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !p.Holding() {
		if time.Now().After(deadline) {
			t.Fatalf("the publisher did not hold off during a burst of appends (published %d)", p.Published())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHoldsOffDuringBurstThenCatchesUp: while the log is busy appending
// and the publisher behind, it holds off (Holding, Held); once the appends
// stop it publishes the whole backlog, in order and exactly once.
func TestHoldsOffDuringBurstThenCatchesUp(t *testing.T) {
	r := burst(t, publish.Config{Window: 64, MaxDelay: time.Minute})
	waitHolding(t, r.pub.p)
	n := r.stop()
	r.log.fast.Store(true)
	waitPublished(t, r.pub.p, n, 30*time.Second)
	if p := r.pub.p; p.Holding() || p.Held() <= 0 {
		t.Errorf("after catching up: holding %t, held %v; want false and more than 0", p.Holding(), p.Held())
	}
	newConsumer(t, r.nc).drain(r.store, n, publish.FormatRecord, true)
}

// TestHoldNeverStarvesTheStream: appends that never stop hold the stream
// back by at most MaxDelay: records keep being published while the burst
// goes on.
func TestHoldNeverStarvesTheStream(t *testing.T) {
	r := burst(t, publish.Config{Window: 64, MaxDelay: time.Second})
	// Read at full speed from the start: a publisher that fell more than
	// MaxDelay behind (as a slow reader does within a second on a loaded
	// machine) rightly never holds, and the hold would never be seen.
	r.log.fast.Store(true)
	waitHolding(t, r.pub.p) // the burst goes on; only MaxDelay ends the hold
	size := r.store.Size()
	waitPublished(t, r.pub.p, size, 30*time.Second)
	if r.store.Size() == size {
		t.Fatal("the appends stopped; the test shows nothing")
	}
}

// TestNegativeMaxDelayNeverHolds: MaxDelay < 0 turns the flow control off.
func TestNegativeMaxDelayNeverHolds(t *testing.T) {
	r := burst(t, publish.Config{Window: 64, MaxDelay: -1})
	time.Sleep(300 * time.Millisecond)
	n := r.stop()
	r.log.fast.Store(true)
	waitPublished(t, r.pub.p, n, 30*time.Second)
	if held := r.pub.p.Held(); held != 0 {
		t.Errorf("held %v with MaxDelay < 0, want 0", held)
	}
}
