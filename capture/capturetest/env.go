package capturetest

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
	"github.com/stele/stele/capture"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// env is one case: its upstream, the real store in a directory of its
// own, and the checking sink in front of it.
type env struct {
	t           *testing.T
	h           Harness
	up          Upstream
	unsupported map[Capability]string
	rng         *rand.Rand
	rngMu       sync.Mutex // for rngIntN
	dir         string
	sink        *checkSink

	mu    sync.Mutex
	store *logstore.Store
	ix    *index.Index
}

func newEnv(t *testing.T, h Harness, unsupported map[Capability]string, rng *rand.Rand) *env {
	e := &env{t: t, h: h, unsupported: unsupported, rng: rng, dir: t.TempDir()}
	e.up = h.Open(t)
	e.sink = &checkSink{up: e.up, durable: map[string]bool{}}
	// Registered first, so it runs last: after every source stopped.
	t.Cleanup(e.sink.report(t))
	e.openStore()
	t.Cleanup(e.closeStore)
	return e
}

func (e *env) supports(c Capability) bool {
	_, ok := e.unsupported[c]
	return !ok
}

// openStore opens the log and its index from e.dir and points the sink at
// them, every stored id counting as durable.
func (e *env) openStore() {
	e.t.Helper()
	ix, err := index.Open(filepath.Join(e.dir, "index"), nil)
	if err != nil {
		e.t.Fatalf("open index: %v", err)
	}
	st, err := logstore.Open(context.Background(), e.dir, logstore.Options{Hook: ix})
	if err != nil {
		ix.Close()
		e.t.Fatalf("open log: %v", err)
	}
	e.mu.Lock()
	e.store, e.ix = st, ix
	e.mu.Unlock()
	recs, err := readLog(st)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sink.reset(st, recs)
}

// closeStore closes the log and the index (a crash's second half: appends
// fail with ErrClosed from now on).
func (e *env) closeStore() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return
	}
	if err := e.store.Close(); err != nil {
		e.t.Errorf("close log: %v", err)
	}
	if err := e.ix.Close(); err != nil {
		e.t.Errorf("close index: %v", err)
	}
	e.store, e.ix = nil, nil
}

func readLog(st *logstore.Store) ([]*record.Record, error) {
	n := st.Size()
	out := make([]*record.Record, 0, n)
	for seq := range n {
		r, err := st.Read(seq)
		if err != nil {
			return nil, fmt.Errorf("read record %d: %w", seq, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// records returns every record in the log.
func (e *env) records() []*record.Record {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return nil
	}
	recs, err := readLog(e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// waitFor polls the log until done says it holds what was expected, and
// returns its records.
func (e *env) waitFor(what string, timeout time.Duration, done func([]*record.Record) bool) []*record.Record {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := e.records()
		if done(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			for _, r := range recs {
				e.t.Logf("  %s %s key %s before %s after %s tx %s", r.Source.Table, r.Op, r.Key, r.Before, r.After, txString(r.Tx))
			}
			e.t.Fatalf("after %v the log holds %d records, still not %s", timeout, len(recs), what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func txString(tx *record.Tx) string {
	if tx == nil {
		return "none"
	}
	idx := "-"
	if tx.Index != nil {
		idx = fmt.Sprint(*tx.Index)
	}
	return fmt.Sprintf("{id %s position %s index %s}", tx.ID, tx.Position, idx)
}

// running is a source's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	// failing marks a source expected to end with an error (bad
	// credentials); the error is checked by its case.
	failing bool
}

// start runs src into the checking sink; it is stopped in t.Cleanup.
func (e *env) start(src capture.Source) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = src.Run(ctx, e.sink)
	}()
	e.t.Cleanup(func() {
		if err := r.stop(); err != nil && !r.failing {
			e.t.Errorf("source %s: Run after cancel = %v, want nil", src.Name(), err)
		}
	})
	return r
}

// stop cancels Run and waits for it.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitStop):
		return fmt.Errorf("Run did not return %v after its context was canceled", waitStop)
	}
}

// ended reports whether Run returned by itself.
func (r *running) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// apply applies every transaction of plans, in order.
func (e *env) apply(plans []txPlan) {
	e.t.Helper()
	for _, p := range plans {
		if err := e.up.Apply(context.Background(), p.tx); err != nil {
			e.t.Fatalf("apply %v: %v", p.tx, err)
		}
	}
}

// errCrash is what an append interrupted by a simulated crash returns.
var errCrash = errors.New("capturetest: simulated crash")

// checkSink is the sink every source of the suite appends to: the real
// store, with two checks and a crash switch in front.
//
// On every append it asks the upstream what it holds as acknowledged, and
// any record in the batch that is covered and not yet durable is a
// violation (a position ahead of the log), checked again after delay,
// before the append. A crash, once armed, fires when the records handed
// over since reach a count: the records up to that point are appended
// (those of this append may be none, some or all of it), then the crash
// function runs (cancel the source, close the store), and the append
// fails.
type checkSink struct {
	up Upstream
	// delay, when set, holds each append back (and checks again after
	// it), so that a position acknowledged ahead of the log has time to
	// show.
	delay time.Duration

	mu         sync.Mutex
	store      *logstore.Store
	durable    map[string]bool
	crash      *crash
	seen       int
	violations []string
	checks     int
	skipped    int
	lastSkip   error
}

type crash struct {
	at int // records handed over up to the crash, counted from arming
	// lose, when set, leaves out the last record before the crash point
	// too, so that some crashes store none of the append that hits them.
	lose  bool
	fire  func(appended, batch int)
	fired chan struct{}
}

func (c *checkSink) reset(st *logstore.Store, recs []*record.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store = st
	for _, r := range recs {
		c.durable[r.ID] = true
	}
}

// arm makes the append that brings the records handed over since to at
// crash after storing those up to at (up to at-1 with lose).
func (c *checkSink) arm(at int, lose bool, fire func(appended, batch int)) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr := &crash{at: at, lose: lose, fire: fire, fired: make(chan struct{})}
	c.crash, c.seen = cr, 0
	return cr.fired
}

// disarm removes an armed crash that did not fire.
func (c *checkSink) disarm() {
	c.mu.Lock()
	c.crash = nil
	c.mu.Unlock()
}

func (c *checkSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	c.checkAhead(ctx, recs)
	if c.delay > 0 {
		time.Sleep(c.delay)
		c.checkAhead(ctx, recs)
	}
	c.mu.Lock()
	store := c.store
	n := len(recs)
	var cr *crash
	if c.crash != nil && c.seen+len(recs) >= c.crash.at {
		cr, c.crash = c.crash, nil
		n = cr.at - c.seen
		if cr.lose {
			n--
		}
	}
	c.seen += len(recs)
	c.mu.Unlock()
	var out []stele.Appended
	var err error
	if n > 0 {
		out, err = store.Append(ctx, recs[:n])
		if err == nil {
			c.mu.Lock()
			for _, a := range out {
				c.durable[a.ID] = true
			}
			c.mu.Unlock()
		}
	}
	if cr != nil {
		if err != nil {
			n = 0
		}
		cr.fire(n, len(recs))
		close(cr.fired)
		return nil, errCrash
	}
	return out, err
}

// checkAhead records a violation for each record of recs that the
// upstream holds as acknowledged while it is not durable.
func (c *checkSink) checkAhead(ctx context.Context, recs []*record.Record) {
	covers, err := c.up.Acknowledged(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// The upstream is restarting, say; the next append checks.
		c.skipped++
		c.lastSkip = err
		return
	}
	c.checks++
	for _, r := range recs {
		if r.ID != "" && !c.durable[r.ID] && covers(r) {
			c.violations = append(c.violations, fmt.Sprintf("record %s (%s of %s key %s, tx %s) is acknowledged upstream before it is durable in the log",
				r.ID, r.Op, r.Source.Table, r.Key, txString(r.Tx)))
		}
	}
}

// report fails the test with the violations found.
func (c *checkSink) report(t *testing.T) func() {
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, v := range c.violations {
			if i == 10 {
				t.Errorf("… and %d more positions ahead of the log", len(c.violations)-10)
				break
			}
			t.Error(v)
		}
	}
}

func (c *checkSink) counts() (checks, skipped int, lastSkip error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checks, c.skipped, c.lastSkip
}
