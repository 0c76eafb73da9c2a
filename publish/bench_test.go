package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

// benchRecord is a record of about 512 stored bytes, the headline size.
func benchRecord(i int) *record.Record {
	r := testRecord(i)
	r.ID = fmt.Sprintf("bench-%d", i)
	r.After = json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"n%d","note":%q}`, i%10, i, strings.Repeat("x", 330)))
	return r
}

// BenchmarkPublishVsAppend measures, in one run on one machine, the durable
// append rate (batches of 1,000, one producer) and the rate at which the
// publisher moves those records to embedded JetStream with acks:
//   - catchup: the whole log is appended first, then published from seq 0
//     (a backlog after NATS was down);
//   - live: the publisher follows while the records are appended; the
//     rate is records over the time until the last one is acknowledged.
//
// publish/append is the ratio of the two rates; 1 or more means the
// stream keeps up with the log. cpu_ns/rec is the process's CPU time per
// record over the same span. With STELE_PUBLISH_CPUPROFILE=file, catchup
// writes a CPU profile of its publishing phase alone to file.
// processCPU is the CPU time the process has used so far.
func processCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phaseProfile starts a CPU profile written to path when stop is called.
func phaseProfile(t testing.TB, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkPublishVsAppend(b *testing.B) {
	for _, mode := range []string{"catchup", "live"} {
		b.Run(mode, func(b *testing.B) {
			n := max(b.N, 1000)
			dir := b.TempDir()
			store := openLog(b, filepath.Join(dir, "log"))
			defer store.Close()
			emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
			if err != nil {
				b.Fatal(err)
			}
			defer emb.Shutdown()
			nc, err := emb.Connect()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			batches := make([][]*record.Record, 0, n/1000+1)
			for i := 0; i < n; i += 1000 {
				batch := make([]*record.Record, 0, 1000)
				for j := i; j < min(i+1000, n); j++ {
					batch = append(batch, benchRecord(j))
				}
				batches = append(batches, batch)
			}
			var pub *running
			if mode == "live" {
				pub = startPublisher(b, publish.Config{Log: store, Conn: nc})
				defer pub.stop(b)
			}
			b.ResetTimer()
			start := time.Now()
			for _, batch := range batches {
				if _, err := store.Append(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			appendDur := time.Since(start)
			pubStart := start
			cpuStart := processCPU(b)
			if mode == "catchup" {
				pubStart = time.Now()
				cpuStart = processCPU(b)
				if f := os.Getenv("STELE_PUBLISH_CPUPROFILE"); f != "" {
					stop := phaseProfile(b, f)
					defer stop()
				}
				pub = startPublisher(b, publish.Config{Log: store, Conn: nc})
				defer pub.stop(b)
			}
			waitPublished(b, pub.p, uint64(n), 10*time.Minute)
			pubDur := time.Since(pubStart)
			cpu := processCPU(b) - cpuStart
			b.StopTimer()
			appendRate := float64(n) / appendDur.Seconds()
			pubRate := float64(n) / pubDur.Seconds()
			b.ReportMetric(appendRate, "append_rec/s")
			b.ReportMetric(pubRate, "publish_rec/s")
			b.ReportMetric(pubRate/appendRate, "publish/append")
			// CPU time (user and system, all threads) per record: what
			// the stream costs the machine, which a loaded machine's
			// wall-clock rates hide. In catchup mode it is the
			// publisher's and JetStream's alone.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu_ns/rec")
		})
	}
}
