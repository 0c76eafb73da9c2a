package export_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stele/stele/export"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// meter counts bytes written; with sample set it also measures the live
// heap (after a GC) every 2 MB, to show that an export streams instead of
// holding its output. Sampling stays out of the timed runs.
type meter struct {
	n, next  int64
	sample   bool
	peakHeap uint64
}

func (m *meter) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	if m.sample && m.n >= m.next {
		m.next = m.n + 2<<20
		m.peakHeap = max(m.peakHeap, liveHeap())
	}
	return len(p), nil
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkExport measures the export rate of each format, unfiltered and
// filtered by source (through the index, with an inclusion proof per row),
// and the offline verification rate, against the plain log scan
// (log.Replay, decode only) over the same store. The variants run in turn
// inside every iteration, so load from other processes on this shared
// machine falls on all of them alike, and each is reported as a ratio to
// the scan. STELE_BENCH_EXPORT_N sets the log size (default 50,000 records
// of about 600 bytes).
func BenchmarkExport(b *testing.B) {
	n := 50_000
	if v, err := strconv.Atoi(os.Getenv("STELE_BENCH_EXPORT_N")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b)
	e.appendN(b, 0, n)
	ctx := context.Background()
	cp, err := e.store.Checkpoint(ctx)
	if err != nil {
		b.Fatal(err)
	}
	opts := func(f export.Format, q query.Filter) export.Options {
		return export.Options{Format: f, Filter: q, Size: cp.Size, Checkpoint: cp, VerifierKey: e.store.Keys().VerifierKey}
	}
	files := map[export.Format][2][]byte{}
	for _, f := range export.Formats {
		var data, proof bytes.Buffer
		if _, err := e.ex.Write(ctx, opts(f, query.Filter{}), &data, &proof); err != nil {
			b.Fatal(err)
		}
		files[f] = [2][]byte{data.Bytes(), proof.Bytes()}
	}

	type variant struct {
		name string
		run  func() (records uint64)
	}
	variants := []variant{{"replay", func() uint64 {
		var got uint64
		if err := e.store.Replay(ctx, 0, cp.Size, 1024, func(recs []*record.Record) error {
			got += uint64(len(recs))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return got
	}}}
	for _, f := range export.Formats {
		for _, q := range []struct {
			name string
			f    query.Filter
		}{{"all", query.Filter{}}, {"by-source", query.Filter{Source: "crm"}}} {
			variants = append(variants, variant{string(f) + "/" + q.name, func() uint64 {
				var data, proof meter
				sum, err := e.ex.Write(ctx, opts(f, q.f), &data, &proof)
				if err != nil {
					b.Fatal(err)
				}
				return sum.Records
			}})
		}
	}
	for _, f := range export.Formats {
		variants = append(variants, variant{"verify/" + string(f), func() uint64 {
			file := files[f]
			rep, err := export.Verify(ctx, bytes.NewReader(file[0]), int64(len(file[0])), bytes.NewReader(file[1]), export.VerifyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return rep.Records
		}})
	}

	elapsed := make([]time.Duration, len(variants))
	records := make([]uint64, len(variants))
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			records[i] += v.run()
			elapsed[i] += time.Since(start)
		}
	}
	rate := func(i int) float64 { return float64(records[i]) / elapsed[i].Seconds() }
	base := rate(0)
	b.ReportMetric(base, "replay-records/s")
	for i, v := range variants[1:] {
		i++
		b.ReportMetric(rate(i)/base, v.name+"-x-replay")
		b.Logf("%-18s %8.0f records/s  %5.2fx log.Replay (%.0f records/s)", v.name, rate(i), rate(i)/base, base)
	}
	b.StopTimer()
	clear(files) // drop the verify inputs before measuring the heap
	for _, f := range export.Formats {
		before := liveHeap()
		data := &meter{sample: true}
		if _, err := e.ex.Write(ctx, opts(f, query.Filter{}), data, &meter{}); err != nil {
			b.Fatal(err)
		}
		grew := (float64(data.peakHeap) - float64(before)) / (1 << 20)
		b.ReportMetric(grew, string(f)+"-heap-growth-MiB")
		b.ReportMetric(float64(data.n)/1e6, string(f)+"-data-MB")
	}
}
