package export_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/stele/stele/export"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// BenchmarkExport measures export rates per format against the plain log
// scan (log.Replay, decode only) over the same store in the same run, and
// logs each as a ratio to it. STELE_BENCH_EXPORT_N sets the log size
// (default 50,000 records of about 600 bytes).
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
	rates := map[string]float64{}
	run := func(name string, fn func(b *testing.B) uint64) {
		b.Run(name, func(b *testing.B) {
			var recs uint64
			for b.Loop() {
				recs += fn(b)
			}
			rate := float64(recs) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "records/s")
			rates[name] = rate
		})
	}
	run("replay", func(b *testing.B) uint64 {
		var got uint64
		if err := e.store.Replay(ctx, 0, cp.Size, 1024, func(recs []*record.Record) error {
			got += uint64(len(recs))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return got
	})
	files := map[export.Format][2][]byte{}
	for _, format := range export.Formats {
		for _, f := range []struct {
			name string
			f    query.Filter
		}{{"all", query.Filter{}}, {"source", query.Filter{Source: "crm"}}} {
			run(string(format)+"/"+f.name, func(b *testing.B) uint64 {
				var data, proof bytes.Buffer
				sum, err := e.ex.Write(ctx, export.Options{Format: format, Filter: f.f, Size: cp.Size, Checkpoint: cp,
					VerifierKey: e.store.Keys().VerifierKey}, &data, &proof)
				if err != nil {
					b.Fatal(err)
				}
				if f.name == "all" {
					files[format] = [2][]byte{data.Bytes(), proof.Bytes()}
				}
				return sum.Records
			})
		}
	}
	for _, format := range export.Formats {
		run("verify/"+string(format), func(b *testing.B) uint64 {
			f := files[format]
			rep, err := export.Verify(ctx, bytes.NewReader(f[0]), int64(len(f[0])), bytes.NewReader(f[1]), export.VerifyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return rep.Records
		})
	}
	if base := rates["replay"]; base > 0 {
		for name, r := range rates {
			if name != "replay" {
				b.Logf("%-16s %9.0f records/s  %.2fx log.Replay (%.0f records/s)", name, r, r/base, base)
			}
		}
		for format, f := range files {
			b.Logf("%-8s data %6.1f MB, proof %5.1f MB for %d records", format, float64(len(f[0]))/1e6, float64(len(f[1]))/1e6, n)
		}
	}
}
