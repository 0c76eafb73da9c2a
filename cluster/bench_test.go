package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// appender is what both sides of the comparison append through.
type appender interface {
	Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error)
}

// throughput appends n records in batches of batch from workers
// goroutines spread over logs, and returns records/s.
func throughput(t testing.TB, logs []appender, n, batch, workers int, tag string) float64 {
	ctx := context.Background()
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			l := logs[w%len(logs)]
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= n {
					return
				}
				recs := make([]*record.Record, 0, batch)
				for i := lo; i < min(lo+batch, n); i++ {
					recs = append(recs, rec(fmt.Sprintf("%s-%d", tag, i), i))
				}
				if _, err := l.Append(ctx, recs); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// latency appends one record at a time, k times, and returns the times
// from the call until the record is in the answering node's index.
func latency(t testing.TB, l appender, wait func(context.Context, uint64) error, k int, tag string) []time.Duration {
	ctx := context.Background()
	out := make([]time.Duration, 0, k)
	for i := range k {
		start := time.Now()
		res, err := l.Append(ctx, []*record.Record{rec(fmt.Sprintf("%s-%d", tag, i), i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := wait(ctx, res[0].Seq+1); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Since(start))
		time.Sleep(5 * time.Millisecond)
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

// TestClusterFigures measures, in one run, appends/s and
// commit-to-queryable latency of one embedded node (a logstore.Store with
// its index) and of three cluster nodes on a three-server NATS cluster on
// loopback, and prints their ratio. Skipped unless STELE_BENCH_CLUSTER=1
// (docs/cluster.md has the figures).
func TestClusterFigures(t *testing.T) {
	if os.Getenv("STELE_BENCH_CLUSTER") == "" {
		t.Skip("set STELE_BENCH_CLUSTER=1 to measure the cluster figures")
	}
	const n, batch, samples = 20000, 100, 200
	workers := 8
	if w, err := strconv.Atoi(os.Getenv("STELE_BENCH_CLUSTER_PRODUCERS")); err == nil && w > 0 {
		workers = w
	}
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	single, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()

	_, nodes := startThree(t, 5*time.Second)
	var logs []appender
	for _, nd := range nodes {
		logs = append(logs, nd.node)
	}
	for round := range 3 {
		one := throughput(t, []appender{single}, n, batch, workers, fmt.Sprintf("one%d", round))
		three := throughput(t, logs, n, batch, workers, fmt.Sprintf("three%d", round))
		t.Logf("round %d: appends/s, %d records in batches of %d from %d producers: 1 node embedded %.0f/s, 3 nodes on loopback %.0f/s, ratio %.2f",
			round, n, batch, workers, one, three, three/one)
	}
	l1 := latency(t, single, single.WaitIndexed, samples, "lat1")
	l3 := latency(t, nodes[0].node, nodes[0].store.WaitIndexed, samples, "lat3")
	t.Logf("commit-to-queryable latency, %d single-record appends: 1 node p50 %s p99 %s; 3 nodes p50 %s p99 %s (p50 ratio %.1f)",
		samples, pct(l1, 0.5), pct(l1, 0.99), pct(l3, 0.5), pct(l3, 0.99), float64(pct(l3, 0.5))/float64(pct(l1, 0.5)))
}

// BenchmarkClusterAppend appends batches of 100 records through a node of
// a three-node cluster on loopback, with BenchmarkSingleAppend, the same
// on one embedded store, as its same-run baseline.
func BenchmarkClusterAppend(b *testing.B) {
	_, nodes := startThree(b, 5*time.Second)
	benchAppend(b, nodes[0].node)
}

func BenchmarkSingleAppend(b *testing.B) {
	dir := b.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	s, err := logstore.Open(context.Background(), dir, logstore.Options{Hook: ix})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchAppend(b, s)
}

func benchAppend(b *testing.B, l appender) {
	ctx := context.Background()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		recs := make([]*record.Record, 100)
		for j := range recs {
			recs[j] = rec(fmt.Sprintf("b%d", i), i)
			i++
		}
		if _, err := l.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
}
