package index_test

import (
	"testing"

	"github.com/stele/stele/bench"
	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

func BenchmarkApplyBatch1000(b *testing.B) {
	ix, err := index.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	n := 0
	for b.Loop() {
		recs := make([]*record.Record, 1000)
		for i := range recs {
			recs[i] = bench.Record(n, 100000)
			recs[i].Seq = uint64(n)
			n++
		}
		if err := ix.Apply(recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
