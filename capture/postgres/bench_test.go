package postgres_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/stele/stele/bench"
)

// TestCaptureBenchmark prints the capture figures of bench.Capture (also
// part of `stele bench`) in one run: (a) captured changes/s end to end
// (PostgreSQL → durable, indexed log) for N single-row INSERTs in
// transactions of 100 rows, (b) pg_recvlogical streaming the same WAL with
// pgoutput to /dev/null, and their ratio; (c) commit-to-queryable latency
// under a steady load; (d) peak RSS growth while one large transaction is
// captured, which `stele bench` leaves out by default because it is slow;
// (e) the transaction-heavy workload (inserts, then updates with full
// before images, in transactions of 2,000 rows) against pg_recvlogical.
// It is long, so it runs only with STELE_BENCH_CAPTURE=1 (STELE_BENCH_N,
// STELE_BENCH_ROUNDS and STELE_BENCH_BIG_MB scale it):
//
//	STELE_BENCH_CAPTURE=1 go test -run TestCaptureBenchmark -v -timeout 30m ./capture/postgres/
func TestCaptureBenchmark(t *testing.T) {
	if os.Getenv("STELE_BENCH_CAPTURE") != "1" {
		t.Skip("set STELE_BENCH_CAPTURE=1 to run the capture benchmark (several minutes)")
	}
	opts := bench.CaptureOptions{
		Dir:     t.TempDir(),
		Changes: envInt("STELE_BENCH_N", 200_000),
		Rounds:  envInt("STELE_BENCH_ROUNDS", 3),
		BigMB:   envInt("STELE_BENCH_BIG_MB", 1024),
		// Diagnostics: STELE_BENCH_SINK=noindex appends to a log without
		// its index hook, =discard to a sink that only counts; neither is
		// the figure, they show how much of it the log and index take.
		Sink:           os.Getenv("STELE_BENCH_SINK"),
		RecvFirst:      os.Getenv("STELE_BENCH_RECV_FIRST") == "1",
		ThroughputOnly: os.Getenv("STELE_BENCH_ONLY_THROUGHPUT") == "1",
		Logf:           t.Logf,
		// The transaction-heavy figure: STELE_BENCH_TX inserts (then a
		// quarter as many updates) in transactions of STELE_BENCH_TX_ROWS;
		// STELE_BENCH_TX_PROFILE=1 profiles it instead of the insert figure.
		TxInserts: envInt("STELE_BENCH_TX", 200_000),
		TxRows:    envInt("STELE_BENCH_TX_ROWS", 2_000),
		ProfileTx: os.Getenv("STELE_BENCH_TX_PROFILE") == "1",
	}
	if prof := os.Getenv("STELE_BENCH_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		opts.CPUProfile = f
	}
	res, err := bench.Capture(context.Background(), opts)
	if errors.Is(err, bench.ErrNoPostgres) {
		t.Skipf("%v: apt-get install postgresql-15 to run this test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Lines() {
		t.Log(l)
	}
	t.Logf("targets: capture >= 0.8x pg_recvlogical, commit-to-queryable p99 <= 250ms, peak RSS flat in the transaction's size")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
