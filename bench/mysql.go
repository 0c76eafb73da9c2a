package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	capmysql "github.com/stele/stele/capture/mysql"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// ErrNoMariaDB: the MariaDB capture figures need mariadbd and
// mariadb-install-db.
var ErrNoMariaDB = mysqltest.ErrNotInstalled

// MySQLOptions size the MariaDB capture figures. Zero values give the
// defaults.
type MySQLOptions struct {
	// Dir holds the logs (default: a new temp dir, removed after).
	Dir string
	// Changes is how many single-row INSERTs, in transactions of 100, the
	// throughput figure captures (50,000).
	Changes int
	// Rounds is how many times Stele and the raw reader each read the
	// whole workload, alternating which goes first (the raw reader in the
	// last); the figures are the median round (3).
	Rounds int
	// LatencyFor and LatencyRate are the steady load of the
	// commit-to-queryable figure (5 s at 200 transactions/s).
	LatencyFor  time.Duration
	LatencyRate int
	// BigMB is the size of the large transaction whose capture's peak RSS
	// is measured (8; 0 after the defaults: skipped with BigMB < 0).
	BigMB    int
	Progress func(phase string, done, total int)
}

// MySQLResults are the MariaDB capture figures.
type MySQLResults struct {
	Changes  int
	Rounds   []MySQLRound
	P50, P99 time.Duration
	Samples  int
	// Big is the large transaction's figure (BigMB 0: not measured);
	// Split the same rows written in transactions of 1,000.
	BigMB                      int
	BigRSSBefore, BigRSSAt     int64
	BigElapsed                 time.Duration
	SplitRSSBefore, SplitRSSAt int64
	SplitElapsed               time.Duration
	Version                    string
}

// MySQLRound is one round: go-mysql's BinlogSyncer decoding the workload's
// events to nothing, and the source capturing them into a durable, indexed
// log; each took Secs and the process's CPU time CPU (mariadbd's is not
// counted: on a shared machine the CPU per change moves less than the
// rates do).
type MySQLRound struct{ RawSecs, SteleSecs, RawCPU, SteleCPU float64 }

// SteleRate is the median changes/s captured, durable and indexed.
func (r *MySQLResults) SteleRate() float64 {
	return median(r.Rounds, func(x MySQLRound) float64 { return float64(r.Changes) / x.SteleSecs })
}

// RawRate is the median rows/s of the raw reader.
func (r *MySQLResults) RawRate() float64 {
	return median(r.Rounds, func(x MySQLRound) float64 { return float64(r.Changes) / x.RawSecs })
}

// Ratio is the median of each round's captured/raw rate.
func (r *MySQLResults) Ratio() float64 {
	return median(r.Rounds, func(x MySQLRound) float64 { return x.RawSecs / x.SteleSecs })
}

// cpuPerChange is the median CPU time per change of one reader, in µs.
func (r *MySQLResults) cpuPerChange(f func(MySQLRound) float64) float64 {
	return median(r.Rounds, func(x MySQLRound) float64 { return f(x) / float64(r.Changes) * 1e6 })
}

// Lines are the report, one figure a line.
func (r *MySQLResults) Lines() []string {
	ratios := make([]string, len(r.Rounds))
	for i, x := range r.Rounds {
		ratios[i] = fmt.Sprintf("%.2f", x.RawSecs/x.SteleSecs)
	}
	out := []string{
		fmt.Sprintf("capture MariaDB → log     %8.0f changes/s durable + indexed   (%.2fx go-mysql's BinlogSyncer decoding the same events to nothing at %.0f rows/s; %d changes, median of %d rounds: %s; %s)",
			r.SteleRate(), r.Ratio(), r.RawRate(), r.Changes, len(r.Rounds), strings.Join(ratios, ", "), r.Version),
		fmt.Sprintf("capture MariaDB CPU per change  %.1f µs   (the raw reader %.1f µs; the process's CPU time, mariadbd's not counted)",
			r.cpuPerChange(func(x MySQLRound) float64 { return x.SteleCPU }), r.cpuPerChange(func(x MySQLRound) float64 { return x.RawCPU })),
		fmt.Sprintf("capture MariaDB commit → queryable  p50 %v  p99 %v   (%d samples under a steady load)", r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Samples),
	}
	if r.BigMB > 0 {
		out = append(out, fmt.Sprintf("capture MariaDB %d MiB transaction  peak RSS %s → %s in %v   (the same rows in 1,000-row transactions: %s → %s in %v; each into a new log)",
			r.BigMB, mib(r.BigRSSBefore), mib(r.BigRSSAt), r.BigElapsed.Round(time.Millisecond), mib(r.SplitRSSBefore), mib(r.SplitRSSAt), r.SplitElapsed.Round(time.Millisecond)))
	}
	return out
}

// MySQL measures the MariaDB capture figures against a mariadbd of its
// own. The error wraps ErrNoMariaDB when MariaDB is not installed.
func MySQL(ctx context.Context, opts MySQLOptions) (*MySQLResults, error) {
	if opts.Changes <= 0 {
		opts.Changes = 50_000
	}
	opts.Changes = (opts.Changes + 99) / 100 * 100
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	if opts.LatencyFor <= 0 {
		opts.LatencyFor = 5 * time.Second
	}
	if opts.LatencyRate <= 0 {
		opts.LatencyRate = 200
	}
	if opts.BigMB == 0 {
		opts.BigMB = 8
	}
	if opts.Progress == nil {
		opts.Progress = func(string, int, int) {}
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stele-bench-mysql-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	srv, err := mysqltest.New(ctx, mysqltest.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	addr := srv.Addr()
	conn, err := client.Connect(addr, "root", "", "")
	if err != nil {
		return nil, fmt.Errorf("connect to the throwaway MariaDB: %w", err)
	}
	defer conn.Close()
	res := &MySQLResults{Changes: opts.Changes}
	if r, err := conn.Execute("SELECT VERSION()"); err == nil {
		v, _ := r.GetString(0, 0)
		res.Version = "MariaDB " + strings.SplitN(v, "-", 2)[0]
	}
	for _, q := range []string{
		"CREATE DATABASE bench", "USE bench",
		"CREATE TABLE e (id BIGINT PRIMARY KEY, account INT, amount DECIMAL(12,2), note VARCHAR(40), at DATETIME(6))",
		"CREATE TABLE lat (id BIGINT PRIMARY KEY, at DATETIME(6))",
		"CREATE TABLE big (id BIGINT PRIMARY KEY, pad TEXT)",
	} {
		if _, err := conn.Execute(q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	from, err := gtidPos(conn)
	if err != nil {
		return nil, err
	}
	for i := range opts.Changes / 100 {
		opts.Progress("mysql load", i*100, opts.Changes)
		if _, err := conn.Execute("BEGIN"); err != nil {
			return nil, err
		}
		for j := range 100 {
			n := i*100 + j
			// One statement per row: a row event each, as an application
			// writes them.
			if _, err := conn.Execute(fmt.Sprintf("INSERT INTO e VALUES (%d, %d, %d.25, 'payment %d', NOW(6))", n, n%97, n, n)); err != nil {
				return nil, err
			}
		}
		if _, err := conn.Execute("COMMIT"); err != nil {
			return nil, err
		}
	}
	end, err := gtidPos(conn)
	if err != nil {
		return nil, err
	}
	url := srv.URL("bench")
	var last *mysqlStack
	defer func() {
		if last != nil {
			last.stop()
		}
	}()
	for r := range opts.Rounds {
		opts.Progress("mysql capture", r, opts.Rounds)
		var round MySQLRound
		raw := func() (err error) {
			round.RawSecs, round.RawCPU, err = measured(func() error { return rawBinlog(ctx, srv.Port, from, end, opts.Changes) })
			return err
		}
		// The raw reader goes first in every other round, and in the
		// last, whose source keeps running for the latency: it never
		// reads while a source's log and index are open (their
		// background flushes and compactions would be counted in its
		// time and CPU).
		final := r == opts.Rounds-1
		rawFirst := r%2 == 0 || final
		if rawFirst {
			if err := raw(); err != nil {
				return nil, err
			}
		}
		c0 := cpuSeconds()
		s, d, err := captureMySQL(ctx, filepath.Join(opts.Dir, fmt.Sprint("round-", r)), url, from, opts.Changes)
		if err != nil {
			return nil, err
		}
		round.SteleSecs, round.SteleCPU = d.Seconds(), cpuSeconds()-c0
		if final {
			last = s
		} else {
			s.stop()
		}
		if !rawFirst {
			if err := raw(); err != nil {
				return nil, err
			}
		}
		res.Rounds = append(res.Rounds, round)
	}
	// The last round's source keeps running for the latency.
	if err := mysqlLatency(ctx, conn, last, opts, res); err != nil {
		return nil, err
	}
	last.stop()
	last = nil
	if opts.BigMB > 0 {
		if err := mysqlBig(ctx, conn, opts.Dir, url, opts.BigMB, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func gtidPos(conn *client.Conn) (string, error) {
	r, err := conn.Execute("SELECT @@GLOBAL.gtid_binlog_pos")
	if err != nil {
		return "", err
	}
	return r.GetString(0, 0)
}

// rawBinlog reads from GTID set from until end with go-mysql's
// BinlogSyncer, decoding to nothing: the same events the source asks for
// (annotate-rows included).
func rawBinlog(ctx context.Context, port int, from, end string, want int) error {
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{ServerID: 9001, Flavor: "mariadb", Host: "127.0.0.1", Port: uint16(port), User: "root",
		DisableRetrySync: true, Logger: slog.New(slog.DiscardHandler), DumpCommandFlag: replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT})
	defer syncer.Close()
	gs, err := gomysql.ParseMariadbGTIDSet(from)
	if err != nil {
		return err
	}
	st, err := syncer.StartSyncGTID(gs)
	if err != nil {
		return err
	}
	rows := 0
	for {
		ev, err := st.GetEvent(ctx)
		if err != nil {
			return err
		}
		if re, ok := ev.Event.(*replication.RowsEvent); ok {
			rows += len(re.Rows)
		}
		if x, ok := ev.Event.(*replication.XIDEvent); ok && x.GSet != nil && x.GSet.String() == end {
			break
		}
	}
	if rows < want {
		return fmt.Errorf("the raw reader saw %d rows, want %d", rows, want)
	}
	return nil
}

type mysqlStack struct {
	st     *stack
	cancel context.CancelFunc
	done   chan error
}

func (m *mysqlStack) stop() {
	m.cancel()
	<-m.done
	m.st.close()
}

// captureMySQL runs a fresh source from GTID set from into a fresh log
// with its index until n records are durable and indexed; the source
// keeps running.
func captureMySQL(ctx context.Context, dir, url, from string, n int) (*mysqlStack, time.Duration, error) {
	st, err := openStack(ctx, filepath.Join(dir, "log"))
	if err != nil {
		return nil, 0, err
	}
	state := filepath.Join(dir, "state")
	if err := capmysql.StartAt(ctx, state, capmysql.FlavorMariaDB, from); err != nil {
		st.close()
		return nil, 0, err
	}
	src, err := capmysql.New(capmysql.Config{Name: "bench", URL: url, StateDir: state, SpillDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		st.close()
		return nil, 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	m := &mysqlStack{st: st, cancel: cancel, done: make(chan error, 1)}
	start := time.Now()
	go func() { m.done <- src.Run(rctx, st.store) }()
	deadline := time.Now().Add(10 * time.Minute)
	for st.store.Size() < uint64(n) {
		select {
		case err := <-m.done:
			m.done <- err
			m.stop()
			return nil, 0, errors.Join(errors.New("the mysql source stopped before every change was captured"), err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, 0, fmt.Errorf("after 10 minutes the log holds %d of %d records", st.store.Size(), n)
		}
	}
	if err := st.store.WaitIndexed(ctx, uint64(n)); err != nil {
		m.stop()
		return nil, 0, err
	}
	return m, time.Since(start), nil
}

// mysqlLatency commits single-row transactions at a steady rate and times,
// for one in ten, COMMIT's return until the change is in the key's
// history.
func mysqlLatency(ctx context.Context, conn *client.Conn, m *mysqlStack, opts MySQLOptions, res *MySQLResults) error {
	eng := query.New(m.st.store, m.st.ix)
	var (
		mu       sync.Mutex
		lats     []time.Duration
		timedOut int
		wg       sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(opts.LatencyRate))
	defer tick.Stop()
	start := time.Now()
	for id := 0; time.Since(start) < opts.LatencyFor; id++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		if _, err := conn.Execute(fmt.Sprintf("INSERT INTO bench.lat VALUES (%d, NOW(6))", id)); err != nil {
			wg.Wait()
			return err
		}
		if id%10 != 0 {
			continue
		}
		committed := time.Now()
		key, err := record.KeyString(json.RawMessage(fmt.Sprintf(`{"id":%d}`, id)))
		if err != nil {
			wg.Wait()
			return err
		}
		opts.Progress("mysql latency", int(time.Since(start)/time.Millisecond), int(opts.LatencyFor/time.Millisecond))
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
			mu.Lock()
			timedOut++
			mu.Unlock()
		})
	}
	wg.Wait()
	if timedOut > 0 {
		return fmt.Errorf("%d of %d sampled changes were not queryable within 30s", timedOut, timedOut+len(lats))
	}
	if len(lats) == 0 {
		return errors.New("no change was sampled")
	}
	slices.Sort(lats)
	res.Samples = len(lats)
	res.P50, res.P99 = lats[len(lats)/2], lats[min(len(lats)-1, len(lats)*99/100)]
	return nil
}

// mysqlBig measures the peak RSS while about mb MiB of 1 KiB rows are
// captured, written as one transaction (it spills, so the peak stays flat
// in the transaction's size) and then as transactions of 1,000 rows: each
// by a new source into a new log, so that what the log and its index hold
// grows alike in both and the difference between the two is the large
// transaction's.
func mysqlBig(ctx context.Context, conn *client.Conn, dir, url string, mb int, res *MySQLResults) error {
	rows := mb * 1024
	res.BigMB = mb
	var err error
	if res.BigRSSBefore, res.BigRSSAt, res.BigElapsed, err = mysqlRSS(ctx, conn, filepath.Join(dir, "big"), url, rows, fmt.Sprintf("INSERT INTO bench.big SELECT seq, REPEAT(MD5(seq), 31) FROM seq_1_to_%d", rows)); err != nil {
		return err
	}
	var split []string
	for lo := 0; lo < rows; lo += 1000 {
		split = append(split, fmt.Sprintf("INSERT INTO bench.big SELECT seq, REPEAT(MD5(seq), 31) FROM seq_%d_to_%d", rows+lo+1, rows+min(lo+1000, rows)))
	}
	res.SplitRSSBefore, res.SplitRSSAt, res.SplitElapsed, err = mysqlRSS(ctx, conn, filepath.Join(dir, "split"), url, rows, split...)
	return err
}

// mysqlRSS starts a source at the current position into a new log in dir,
// runs the statements and returns the peak RSS before and while the n
// records they write are captured, and how long that took.
func mysqlRSS(ctx context.Context, conn *client.Conn, dir, url string, n int, stmts ...string) (before, at int64, took time.Duration, err error) {
	from, err := gtidPos(conn)
	if err != nil {
		return 0, 0, 0, err
	}
	m, _, err := captureMySQL(ctx, dir, url, from, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer m.stop()
	var meter rssMeter
	meter.Start()
	before = meter.Peak()
	start := time.Now()
	for _, q := range stmts {
		if _, err := conn.Execute(q); err != nil {
			return 0, 0, 0, err
		}
	}
	deadline := time.Now().Add(20 * time.Minute)
	for m.st.store.Size() < uint64(n) {
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("%d rows were not captured within 20 minutes", n)
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case err := <-m.done:
			m.done <- err
			return 0, 0, 0, errors.Join(errors.New("the mysql source stopped before every change was captured"), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return before, meter.Peak(), time.Since(start), nil
}
