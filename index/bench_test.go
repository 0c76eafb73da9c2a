package index_test

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

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

// BenchmarkApplyCaptureLoad is an insert-heavy capture as the index sees
// it: hashed record ids, one new entity each, batches of 1,000 in log
// order, 200,000 records into a new index, closed (so its flushes count)
// each round. It reports the process's CPU per record, Pebble's
// background work included, which ns/op alone would miss.
func BenchmarkApplyCaptureLoad(b *testing.B) {
	const n, batch = 200_000, 1000
	prep, err := index.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	entries := make([][]byte, n)
	var d record.IDDeriver
	for i := range entries {
		r := bench.Record(i, n)
		r.Key = json.RawMessage(fmt.Sprintf(`{"id":%d}`, i))
		r.Tx = &record.Tx{Position: fmt.Sprintf("0-1-%d", i/100)}
		r.ID = d.DeriveChange(r)
		if entries[i], err = prep.Prepare(r); err != nil {
			b.Fatal(err)
		}
	}
	prep.Close()
	var cpu time.Duration
	for b.Loop() {
		ix, err := index.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		c0 := processCPU()
		for lo := 0; lo < n; lo += batch {
			if err := ix.ApplyPrepared(uint64(lo), entries[lo:lo+batch]); err != nil {
				b.Fatal(err)
			}
		}
		if err := ix.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - c0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-µs/record")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
