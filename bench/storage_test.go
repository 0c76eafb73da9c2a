package bench

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// The candidates for the store of record, measured side by side on the same
// 512-byte records in batches of 1,000, each batch durable before the next
// (docs/storage.md records the figures and the choice).

const storageBatch = 1000

func BenchmarkStoragePlainFile(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, storageBatch*len(record.Encode(Record(0, 1))))
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*storageBatch)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkStoragePebbleSync(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	payloads := make([][]byte, storageBatch)
	for i := range payloads {
		payloads[i] = record.Encode(Record(i, 100000))
	}
	b.SetBytes(int64(storageBatch * len(payloads[0])))
	seq := uint64(0)
	for b.Loop() {
		batch := db.NewBatch()
		for _, p := range payloads {
			batch.Set(binary.BigEndian.AppendUint64(nil, seq), p, nil)
			seq++
		}
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	b.ReportMetric(float64(b.N*storageBatch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkStorageSteleLog is the chosen design: frames + Merkle tree files,
// without the index, so it compares storage with storage.
func BenchmarkStorageSteleLog(b *testing.B) {
	s, err := logstore.Open(context.Background(), b.TempDir(), logstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(int64(storageBatch * len(record.Encode(Record(0, 1)))))
	// Built beforehand, as the Pebble case encodes beforehand: this compares
	// storage, not the benchmark's record generator. Each append gets fresh
	// copies because the log takes ownership of what it is given.
	templates := make([]record.Record, storageBatch)
	for i := range templates {
		templates[i] = *Record(i, 100000)
	}
	n := 0
	for b.Loop() {
		recs := make([]*record.Record, storageBatch)
		for i := range recs {
			c := templates[i]
			recs[i] = &c
			n++
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
