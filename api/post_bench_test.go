package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
)

// BenchmarkPostBatch posts batches of 1,000 records of about 512 bytes
// over loopback TCP to a server on a log with its index, as stele bench's
// HTTP ingest figure does, each batch answered once durable: per batch,
// everything the server does, the fsync included, and the client's side
// of the wire.
func BenchmarkPostBatch(b *testing.B) {
	dir := b.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		b.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "bench.example/log", Hook: ix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close(); ix.Close() })
	srv := httptest.NewServer(New(Config{Log: store, MaxBatch: 1000}))
	b.Cleanup(srv.Close)
	body := benchBody(1000)
	client := &http.Client{Transport: &http.Transport{WriteBufferSize: len(body) + 4<<10}}
	var answer bytes.Buffer
	n := 0
	b.SetBytes(int64(len(body)))
	cpu0 := processCPU(b)
	for b.Loop() {
		// Fresh ids for each batch, or the log would store only the first.
		n++
		batch := bytes.ReplaceAll(body, []byte(`"http-`), []byte(`"h`+strconv.Itoa(n)+`-`))
		resp, err := client.Post(srv.URL+"/v1/records", "application/json", bytes.NewReader(batch))
		if err != nil {
			b.Fatal(err)
		}
		answer.Reset()
		_, err = answer.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("%v: %d %.200s", err, resp.StatusCode, answer.Bytes())
		}
	}
	// CPU, unlike the time per batch, hardly depends on what else the
	// machine runs: on two cores it is what bounds the rate.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
