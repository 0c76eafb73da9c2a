package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/postgres"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// ErrNoPostgres: the capture figure needs PostgreSQL 15's server binaries.
var ErrNoPostgres = pgtest.ErrNotInstalled

// CaptureOptions size the PostgreSQL capture figure. Zero values give the
// defaults.
type CaptureOptions struct {
	// Dir holds the log and index the changes are captured into (default:
	// a new temp dir, removed after).
	Dir string
	// Changes is how many single-row INSERTs, 100 per transaction, the
	// throughput figure captures (200,000).
	Changes int
	// Rounds is how many times the throughput figure is measured, each
	// round capturing the whole workload on its own slot into a fresh log
	// and streaming it with pg_recvlogical on another, the two in
	// alternating order; the figure is the median round (3). One pair
	// alone swings with whatever else the machine is doing.
	Rounds int
	// LatencyRate is the steady load, in transactions/s, under which
	// commit-to-queryable latency is sampled (500; every 20th transaction
	// is a sample) and LatencyFor how long it lasts (20s).
	LatencyRate int
	LatencyFor  time.Duration
	// BigMB, when positive, also captures one transaction of about a
	// quarter of BigMB MiB and then one of BigMB MiB (~1 KB rows), each
	// followed by the same rows in 1,000-row transactions, and reports
	// peak RSS around each: growth no larger in the one transaction means
	// large transactions do not add memory.
	BigMB int
	// PGBinDir holds PostgreSQL 15's binaries (default pgtest.BinDir).
	PGBinDir string
	// TxInserts sizes the transaction-heavy figure: TxInserts inserts and
	// then TxInserts/4 updates of a table with REPLICA IDENTITY FULL (so
	// every update carries its whole before image), TxRows rows per
	// transaction (200,000 and 2,000), measured in Rounds rounds as the
	// insert figure is; negative leaves the figure out.
	TxInserts, TxRows int

	// Diagnostics, which are not the headline figure. Sink is "" (a
	// durable log with its index, as serve runs it), "noindex" (the log
	// alone) or "discard" (a sink that only counts); any but "" stops
	// after the throughput figure, as ThroughputOnly does. RecvFirst runs
	// pg_recvlogical first in the first round (and so in every odd one).
	// CPUProfile receives a CPU profile of Stele's first round.
	Sink           string
	RecvFirst      bool
	CPUProfile     io.Writer
	ThroughputOnly bool
	// ProfileTx points CPUProfile at the transaction-heavy figure's first
	// round instead.
	ProfileTx bool

	Progress func(phase string, done, total int)
	// Logf, when set, is told details: workload timings, durable and
	// indexed times.
	Logf func(format string, args ...any)
}

func (o *CaptureOptions) fill() error {
	if o.Changes <= 0 {
		o.Changes = 200_000
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.TxInserts == 0 {
		o.TxInserts = 200_000
	}
	if o.TxRows <= 0 {
		o.TxRows = 2_000
	}
	if o.LatencyRate <= 0 {
		o.LatencyRate = 500
	}
	if o.LatencyFor <= 0 {
		o.LatencyFor = 20 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	switch o.Sink {
	case "":
	case "noindex", "discard":
		o.ThroughputOnly = true
	default:
		return fmt.Errorf("capture sink %q: want noindex or discard", o.Sink)
	}
	return nil
}

// CaptureResults are the capture figures.
type CaptureResults struct {
	Changes int
	Sink    string
	// Rounds of the throughput figure, in the order they ran.
	Rounds []CaptureRound
	// Latency from COMMIT's return until the query engine's history of the
	// key returns the change; zero when the phase did not run.
	LatencyRate    int
	LatencyFor     time.Duration
	LatencySamples int
	LatencyP50     time.Duration
	LatencyP99     time.Duration
	LatencyMax     time.Duration
	Big            []BigTx
	// Tx is the transaction-heavy figure: TxChanges changes (TxInserts
	// inserts, then updates) in transactions of TxRows rows, its rounds,
	// and the peak RSS over them.
	TxInserts, TxChanges, TxRows int
	Tx                           []CaptureRound
	TxRSSPeak                    int64
	TxRSSPhased                  bool
}

// CaptureRound is one measurement of both consumers over the same WAL.
type CaptureRound struct {
	SteleSecs float64 // Run until every change was durable and indexed
	SteleCPU  float64 // the process's CPU seconds over the same span
	RecvSecs  float64 // pg_recvlogical to /dev/null up to the same LSN
	RecvFirst bool
}

// Ratio is Stele's rate over pg_recvlogical's in this round.
func (r CaptureRound) Ratio() float64 { return r.RecvSecs / r.SteleSecs }

// BigTx is one large transaction's capture, and that of the same number
// of rows in 1,000-row transactions right after it on the same source
// (Split): what the log and index take grows alike in both, so the
// difference between the two growths is the large transaction's own.
type BigTx struct {
	Rows, MB     int
	Elapsed      time.Duration
	RSSBefore    int64 // bytes, after freeing what is not live
	RSSPeak      int64 // bytes, peak while it was captured
	GoPeak       int64 // bytes the Go runtime held from the system at most (sampled)
	PeakIsPhased bool  // false: RSSPeak is the process's peak so far

	SplitElapsed              time.Duration
	SplitRSSBefore, SplitPeak int64
	SplitGoPeak               int64
}

// SteleRate and RecvRate are the median rounds' rates in changes/s, and
// Ratio the median of the rounds' ratios.
func (r *CaptureResults) SteleRate() float64 {
	return median(r.Rounds, func(c CaptureRound) float64 { return float64(r.Changes) / c.SteleSecs })
}
func (r *CaptureResults) RecvRate() float64 {
	return median(r.Rounds, func(c CaptureRound) float64 { return float64(r.Changes) / c.RecvSecs })
}
func (r *CaptureResults) Ratio() float64 { return median(r.Rounds, CaptureRound.Ratio) }

// TxRate, TxRecvRate and TxRatio are the same for the
// transaction-heavy figure.
func (r *CaptureResults) TxRate() float64 {
	return median(r.Tx, func(c CaptureRound) float64 { return float64(r.TxChanges) / c.SteleSecs })
}
func (r *CaptureResults) TxRecvRate() float64 {
	return median(r.Tx, func(c CaptureRound) float64 { return float64(r.TxChanges) / c.RecvSecs })
}
func (r *CaptureResults) TxRatio() float64 { return median(r.Tx, CaptureRound.Ratio) }

// median is the median of f over the rounds of a figure (0 without
// rounds); every capture figure reports it.
func median[R any](rounds []R, f func(R) float64) float64 {
	if len(rounds) == 0 {
		return 0
	}
	v := make([]float64, len(rounds))
	for i, c := range rounds {
		v[i] = f(c)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Lines are the report, one figure a line.
func (r *CaptureResults) Lines() []string {
	what := "durable + indexed"
	if r.Sink != "" {
		what = "DIAGNOSTIC sink=" + r.Sink
	}
	ratios := make([]string, len(r.Rounds))
	for i, c := range r.Rounds {
		ratios[i] = fmt.Sprintf("%.2f", c.Ratio())
	}
	lines := []string{fmt.Sprintf("capture PostgreSQL → log     %7.0f changes/s %s   (%.2fx pg_recvlogical to /dev/null at %.0f changes/s, medians of %d alternating rounds whose ratios were %s; %d single-row INSERTs, 100 per transaction)",
		r.SteleRate(), what, r.Ratio(), r.RecvRate(), len(r.Rounds), strings.Join(ratios, " "), r.Changes)}
	cpu := fmt.Sprintf("capture PostgreSQL CPU per change  %.1f µs single-row", median(r.Rounds, func(c CaptureRound) float64 { return c.SteleCPU / float64(r.Changes) * 1e6 }))
	if len(r.Tx) > 0 {
		cpu += fmt.Sprintf(", %.1f µs tx-heavy", median(r.Tx, func(c CaptureRound) float64 { return c.SteleCPU / float64(r.TxChanges) * 1e6 }))
	}
	lines = append(lines, cpu+"   (medians of the rounds; this process's CPU time, PostgreSQL's not counted: steadier than the rates on a busy machine)")
	if len(r.Tx) > 0 {
		ratios := make([]string, len(r.Tx))
		for i, c := range r.Tx {
			ratios[i] = fmt.Sprintf("%.2f", c.Ratio())
		}
		rss := "peak RSS " + mib(r.TxRSSPeak)
		if !r.TxRSSPhased {
			rss += " (the process's peak so far: it could not be reset)"
		}
		lines = append(lines, fmt.Sprintf("capture PostgreSQL, tx-heavy %7.0f changes/s %s   (%.2fx pg_recvlogical at %.0f changes/s, medians of %d alternating rounds whose ratios were %s; %d inserts then %d updates, %d rows per transaction, REPLICA IDENTITY FULL; %s)",
			r.TxRate(), what, r.TxRatio(), r.TxRecvRate(), len(r.Tx), strings.Join(ratios, " "), r.TxInserts, r.TxChanges-r.TxInserts, r.TxRows, rss))
	}
	if r.LatencySamples > 0 {
		lines = append(lines, fmt.Sprintf("commit to queryable          p50 %v  p99 %v  max %v   (%d tx/s for %v, %d samples)",
			r.LatencyP50.Round(time.Microsecond), r.LatencyP99.Round(time.Microsecond), r.LatencyMax.Round(time.Microsecond),
			r.LatencyRate, r.LatencyFor, r.LatencySamples))
	}
	for _, b := range r.Big {
		l := fmt.Sprintf("capture one %d MiB transaction (%d rows of ~1 KB) in %v: peak RSS %s before, %s during, growth %s",
			b.MB, b.Rows, b.Elapsed.Round(time.Millisecond), mib(b.RSSBefore), mib(b.RSSPeak), mib(b.RSSPeak-b.RSSBefore))
		if !b.PeakIsPhased {
			l += " (the peak could not be reset: these are the process's peaks so far)"
		}
		lines = append(lines, l)
		if b.SplitPeak > 0 {
			lines = append(lines, fmt.Sprintf("capture the same %d rows in 1,000-row transactions in %v: peak RSS %s before, %s during, growth %s   (Go runtime's peak %s; %s in the one transaction)",
				b.Rows, b.SplitElapsed.Round(time.Millisecond), mib(b.SplitRSSBefore), mib(b.SplitPeak), mib(b.SplitPeak-b.SplitRSSBefore), mib(b.SplitGoPeak), mib(b.GoPeak)))
		}
	}
	return lines
}

// Capture starts a throwaway PostgreSQL 15 and measures in one run: (a)
// Stele capturing Changes single-row INSERTs, written before it starts,
// into a durable, indexed log; (b) pg_recvlogical streaming the same WAL
// with the same plugin (pgoutput, protocol 2) to /dev/null on its own
// slot, the database's own streaming speed — (a) and (b) in Rounds
// rounds of alternating order; (c) commit-to-queryable latency under a
// steady load, on the last round's source; (d) when BigMB is set, peak RSS while large
// transactions are captured. The error wraps ErrNoPostgres when the
// binaries are missing.
func Capture(ctx context.Context, opts CaptureOptions) (*CaptureResults, error) {
	defer asServe(ctx)()
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stele-bench-capture-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	srv, err := pgtest.New(ctx, pgtest.Options{BinDir: opts.PGBinDir})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if err := srv.ExecIn(ctx, "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	setup := []string{
		"CREATE TABLE t (id bigint PRIMARY KEY, v text, at timestamptz)",
		"CREATE TABLE lat (id bigint PRIMARY KEY, at timestamptz)",
		"CREATE TABLE big (id bigint PRIMARY KEY, v text)",
		"CREATE TABLE txh (id bigint PRIMARY KEY, v text, n int, at timestamptz)",
		"ALTER TABLE txh REPLICA IDENTITY FULL",
		"CREATE PUBLICATION stele_bench FOR ALL TABLES",
	}
	// Every round's slots start before the workload, so each reads all of it.
	for r := range opts.Rounds {
		setup = append(setup,
			fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", steleSlot(r)),
			fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", recvSlot(r)))
	}
	if err := srv.ExecIn(ctx, "bench", setup...); err != nil {
		return nil, err
	}
	url := srv.URL("bench")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	c := &captureRun{opts: opts, srv: srv, url: url, conn: conn, res: &CaptureResults{Changes: opts.Changes, Sink: opts.Sink}, profiled: "log-"}
	if opts.ProfileTx {
		c.profiled = "tx-"
	}
	if err := c.run(ctx); err != nil {
		return c.res, err
	}
	if opts.TxInserts > 0 {
		if err := c.runTx(ctx); err != nil {
			return c.res, fmt.Errorf("transaction-heavy figure: %w", err)
		}
	}
	return c.res, nil
}

func steleSlot(round int) string   { return "stele_bench_" + strconv.Itoa(round) }
func recvSlot(round int) string    { return "recv_bench_" + strconv.Itoa(round) }
func steleTxSlot(round int) string { return "stele_tx_" + strconv.Itoa(round) }
func recvTxSlot(round int) string  { return "recv_tx_" + strconv.Itoa(round) }

type captureRun struct {
	opts CaptureOptions
	srv  *pgtest.Server
	url  string
	conn *pgx.Conn
	res  *CaptureResults
	end  string // the workload's final LSN
	// committed counts the latency phase's transactions.
	committed int
	// stopped receives Run's error if the source stops.
	stopped chan error
	// profiled is the store prefix of the figure whose first round
	// CPUProfile profiles: "log-" (the insert figure) unless only the
	// transaction-heavy figure is measured.
	profiled string
}

// waitSize waits until size reaches want, failing after limit or when
// the source stops, and tells progress how far it got, ten times a second
// (more would take CPU from what is measured).
func (c *captureRun) waitSize(ctx context.Context, size func() uint64, want uint64, limit time.Duration, progress func(got uint64)) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var told time.Time
	for got := size(); got < want; got = size() {
		if time.Since(told) >= 100*time.Millisecond {
			progress(got)
			told = time.Now()
		}
		if time.Since(start) > limit {
			return fmt.Errorf("captured %d of %d records in %v", got, want, limit)
		}
		select {
		case err := <-c.stopped:
			c.stopped <- err // for the deferred wait
			return fmt.Errorf("capture stopped after %d of %d records: %w", got, want, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

func (c *captureRun) run(ctx context.Context) error {
	if err := c.workload(ctx); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	for r := range c.opts.Rounds {
		round := CaptureRound{RecvFirst: (r%2 == 1) != c.opts.RecvFirst}
		var err error
		if round.RecvFirst {
			if round.RecvSecs, err = c.recvlogical(ctx, r); err != nil {
				return err
			}
		}
		last := r == c.opts.Rounds-1
		stack, err := c.steleRound(ctx, r, &round)
		if err != nil {
			return err
		}
		if !last || c.opts.ThroughputOnly {
			stack.stop()
		} else {
			defer stack.stop()
		}
		if !round.RecvFirst {
			if round.RecvSecs, err = c.recvlogical(ctx, r); err != nil {
				return err
			}
		}
		c.res.Rounds = append(c.res.Rounds, round)
		if last && !c.opts.ThroughputOnly {
			return c.afterThroughput(ctx, stack)
		}
	}
	return nil
}

// captureStack is one round's source capturing into its own store.
type captureStack struct {
	st      *stack
	plain   *stack // the "noindex" diagnostic's store
	cancel  context.CancelFunc
	stopped chan error
	once    sync.Once
}

// stop stops the source and closes the stores; later calls do nothing.
// The source's error is not a result: it stops because it was cancelled,
// and a failure while it ran ended the wait that timed it.
func (s *captureStack) stop() {
	s.once.Do(func() {
		if s.cancel != nil { // the source was started
			s.cancel()
			<-s.stopped
		}
		if s.plain != nil {
			s.plain.close()
		}
		s.st.close()
	})
}

// steleRound starts a source on round r's slot into a fresh store and
// times it until the store holds the whole workload, durable and indexed.
// The source keeps running for the phases after the last round.
func (c *captureRun) steleRound(ctx context.Context, r int, round *CaptureRound) (*captureStack, error) {
	return c.steleRoundOn(ctx, r, steleSlot(r), "log-", c.opts.Changes, round)
}

// steleRoundOn is steleRound on a given slot, into a store named by
// prefix, until it holds n records.
func (c *captureRun) steleRoundOn(ctx context.Context, r int, slot, prefix string, n int, round *CaptureRound) (*captureStack, error) {
	st, err := openStore(ctx, filepath.Join(c.opts.Dir, prefix+strconv.Itoa(r)), true)
	if err != nil {
		return nil, err
	}
	cs := &captureStack{st: st}
	var sink capture.Sink = st.store
	size := st.store.Size
	switch c.opts.Sink {
	case "noindex":
		if cs.plain, err = openStore(ctx, filepath.Join(c.opts.Dir, prefix+"noindex-"+strconv.Itoa(r)), false); err != nil {
			cs.stop()
			return nil, err
		}
		sink, size = cs.plain.store, cs.plain.store.Size
	case "discard":
		d := &countSink{}
		sink, size = d, d.n.Load
	}
	src, err := postgres.New(postgres.Config{ConnString: c.url, Name: "bench", Slot: slot, Publication: "stele_bench",
		SpillDir: c.opts.Dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cs.stop()
		return nil, err
	}
	if c.opts.CPUProfile != nil && r == 0 && prefix == c.profiled {
		if err := pprof.StartCPUProfile(c.opts.CPUProfile); err != nil {
			cs.stop()
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, cancel := context.WithCancel(ctx)
	cs.cancel, cs.stopped = cancel, make(chan error, 1)
	start, cpu0 := time.Now(), cpuSeconds()
	go func() { cs.stopped <- src.Run(runCtx, sink) }()
	c.stopped = cs.stopped
	// From Run until the log holds all n records, durable and indexed
	// (logstore.Open with the index as its hook, as serve does).
	err = c.waitSize(ctx, size, uint64(n), 10*time.Minute, func(got uint64) { c.opts.Progress(fmt.Sprintf("capture: round %d", r+1), int(got), n) })
	if err != nil {
		cs.stop()
		return nil, err
	}
	durable := time.Since(start)
	if c.opts.Sink == "" {
		// Size counts durable records; the index follows them
		// asynchronously, and queryable means indexed too.
		if err := st.store.WaitIndexed(ctx, uint64(n)); err != nil {
			cs.stop()
			return nil, err
		}
	}
	round.SteleSecs, round.SteleCPU = time.Since(start).Seconds(), cpuSeconds()-cpu0
	c.opts.Logf("round %d: durable after %.2fs, queryable after %.2fs", r+1, durable.Seconds(), round.SteleSecs)
	return cs, nil
}

// afterThroughput runs the latency and large-transaction phases on the
// last round's running source.
func (c *captureRun) afterThroughput(ctx context.Context, cs *captureStack) error {
	st := cs.st
	if err := c.latency(ctx, query.New(st.store, st.ix)); err != nil {
		return fmt.Errorf("commit-to-queryable latency: %w", err)
	}
	// Only the sampled changes were waited for: every change must be in
	// the log, and the large transactions' figures must not include them.
	if err := c.waitSize(ctx, st.store.Size, uint64(c.opts.Changes+c.committed), time.Minute, func(uint64) {}); err != nil {
		return fmt.Errorf("commit-to-queryable latency: %w", err)
	}
	if c.opts.BigMB > 0 {
		// Each large transaction gets a source and log of its own; this
		// source would capture them too.
		cs.stop()
		if err := c.bigTransactions(ctx); err != nil {
			return fmt.Errorf("large transaction: %w", err)
		}
	}
	return nil
}

// workload writes the n INSERTs, 100 per transaction, before either
// consumer starts, so both read the same WAL.
func (c *captureRun) workload(ctx context.Context) error {
	n := c.opts.Changes
	start := time.Now()
	for lo := 0; lo < n; lo += 100 {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		for id := lo; id < min(lo+100, n); id++ {
			b.Queue("INSERT INTO t VALUES ($1, 'some value of a row', clock_timestamp())", id)
		}
		b.Queue("COMMIT")
		if err := c.conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if lo%10_000 == 0 {
			c.opts.Progress("capture: workload", lo, n)
		}
	}
	if err := c.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&c.end); err != nil {
		return err
	}
	c.opts.Logf("workload: %d inserts in %d transactions written in %v; WAL end %s", n, (n+99)/100, time.Since(start).Round(time.Millisecond), c.end)
	// Settle the server: autovacuum would otherwise analyse the new rows
	// during whichever consumer runs first.
	for _, q := range []string{"VACUUM ANALYZE t", "CHECKPOINT"} {
		if _, err := c.conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// recvlogical streams the workload's WAL to /dev/null on round r's slot
// and returns how long it took.
func (c *captureRun) recvlogical(ctx context.Context, r int) (float64, error) {
	return c.recvlogicalOn(ctx, recvSlot(r), c.end)
}

// recvlogicalOn streams a slot's WAL to /dev/null up to end.
func (c *captureRun) recvlogicalOn(ctx context.Context, slot, end string) (float64, error) {
	cmd := c.srv.Command(ctx, "pg_recvlogical",
		"-d", c.url, "--slot", slot, "--start", "--no-loop", "--endpos", end,
		"-o", "proto_version=2", "-o", "publication_names=stele_bench", "-f", "/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c.opts.Progress("capture: pg_recvlogical", 0, 1)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %w\n%s", err, out.String())
	}
	return time.Since(start).Seconds(), nil
}

// latency commits one single-row transaction at a steady rate; every 20th
// is timed from its COMMIT's return until the query engine's history of
// its key returns it.
func (c *captureRun) latency(ctx context.Context, eng *query.Engine) error {
	// pgtest runs with synchronous_commit = off, which lets COMMIT return
	// up to wal_writer_delay (200 ms) before the WAL is flushed, and the
	// WAL sender sends only flushed WAL. Production settings: on.
	if _, err := c.conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return err
	}
	const every = 20
	rate, dur := c.opts.LatencyRate, c.opts.LatencyFor
	var (
		mu       sync.Mutex
		lats     []time.Duration
		timedOut atomic.Int64
		wg       sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	for id := 0; time.Since(start) < dur; id++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		if _, err := c.conn.Exec(ctx, "INSERT INTO lat VALUES ($1, clock_timestamp())", id); err != nil {
			wg.Wait()
			return err
		}
		c.committed++
		if id%every != 0 {
			continue
		}
		committed := time.Now()
		key, err := record.KeyString(json.RawMessage(fmt.Sprintf(`{"id":%d}`, id)))
		if err != nil {
			wg.Wait()
			return err
		}
		c.opts.Progress("capture: latency", int(time.Since(start)/time.Millisecond), int(dur/time.Millisecond))
		wg.Go(func() {
			for time.Since(committed) < 30*time.Second && ctx.Err() == nil {
				p, err := eng.History(ctx, "bench", "lat", key, query.PageRequest{Limit: 1})
				if err == nil && len(p.Records) > 0 {
					mu.Lock()
					lats = append(lats, time.Since(committed))
					mu.Unlock()
					return
				}
				time.Sleep(500 * time.Microsecond)
			}
			timedOut.Add(1)
		})
	}
	wg.Wait()
	if n := timedOut.Load(); n > 0 {
		return fmt.Errorf("%d of %d sampled changes were not queryable within 30s", n, int(n)+len(lats))
	}
	if len(lats) == 0 {
		return errors.New("no change was sampled")
	}
	slices.Sort(lats)
	r := c.res
	r.LatencyRate, r.LatencyFor, r.LatencySamples = rate, dur, len(lats)
	r.LatencyP50, r.LatencyP99, r.LatencyMax = percentileSorted(lats, 0.50), percentileSorted(lats, 0.99), lats[len(lats)-1]
	return nil
}

// bigTransactions captures one transaction of a quarter of BigMB and one
// of BigMB (~1 KB rows), and then the same rows in 1,000-row
// transactions, recording peak RSS around each. Each is captured by a new
// source into a new log, as the MariaDB figure does, so that what the log
// and its index hold grows alike in both and the difference between the
// two is the large transaction's.
func (c *captureRun) bigTransactions(ctx context.Context) error {
	for i, mb := range []int{max(1, c.opts.BigMB/4), c.opts.BigMB} {
		b := BigTx{Rows: mb * 1024, MB: mb}
		insert := func(lo, n int) string {
			return fmt.Sprintf("INSERT INTO big SELECT g + %d, repeat(md5(g::text), 31) FROM generate_series(%d, %d) g", i<<40, lo+1, lo+n)
		}
		stmts := []string{insert(0, b.Rows)}
		var err error
		b.RSSBefore, b.RSSPeak, b.GoPeak, b.Elapsed, b.PeakIsPhased, err = c.bigPhase(ctx, 2*i, fmt.Sprintf("capture: %d MiB transaction", mb), b.Rows, stmts)
		if err != nil {
			return err
		}
		stmts = stmts[:0]
		for lo := 0; lo < b.Rows; lo += 1000 {
			stmts = append(stmts, insert(b.Rows+lo, min(1000, b.Rows-lo)))
		}
		b.SplitRSSBefore, b.SplitPeak, b.SplitGoPeak, b.SplitElapsed, _, err = c.bigPhase(ctx, 2*i+1, fmt.Sprintf("capture: %d MiB in 1,000-row transactions", mb), b.Rows, stmts)
		if err != nil {
			return err
		}
		c.res.Big = append(c.res.Big, b)
	}
	return nil
}

// bigPhase starts a source on a new slot into a new log (numbered k), runs
// stmts, which write n rows, and waits until the log holds them, returning
// the peak RSS before and during, the Go runtime's peak and how long it
// took.
func (c *captureRun) bigPhase(ctx context.Context, k int, phase string, n int, stmts []string) (before, peak, goPeak int64, took time.Duration, phased bool, err error) {
	slot := "stele_big_" + strconv.Itoa(k)
	if err := c.srv.ExecIn(ctx, "bench", fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot)); err != nil {
		return 0, 0, 0, 0, false, err
	}
	cs, err := c.steleRoundOn(ctx, k, slot, "big-", 0, &CaptureRound{})
	if err != nil {
		return 0, 0, 0, 0, false, err
	}
	defer cs.stop()
	store := cs.st.store
	var m rssMeter
	m.Start()
	before = m.Peak()
	stop := sampleGoMemory(&goPeak)
	defer stop()
	start := time.Now()
	for _, q := range stmts {
		if _, err := c.conn.Exec(ctx, q); err != nil {
			return 0, 0, 0, 0, false, err
		}
	}
	err = c.waitSize(ctx, store.Size, uint64(n), 20*time.Minute, func(got uint64) {
		c.opts.Progress(phase, int(got), n)
	})
	if err != nil {
		return 0, 0, 0, 0, false, err
	}
	took = time.Since(start)
	stop()
	return before, m.Peak(), goPeak, took, !m.resetFailed, nil
}

// countSink counts appended records and keeps nothing (a diagnostic).
type countSink struct{ n atomic.Uint64 }

func (c *countSink) Append(_ context.Context, recs []*record.Record) ([]stele.Appended, error) {
	c.n.Add(uint64(len(recs)))
	return make([]stele.Appended, len(recs)), nil
}

// runTx measures the transaction-heavy figure after the insert figure's
// phases: its slots are created only now, so they read its workload alone.
func (c *captureRun) runTx(ctx context.Context) error {
	var slots []string
	for r := range c.opts.Rounds {
		slots = append(slots,
			fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", steleTxSlot(r)),
			fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", recvTxSlot(r)))
	}
	if err := c.srv.ExecIn(ctx, "bench", slots...); err != nil {
		return err
	}
	end, err := c.txWorkload(ctx)
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	res := c.res
	res.TxInserts, res.TxRows = c.opts.TxInserts, c.opts.TxRows
	res.TxChanges = c.opts.TxInserts + c.opts.TxInserts/4
	var m rssMeter
	m.Start()
	for r := range c.opts.Rounds {
		round := CaptureRound{RecvFirst: (r%2 == 1) != c.opts.RecvFirst}
		if round.RecvFirst {
			if round.RecvSecs, err = c.recvlogicalOn(ctx, recvTxSlot(r), end); err != nil {
				return err
			}
		}
		stack, err := c.steleRoundOn(ctx, r, steleTxSlot(r), "tx-", res.TxChanges, &round)
		if err != nil {
			return err
		}
		stack.stop()
		if !round.RecvFirst {
			if round.RecvSecs, err = c.recvlogicalOn(ctx, recvTxSlot(r), end); err != nil {
				return err
			}
		}
		res.Tx = append(res.Tx, round)
	}
	res.TxRSSPeak, res.TxRSSPhased = m.Peak(), !m.resetFailed
	return nil
}

// txWorkload writes the transaction-heavy workload and returns its final
// LSN: TxInserts rows inserted TxRows per transaction, then a quarter of
// them updated TxRows per transaction (one statement each: the WAL holds a
// change per row either way).
func (c *captureRun) txWorkload(ctx context.Context) (string, error) {
	n, per := c.opts.TxInserts, c.opts.TxRows
	start := time.Now()
	for lo := 0; lo < n; lo += per {
		if _, err := c.conn.Exec(ctx, "INSERT INTO txh SELECT g, 'some value of a row', 0, clock_timestamp() FROM generate_series($1::bigint, $2::bigint) g", lo, min(lo+per, n)-1); err != nil {
			return "", err
		}
		c.opts.Progress("capture: tx workload", lo, n+n/4)
	}
	for lo := 0; lo < n/4; lo += per {
		if _, err := c.conn.Exec(ctx, "UPDATE txh SET v = 'another value of a row', n = n + 1, at = clock_timestamp() WHERE id >= $1 AND id < $2", lo, min(lo+per, n/4)); err != nil {
			return "", err
		}
		c.opts.Progress("capture: tx workload", n+lo, n+n/4)
	}
	var end string
	if err := c.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		return "", err
	}
	c.opts.Logf("tx workload: %d inserts and %d updates, %d rows per transaction, written in %v; WAL end %s", n, n/4, per, time.Since(start).Round(time.Millisecond), end)
	for _, q := range []string{"VACUUM ANALYZE txh", "CHECKPOINT"} {
		if _, err := c.conn.Exec(ctx, q); err != nil {
			return "", err
		}
	}
	return end, nil
}
