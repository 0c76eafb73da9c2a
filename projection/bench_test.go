package projection_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stele/stele/projection"
	"github.com/stele/stele/record"
)

// BenchmarkRebuild measures the rate at which a projection is rebuilt from
// the log against the rate of a plain log scan (log.Replay, which decodes
// every record) in the same run, and reports the ratio.
func BenchmarkRebuild(b *testing.B) {
	const n = 20000
	ctx := context.Background()
	lg := newLog(b)
	recs := mixedRecords(rand.New(rand.NewPCG(9, 9)), "b", n)
	for off := 0; off < n; off += 1000 {
		appendAll(b, lg, recs[off:off+1000]...)
	}
	defs := testDefs()
	cases := []struct {
		name string
		defs []projection.Definition
	}{
		{"state", defs[0:1]},
		{"count", defs[2:3]},
		{"last_change_per_field", defs[3:4]},
		{"reduce", defs[4:5]},
		{"all5", defs},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			set := compile(b, tc.defs...)
			var scan, rebuild time.Duration
			for b.Loop() {
				start := time.Now()
				if err := lg.Replay(ctx, 0, lg.Size(), 4096, func([]*record.Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
				scan += time.Since(start)

				b.StopTimer()
				st := openStore(b, b.TempDir(), set, projection.Options{})
				b.StartTimer()
				start = time.Now()
				if err := st.CatchUp(ctx, lg); err != nil {
					b.Fatal(err)
				}
				rebuild += time.Since(start)
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
			scanRate := float64(n*b.N) / scan.Seconds()
			rebuildRate := float64(n*b.N) / rebuild.Seconds()
			b.ReportMetric(scanRate, "scan_rec/s")
			b.ReportMetric(rebuildRate, "rebuild_rec/s")
			b.ReportMetric(rebuildRate/scanRate, "ratio")
		})
	}
}
