package mysql

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	stele "github.com/stele/stele"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/record"
)

// TestCaptureBenchmark measures, in one run over the same binlog: (a)
// captured changes/s end to end, MariaDB binlog to a durable, indexed log,
// for single-row INSERTs in transactions of 100; (b) go-mysql's
// BinlogSyncer reading and decoding the same events to nothing, and the
// ratio of the two. The two alternate over rounds (the machine is shared,
// so one round of each says little) and the medians are compared.
// Skipped unless STELE_BENCH_CAPTURE=1; STELE_BENCH_ROUNDS sets the
// rounds (default 5), STELE_BENCH_BATCH the source's batch size.
func TestCaptureBenchmark(t *testing.T) {
	if os.Getenv("STELE_BENCH_CAPTURE") == "" {
		t.Skip("set STELE_BENCH_CAPTURE=1 to run the capture benchmark")
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("STELE_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	batch, _ := strconv.Atoi(os.Getenv("STELE_BENCH_BATCH"))
	const txs, perTx = 500, 100
	srv := mysqltest.Start(t, mysqltest.Options{})
	srv.CreateDatabase(t, "bench", `CREATE TABLE e (id BIGINT PRIMARY KEY, account INT, amount DECIMAL(12,2), note VARCHAR(40), at DATETIME(6))`)
	from := srv.Value(t, "", "SELECT @@gtid_binlog_pos")
	c := srv.Connect(t, "bench")
	for i := range txs {
		var q strings.Builder
		if _, err := c.Execute("BEGIN"); err != nil {
			t.Fatal(err)
		}
		for j := range perTx {
			q.Reset()
			n := i*perTx + j
			fmt.Fprintf(&q, "INSERT INTO e VALUES (%d, %d, %d.25, 'payment %d', NOW(6))", n, n%97, n, n)
			if _, err := c.Execute(q.String()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Execute("COMMIT"); err != nil {
			t.Fatal(err)
		}
	}
	end := srv.Value(t, "", "SELECT @@gtid_binlog_pos")
	total := txs * perTx

	raw := func() float64 {
		start := time.Now()
		syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{ServerID: 9001, Flavor: "mariadb", Host: "127.0.0.1", Port: uint16(srv.Port), User: "root", DisableRetrySync: true, Logger: slog.New(slog.DiscardHandler),
			// The same events the source asks for: with the annotate-rows
			// events (the statements, for actors by comment).
			DumpCommandFlag: replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT})
		defer syncer.Close()
		gs, _ := gomysql.ParseMariadbGTIDSet(from)
		st, err := syncer.StartSyncGTID(gs)
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		for {
			ev, err := st.GetEvent(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if re, ok := ev.Event.(*replication.RowsEvent); ok {
				rows += len(re.Rows)
			}
			if x, ok := ev.Event.(*replication.XIDEvent); ok && x.GSet != nil && x.GSet.String() == end {
				break
			}
		}
		if rows != total {
			t.Fatalf("raw reader saw %d rows, want %d", rows, total)
		}
		return float64(rows) / time.Since(start).Seconds()
	}
	captured := func(coalesce int, discard, oneAtATime bool) float64 {
		// Labelled for -cpuprofile (-tagfocus phase=captured): the
		// goroutines the source and the store start inherit it.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("phase", "captured")))
		defer pprof.SetGoroutineLabels(context.Background())
		ts := openStore(t, t.TempDir())
		defer ts.close()
		var sink capture.Sink = ts
		size := ts.Size
		if oneAtATime {
			// Only Append: the acknowledger waits for each append before
			// preparing the next (no pipelining).
			sink = struct{ capture.Sink }{ts}
		}
		if discard {
			d := &countSink{}
			sink, size = d, d.n.Load
		}
		state := t.TempDir()
		cfg := Config{URL: srv.URL("bench"), StateDir: state, BatchSize: batch, Coalesce: coalesce}
		src, _ := New(testConfig(t, cfg))
		stState, err := src.openState()
		if err != nil {
			t.Fatal(err)
		}
		stState.setDurable(binlogPos{GTIDMode: true, GTID: from})
		if err := stState.save(context.Background()); err != nil {
			t.Fatal(err)
		}
		begun := time.Now()
		r := start(t, cfg, sink)
		var first time.Duration
		for size() < uint64(total) {
			if first == 0 && size() > 0 {
				first = time.Since(begun)
			}
			time.Sleep(time.Millisecond)
		}
		if os.Getenv("STELE_BENCH_FIRST") != "" {
			t.Logf("first record after %v, all after %v", first, time.Since(begun))
		}
		rate := float64(total) / time.Since(begun).Seconds()
		r.stop()
		return rate
	}
	// STELE_BENCH_AB=1 adds, in each round, the source with merged appends
	// on (Coalesce 16 batches, the default until measured slower), and the
	// source into a sink that only counts (what decoding and stamping
	// cost, without the log).
	// STELE_BENCH_SYNC=1 adds the source appending one batch at a time
	// (no pipelining, as before AppendAsync).
	ab, syncAB := os.Getenv("STELE_BENCH_AB") != "", os.Getenv("STELE_BENCH_SYNC") != ""
	merged := 16 * 1000
	if batch > 0 {
		merged = 16 * batch
	}
	var raws, caps, merges, discards, syncs []float64
	for i := range rounds {
		steps := []func(){
			func() { raws = append(raws, raw()) },
			func() { caps = append(caps, captured(0, false, false)) },
		}
		if ab {
			steps = append(steps,
				func() { merges = append(merges, captured(merged, false, false)) },
				func() { discards = append(discards, captured(0, true, false)) })
		}
		if syncAB {
			steps = append(steps, func() { syncs = append(syncs, captured(0, false, true)) })
		}
		if i%2 == 1 {
			slices.Reverse(steps)
		}
		for _, f := range steps {
			f()
		}
		line := fmt.Sprintf("round %d: raw %.0f rows/s, captured %.0f changes/s (ratio %.2f)", i+1, raws[i], caps[i], caps[i]/raws[i])
		if ab {
			line += fmt.Sprintf(", with merged appends %.0f (ratio %.2f), into a counting sink %.0f (ratio %.2f)", merges[i], merges[i]/raws[i], discards[i], discards[i]/raws[i])
		}
		if syncAB {
			line += fmt.Sprintf(", one append at a time %.0f (ratio %.2f)", syncs[i], syncs[i]/raws[i])
		}
		t.Log(line)
	}
	mr, mc := median(raws), median(caps)
	t.Logf("median of %d alternating rounds: raw BinlogSyncer decode %.0f rows/s, captured durable and indexed %.0f changes/s, ratio %.2f", rounds, mr, mc, mc/mr)
	if syncAB {
		t.Logf("one append at a time: median %.0f changes/s, ratio %.2f", median(syncs), median(syncs)/mr)
	}
	if ab {
		t.Logf("with merged appends: median %.0f changes/s, ratio %.2f; into a counting sink (no log): median %.0f changes/s, ratio %.2f", median(merges), median(merges)/mr, median(discards), median(discards)/mr)
	}
}

// countSink counts appended records and keeps nothing.
type countSink struct{ n atomic.Uint64 }

func (c *countSink) Append(_ context.Context, recs []*record.Record) ([]stele.Appended, error) {
	c.n.Add(uint64(len(recs)))
	return make([]stele.Appended, len(recs)), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
