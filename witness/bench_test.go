package witness_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/witness"
)

// BenchmarkAppendWithBadWitnesses measures durable appends (batches of
// 1,000 records of ~512 bytes) with no witnesses, and with a submitter
// running against a witness that is down, one that answers garbage and
// one that takes 5 s to answer: the two rates should be the same.
func BenchmarkAppendWithBadWitnesses(b *testing.B) {
	for _, withWitnesses := range []bool{false, true} {
		name := "none"
		if withWitnesses {
			name = "down+garbage+slow5s"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := logstore.Open(ctx, b.TempDir(), logstore.Options{Origin: origin, CheckpointInterval: 50 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if withWitnesses {
				down := httptest.NewServer(http.NotFoundHandler())
				downURL := down.URL
				down.Close()
				garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("garbage\n")) }))
				defer garbage.Close()
				slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(5 * time.Second):
					case <-r.Context().Done():
					}
					http.Error(w, "slow", http.StatusServiceUnavailable)
				}))
				defer slow.Close()
				var pol strings.Builder
				for i, u := range []string{downURL, garbage.URL, slow.URL} {
					_, vkey, _ := witness.GenerateKey(nil, fmt.Sprintf("w%d.test", i))
					fmt.Fprintf(&pol, "witness w%d %s %s\n", i, vkey, u)
				}
				pol.WriteString("group q any w0 w1 w2\nquorum q\n")
				p, err := witness.ParsePolicy([]byte(pol.String()))
				if err != nil {
					b.Fatal(err)
				}
				sub, err := witness.NewSubmitter(witness.SubmitterConfig{Policy: p, Log: s, Timeout: 10 * time.Second, Interval: 10 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				go func() { sub.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
			}
			after := []byte(`{"v":"` + strings.Repeat("x", 440) + `"}`)
			b.ResetTimer()
			for i := range b.N {
				recs := make([]*record.Record, 1000)
				for j := range recs {
					recs[j] = &record.Record{ID: fmt.Sprintf("%d-%d", i, j), Source: record.Source{Name: "b", Kind: "http", Table: "t"}, Op: record.OpInsert, Key: []byte(fmt.Sprintf(`{"id":%d}`, i*1000+j)), After: after}
				}
				if _, err := s.Append(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			// Stop before the deferred shutdown (a round waiting on the slow
			// witness) so only the appends are timed.
			b.StopTimer()
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
