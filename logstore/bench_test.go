package logstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// benchRecord builds a record whose stored encoding is about 512 bytes.
func benchRecord(i int) *record.Record {
	pad := strings.Repeat("x", 230)
	return &record.Record{
		ID:         fmt.Sprintf("bench-%d", i),
		Source:     record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
		Op:         record.OpUpdate,
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, i%100000)),
		Before:     json.RawMessage(`{"email":"old@example.com","id":1,"name":"Ada"}`),
		After:      json.RawMessage(fmt.Sprintf(`{"email":"new@example.com","id":1,"name":"Ada","note":"%s"}`, pad)),
		Changed:    []string{"email", "note"},
		Actor:      json.RawMessage(`{"app":"billing","id":"alice"}`),
		OccurredAt: time.Unix(1700000000, 0).UTC(),
	}
}

func openBenchStore(b *testing.B, withIndex bool) *logstore.Store {
	dir := b.TempDir()
	opts := logstore.Options{}
	if withIndex {
		ix, err := index.Open(filepath.Join(dir, "index"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ix.Close() })
		opts.Hook = ix
	}
	s, err := logstore.Open(context.Background(), dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchBatches(b *testing.B, withIndex bool, batch int) {
	s := openBenchStore(b, withIndex)
	b.SetBytes(int64(len(record.Encode(benchRecord(0)))) * int64(batch))
	templates := make([]record.Record, batch)
	for i := range templates {
		templates[i] = *benchRecord(i)
	}
	n := 0
	for b.Loop() {
		recs := make([]*record.Record, batch)
		for i := range recs {
			c := templates[i]
			c.ID = fmt.Sprint("bench-", n)
			recs[i] = &c
			n++
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendBatch1000(b *testing.B)        { benchBatches(b, false, 1000) }
func BenchmarkAppendBatch1000Indexed(b *testing.B) { benchBatches(b, true, 1000) }

func BenchmarkAppendConcurrent256Indexed(b *testing.B) {
	s := openBenchStore(b, true)
	var mu sync.Mutex
	n := 0
	b.SetParallelism(128) // 2 cores x 128 = 256 concurrent single-record writers
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			i := n
			n++
			mu.Unlock()
			if _, err := s.Append(context.Background(), []*record.Record{benchRecord(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
