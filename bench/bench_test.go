package bench

import (
	"context"
	"testing"

	"github.com/stele/stele/record"
)

// TestRunSmall runs every phase at a tiny size: the figures are not checked
// (timing thresholds do not belong in tests), but every phase must work and
// produce positive numbers.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Options{Dir: t.TempDir(), Records: 20_000, Throughput: 6_000, Clients: 16, Queries: 200})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"baseline": res.BaselineRecordsSec, "batched": res.BatchedRecordsSec, "indexed": res.BatchedIndexedSec,
		"concurrent": res.ConcurrentSec, "sha": res.SHA256MBs, "verify": res.VerifyMBs} {
		if v <= 0 {
			t.Errorf("%s figure is %v", name, v)
		}
	}
	if res.HistoryP50 <= 0 || res.HistoryP99 < res.HistoryP50 {
		t.Errorf("history percentiles %v/%v", res.HistoryP50, res.HistoryP99)
	}
}

func TestRecordSize(t *testing.T) {
	n := len(record.Encode(Record(123456, 100000)))
	if n < 480 || n > 560 {
		t.Fatalf("benchmark record is %d bytes, want about 512", n)
	}
}
