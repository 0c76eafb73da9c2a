package kafka_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/stele/stele/bench"
)

// BenchmarkCaptureVsRawConsumer is stele bench's Kafka figure (bench.Kafka:
// a kfake topic of Debezium PostgreSQL-connector messages, read in the
// same run by a bare franz-go group consumer that only counts them, by the
// kafka source into a durable, indexed log, and appended by the log alone
// after decoding outside the clock), one round per iteration.
// STELE_BENCH_KAFKA_EVENTS sets the topic's size (default 100000; the
// README's 1 M figure is this with 1000000).
func BenchmarkCaptureVsRawConsumer(b *testing.B) {
	n := 100_000
	if s := os.Getenv("STELE_BENCH_KAFKA_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("STELE_BENCH_KAFKA_EVENTS=%q: want a positive count", s)
		}
	}
	var res *bench.KafkaResults
	for b.Loop() {
		var err error
		if res, err = bench.Kafka(context.Background(), bench.KafkaOptions{Dir: b.TempDir(), Events: n, Rounds: 1}); err != nil {
			b.Fatal(err)
		}
	}
	r := res.Rounds[0]
	b.ReportMetric(res.RawRate(), "raw-events/s")
	b.ReportMetric(res.SteleRate(), "stele-events/s")
	b.ReportMetric(res.LogRate(), "log-records/s")
	b.ReportMetric(res.Ratio(), "ratio")
	b.ReportMetric(res.LogRatio(), "log-ratio")
	b.ReportMetric(r.RawCPU/float64(n)*1e6, "raw-cpu-µs/event")
	b.ReportMetric(r.SteleCPU/float64(n)*1e6, "stele-cpu-µs/event")
	b.ReportMetric(r.LogCPU/float64(n)*1e6, "log-cpu-µs/event")
}
