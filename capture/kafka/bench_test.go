package kafka

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// BenchmarkCaptureVsRawConsumer pre-fills a topic with Debezium change
// events (PostgreSQL shape, schemas off, no transaction metadata) and
// reads it twice in the same run: once with a bare franz-go group consumer
// that only counts records (the ceiling), once with the kafka source into
// the real log (decode, derive ids, durable appends, commits). It reports
// both rates and their ratio. STELE_BENCH_KAFKA_EVENTS sets the topic's
// size (default 100000; the README's 1 M figure is this with 1000000).
func BenchmarkCaptureVsRawConsumer(b *testing.B) {
	n := 100_000
	if s := os.Getenv("STELE_BENCH_KAFKA_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("STELE_BENCH_KAFKA_EVENTS=%q: want a positive count", s)
		}
	}
	br := startBroker(b)
	topic := "bench.public.items"
	if err := br.cluster().CreateTopic(topic, 4, nil); err != nil {
		b.Fatal(err)
	}
	prod := br.producer(b)
	ctx := context.Background()
	batch := make([]*kgo.Record, 0, 10_000)
	flush := func() {
		if err := prod.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n {
		v := fmt.Sprintf(`{"before":null,"after":{"id":%d,"v":"value %d","email":"user%d@example.com","qty":%d},`+
			`"source":{"version":"2.7.3.Final","connector":"postgresql","name":"bench","ts_ms":1767323045123,"snapshot":"false",`+
			`"db":"postgres","sequence":"[\"1\",\"2\"]","schema":"public","table":"items","txId":%d,"lsn":%d,"xmin":null},`+
			`"transaction":null,"op":"c","ts_ms":1767323045500}`, i, i, i, i%100, 1000+i, 0x1000000+i*64)
		batch = append(batch, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, `{"id":%d}`, i), Value: []byte(v)})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	var rawRate, steleRate float64
	for b.Loop() {
		rawRate = rawConsume(b, br, topic, n)
		steleRate = steleConsume(b, br, topic, n)
	}
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(steleRate, "stele-events/s")
	b.ReportMetric(steleRate/rawRate, "ratio")
}

func rawConsume(b *testing.B, br *broker, topic string, n int) float64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.addr()),
		kgo.SASL(plain.Auth{User: saslUser, Pass: saslPass}.AsMechanism()),
		kgo.ConsumerGroup(fmt.Sprintf("raw-%d", time.Now().UnixNano())), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	got := 0
	for got < n {
		fs := cl.PollRecords(ctx, 1000)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		got += fs.NumRecords()
		if got >= n {
			// What the source does at the end: commit.
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func steleConsume(b *testing.B, br *broker, topic string, n int) float64 {
	st := openStore(b)
	src, err := New(Config{Name: "bench", Brokers: []string{br.addr()}, Topics: []string{topic},
		Group: fmt.Sprintf("stele-%d", time.Now().UnixNano()), BatchSize: benchBatch(),
		SASL: SASL{Mechanism: "PLAIN", User: saslUser, Password: saslPass}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- src.Run(ctx, st) }()
	for st.Size() < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	rate := float64(n) / time.Since(start).Seconds()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return rate
}

// benchBatch is the source's batch size in the benchmark
// (STELE_BENCH_KAFKA_BATCH, default the source's default).
func benchBatch() int {
	n, _ := strconv.Atoi(os.Getenv("STELE_BENCH_KAFKA_BATCH"))
	return n
}
