package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/capture/kafka"
	"github.com/stele/stele/record"
)

// KafkaOptions size the Kafka capture figure. Zero values give the
// defaults.
type KafkaOptions struct {
	// Dir holds the logs the events are captured into (default: a new
	// temp dir, removed after).
	Dir string
	// Events is how many Debezium messages the topic holds (100,000).
	Events int
	// Partitions is the topic's partition count (4).
	Partitions int
	// Rounds is how many times each reader reads the whole topic, in
	// alternating order; the figures are the median round (3).
	Rounds   int
	Progress func(phase string, done, total int)
}

// KafkaResults are the Kafka capture figures.
type KafkaResults struct {
	Events, Partitions int
	Rounds             []KafkaRound
}

// KafkaRound is one round: a bare franz-go group consumer reading the
// topic to nothing; the kafka source capturing it into a durable, indexed
// log; and the same log taking the same records, decoded beforehand, in
// appends of 1,000 from one producer: the most the source could reach.
// The CPU figures are the process's CPU time during each.
type KafkaRound struct {
	RawSecs, SteleSecs, LogSecs float64
	RawCPU, SteleCPU, LogCPU    float64
}

func (r *KafkaResults) rate(secs float64) float64 { return float64(r.Events) / secs }

// SteleRate is the median events/s captured end to end.
func (r *KafkaResults) SteleRate() float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return r.rate(x.SteleSecs) })
}

// RawRate is the median events/s of the bare consumer.
func (r *KafkaResults) RawRate() float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return r.rate(x.RawSecs) })
}

// LogRate is the median records/s of the log alone.
func (r *KafkaResults) LogRate() float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return r.rate(x.LogSecs) })
}

// Ratio is the median of each round's captured/raw rate.
func (r *KafkaResults) Ratio() float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return x.RawSecs / x.SteleSecs })
}

// LogRatio is the median of each round's captured/log-alone rate.
func (r *KafkaResults) LogRatio() float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return x.LogSecs / x.SteleSecs })
}

// cpuPerEvent is the median CPU time per event of one reader, in µs.
func (r *KafkaResults) cpuPerEvent(f func(KafkaRound) float64) float64 {
	return median(r.Rounds, func(x KafkaRound) float64 { return f(x) / float64(r.Events) * 1e6 })
}

// Lines are the report, one figure a line.
func (r *KafkaResults) Lines() []string {
	return []string{
		fmt.Sprintf("capture Kafka (Debezium) → log %6.0f events/s durable + indexed   (%.3fx a bare franz-go consumer at %.0f events/s; %.2fx the log alone taking the same records at %.0f records/s; %d events, %d partitions, median of %d rounds, kfake in-process)",
			r.SteleRate(), r.Ratio(), r.RawRate(), r.LogRatio(), r.LogRate(), r.Events, r.Partitions, len(r.Rounds)),
		fmt.Sprintf("capture Kafka CPU per event   %.1f µs   (bare consumer %.1f µs, log alone %.1f µs; the process's CPU time)",
			r.cpuPerEvent(func(x KafkaRound) float64 { return x.SteleCPU }), r.cpuPerEvent(func(x KafkaRound) float64 { return x.RawCPU }),
			r.cpuPerEvent(func(x KafkaRound) float64 { return x.LogCPU })),
	}
}

// Kafka measures the Kafka capture figure against a kfake broker in this
// process, whose topic it fills with opts.Events Debezium messages first.
func Kafka(ctx context.Context, opts KafkaOptions) (*KafkaResults, error) {
	for _, d := range []struct {
		n   *int
		def int
	}{{&opts.Events, 100_000}, {&opts.Partitions, 4}, {&opts.Rounds, 3}} {
		if *d.n <= 0 {
			*d.n = d.def
		}
	}
	if opts.Progress == nil {
		opts.Progress = func(string, int, int) {}
	}
	dir, cleanup, err := scratchDir(opts.Dir, "stele-bench-kafka-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	opts.Dir = dir
	addr, stop, err := startKfake(opts.Partitions)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := fillTopic(ctx, addr, opts.Events, opts.Progress); err != nil {
		return nil, err
	}
	res := &KafkaResults{Events: opts.Events, Partitions: opts.Partitions}
	for r := range opts.Rounds {
		opts.Progress("kafka capture", r, opts.Rounds)
		var round KafkaRound
		runs := []func() error{
			func() (err error) {
				round.RawSecs, round.RawCPU, err = measured(func() error { return rawKafka(ctx, addr, fmt.Sprint("raw-", r), opts.Events) })
				return err
			},
			func() (err error) {
				dir := filepath.Join(opts.Dir, fmt.Sprint("round-", r))
				round.SteleSecs, round.SteleCPU, err = captureKafka(ctx, dir, addr, fmt.Sprint("stele-", r), opts.Events)
				return err
			},
			func() (err error) {
				round.LogSecs, round.LogCPU, err = logAlone(ctx, filepath.Join(opts.Dir, fmt.Sprint("log-", r)), opts.Events)
				return err
			},
		}
		// Each round starts with the next reader, so none always meets
		// the machine (the page cache, the other processes) in one state.
		for i := range runs {
			if err := runs[(i+r)%len(runs)](); err != nil {
				return nil, err
			}
		}
		res.Rounds = append(res.Rounds, round)
	}
	opts.Progress("kafka capture", opts.Rounds, opts.Rounds)
	return res, nil
}

// scratchDir is dir, or when it is empty a new temporary directory,
// which cleanup then removes with everything in it.
func scratchDir(dir, pattern string) (_ string, cleanup func(), _ error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// kafkaTopic is the topic the figure fills: the connector's name for the
// items table of server "bench".
const kafkaTopic = "bench.public.items"

// startKfake starts a one-broker kfake cluster on a free loopback port,
// with the topic created.
func startKfake(partitions int) (addr string, stop func(), _ error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
	if err != nil {
		return "", nil, fmt.Errorf("start kfake: %w", err)
	}
	if err := c.CreateTopic(kafkaTopic, int32(partitions), nil); err != nil {
		c.Close()
		return "", nil, fmt.Errorf("create topic %s: %w", kafkaTopic, err)
	}
	return c.ListenAddrs()[0], c.Close, nil
}

// KafkaMessage is the i-th message of the figure's topic, as Debezium's
// PostgreSQL connector writes it with the JSON converter (schemas off,
// REPLICA IDENTITY FULL, no transaction metadata): an orders row of eight
// columns of the usual kinds; of every twenty messages 15 inserts, 4
// updates with their before image and one delete (no tombstone:
// tombstones.on.delete off). Every message is one record.
func KafkaMessage(i int) (key, value []byte) {
	key = fmt.Appendf(nil, `{"id":%d}`, i)
	row := func(status string, cents int) string {
		return fmt.Sprintf(`{"id":%d,"customer_id":%d,"email":"customer%d@example.com","status":%q,"amount":"%d.%02d","currency":"EUR","note":"order %d, delivery to the usual address","created_at":%d}`,
			i, 1000+i%977, i%977, status, cents/100, cents%100, i, 1767323045123456+int64(i)*1000)
	}
	before, after, op := "null", row("new", 1999+i%5000), "c"
	switch {
	case i%20 == 19:
		before, after, op = row("shipped", 1999+i%5000), "null", "d"
	case i%4 == 3:
		before, after, op = row("new", 1999+i%5000), row("paid", 1999+i%5000), "u"
	}
	lsn := 0x1000000 + int64(i)*96
	ts := 1767323045123 + int64(i)
	value = fmt.Appendf(nil, `{"before":%s,"after":%s,"source":{"version":"2.7.3.Final","connector":"postgresql","name":"bench","ts_ms":%d,"snapshot":"false",`+
		`"db":"shop","sequence":"[\"%d\",\"%d\"]","ts_us":%d,"ts_ns":%d,"schema":"public","table":"orders","txId":%d,"lsn":%d,"xmin":null},`+
		`"transaction":null,"op":%q,"ts_ms":%d,"ts_us":%d,"ts_ns":%d}`,
		before, after, ts, lsn-96, lsn, ts*1000, ts*1000000, 5000+i, lsn, op, ts+300, (ts+300)*1000, (ts+300)*1000000)
	return key, value
}

// fillTopic produces n messages, keyed so that each row stays on its
// partition.
func fillTopic(ctx context.Context, addr string, n int, progress func(string, int, int)) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	batch := make([]*kgo.Record, 0, 10_000)
	for i := range n {
		k, v := KafkaMessage(i)
		batch = append(batch, &kgo.Record{Topic: kafkaTopic, Key: k, Value: v})
		if len(batch) == cap(batch) || i == n-1 {
			progress("kafka fill", i, n)
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				return fmt.Errorf("fill the topic: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// measured runs f and returns how long it took and the CPU time the
// process spent meanwhile.
func measured(f func() error) (secs, cpu float64, err error) {
	c0, t0 := cpuSeconds(), time.Now()
	err = f()
	return time.Since(t0).Seconds(), cpuSeconds() - c0, err
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// rawKafka reads the topic from the start with a new group until n
// records were seen, to nothing, and commits at the end as the source
// does: what the broker and the client deliver.
func rawKafka(ctx context.Context, addr, group string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollRecords(ctx, 1000)
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("raw consumer: %w", err)
		}
		got += fs.NumRecords()
	}
	return cl.CommitUncommittedOffsets(ctx)
}

// captureKafka runs a fresh source (a new group) into a fresh log with
// its index until n records are durable, and returns how long that took
// and the CPU time spent.
func captureKafka(ctx context.Context, dir, addr, group string, n int) (secs, cpu float64, _ error) {
	st, err := openStack(ctx, dir)
	if err != nil {
		return 0, 0, err
	}
	defer st.close()
	src, err := kafka.New(kafka.Config{Name: "bench", Brokers: []string{addr}, Topics: []string{kafkaTopic}, Group: group})
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	secs, cpu, err = measured(func() error {
		go func() { done <- src.Run(ctx, st.store) }()
		wait, stop := context.WithTimeout(ctx, 10*time.Minute)
		defer stop()
		waited := make(chan error, 1)
		go func() { waited <- st.store.WaitSize(wait, uint64(n-1)) }() // more than n-1
		select {
		case err := <-waited:
			if err != nil {
				return fmt.Errorf("the log holds %d of %d records: %w", st.store.Size(), n, err)
			}
			return nil
		case err := <-done:
			done <- err
			return fmt.Errorf("the kafka source stopped with %d of %d records in the log", st.store.Size(), n)
		}
	})
	cancel()
	if rerr := <-done; rerr != nil || err != nil {
		return 0, 0, errors.Join(err, rerr)
	}
	return secs, cpu, nil
}

// logAlone appends the topic's records, decoded beforehand 1,000 at a
// time outside the clock, to a fresh log with its index in appends of
// 1,000: the log's own speed on exactly what the source appends.
func logAlone(ctx context.Context, dir string, n int) (secs, cpu float64, _ error) {
	st, err := openStack(ctx, dir)
	if err != nil {
		return 0, 0, err
	}
	defer st.close()
	dec := debezium.Decoder{SourceName: "bench"}
	batch := make([]*record.Record, 0, 1000)
	for lo := 0; lo < n; lo += cap(batch) {
		batch = batch[:0]
		for i := lo; i < min(lo+cap(batch), n); i++ {
			ev, err := dec.Decode(KafkaMessage(i))
			if err != nil {
				return 0, 0, fmt.Errorf("message %d: %w", i, err)
			}
			batch = append(batch, ev.Record)
		}
		s, c, err := measured(func() error {
			_, err := st.store.Append(ctx, batch)
			return err
		})
		if err != nil {
			return 0, 0, err
		}
		secs, cpu = secs+s, cpu+c
		// The store may keep the slice: the next batch gets its own.
		batch = make([]*record.Record, 0, 1000)
	}
	return secs, cpu, nil
}
