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

// meter counts bytes written and samples the live heap every 4 MB, so the
// benchmark shows that an export streams instead of holding its output.
type meter struct {
	n, next  int64
	peakHeap uint64
}

func (m *meter) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	if m.n >= m.next {
		m.next = m.n + 4<<20
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m.peakHeap = max(m.peakHeap, ms.HeapAlloc)
	}
	return len(p), nil
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
		run  func() (records uint64, m *meter)
	}
	variants := []variant{{"replay", func() (uint64, *meter) {
		var got uint64
		if err := e.store.Replay(ctx, 0, cp.Size, 1024, func(recs []*record.Record) error {
			got += uint64(len(recs))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return got, nil
	}}}
	for _, f := range export.Formats {
		for _, q := range []struct {
			name string
			f    query.Filter
		}{{"all", query.Filter{}}, {"by-source", query.Filter{Source: "crm"}}} {
			variants = append(variants, variant{string(f) + "/" + q.name, func() (uint64, *meter) {
				var data, proof meter
				sum, err := e.ex.Write(ctx, opts(f, q.f), &data, &proof)
				if err != nil {
					b.Fatal(err)
				}
				return sum.Records, &data
			}})
		}
	}
	for _, f := range export.Formats {
		variants = append(variants, variant{"verify/" + string(f), func() (uint64, *meter) {
			file := files[f]
			rep, err := export.Verify(ctx, bytes.NewReader(file[0]), int64(len(file[0])), bytes.NewReader(file[1]), export.VerifyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return rep.Records, nil
		}})
	}

	elapsed := make([]time.Duration, len(variants))
	records := make([]uint64, len(variants))
	peak := make([]uint64, len(variants))
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			recs, m := v.run()
			elapsed[i] += time.Since(start)
			records[i] += recs
			if m != nil {
				peak[i] = max(peak[i], m.peakHeap)
			}
		}
	}
	rate := func(i int) float64 { return float64(records[i]) / elapsed[i].Seconds() }
	base := rate(0)
	b.ReportMetric(base, "replay-records/s")
	for i, v := range variants[1:] {
		i++
		b.ReportMetric(rate(i)/base, v.name+"-x-replay")
		line := ""
		if peak[i] > 0 {
			line = " peak heap " + strconv.FormatFloat(float64(peak[i])/(1<<20), 'f', 0, 64) + " MiB"
		}
		b.Logf("%-18s %8.0f records/s  %5.2fx log.Replay (%.0f records/s)%s", v.name, rate(i), rate(i)/base, base, line)
	}
	for _, f := range export.Formats {
		b.Logf("%-8s %d records: data %.1f MB, proof %.1f MB (unfiltered)", f, n, float64(len(files[f][0]))/1e6, float64(len(files[f][1]))/1e6)
	}
}
