package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// TestRunSmall runs every phase at a tiny size, capture included when
// PostgreSQL 15 is installed: the figures are not checked (timing
// thresholds do not belong in tests), but every phase must work, produce
// positive numbers and print its line.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Dir: t.TempDir(), Records: 20_000, Throughput: 6_000, Clients: 16, Queries: 200,
		EraseRecords: 3_000, Out: &out, Capture: CaptureOptions{Changes: 2_000, LatencyRate: 100, LatencyFor: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for name, v := range map[string]float64{"baseline": res.BaselineRecordsSec, "batched": res.BatchedRecordsSec, "indexed": res.BatchedIndexedSec,
		"concurrent": res.ConcurrentSec, "sha": res.SHA256MBs, "verify": res.VerifyMBs, "pii plain": res.PIIPlainSec, "pii sealed": res.PIISealedSec} {
		if v <= 0 {
			t.Errorf("%s figure is %v", name, v)
		}
	}
	if res.HistoryP50 <= 0 || res.HistoryP99 < res.HistoryP50 {
		t.Errorf("history percentiles %v/%v", res.HistoryP50, res.HistoryP99)
	}
	if res.Erase <= 0 || res.EraseRecords != 3_000 {
		t.Errorf("erasure of %d records took %v", res.EraseRecords, res.Erase)
	}
	want := []string{"3 PII fields sealed", "the same records unsealed", "erase one subject", "named by 3000 sealed records", "capture PostgreSQL → log", "peak RSS"}
	if res.Capture == nil {
		t.Logf("capture skipped: %s", res.CaptureSkipped)
		want = append(want, "skipped: ")
	} else {
		c := res.Capture
		if c.Changes != 2_000 || c.SteleSecs <= 0 || c.RecvSecs <= 0 || c.LatencySamples == 0 || c.LatencyP99 < c.LatencyP50 || c.LatencyP50 <= 0 {
			t.Errorf("capture results %+v", c)
		}
		want = append(want, "pg_recvlogical to /dev/null", "commit to queryable", "capture "+mib(res.PeakRSSBytes["capture"]))
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, p := range []string{"baseline", "append", "concurrent", "pii", "erase", "capture", "build", "verify", "query"} {
		if res.PeakRSSBytes[p] <= 0 {
			t.Errorf("peak RSS of phase %s is %d", p, res.PeakRSSBytes[p])
		}
	}
}

// TestCaptureSkipped: without PostgreSQL, or when turned off, the capture
// figures are skipped with the reason printed, and the run goes on.
func TestCaptureSkipped(t *testing.T) {
	for name, opts := range map[string]Options{
		"missing": {Capture: CaptureOptions{PGBinDir: t.TempDir()}},
		"off":     {SkipCapture: true},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			opts.Out, opts.Dir = &out, t.TempDir()
			opts.fill()
			res := &Results{}
			if err := runCapture(context.Background(), opts, res); err != nil {
				t.Fatal(err)
			}
			if res.Capture != nil || res.CaptureSkipped == "" {
				t.Fatalf("capture %+v, skipped %q", res.Capture, res.CaptureSkipped)
			}
			if !strings.Contains(out.String(), "skipped: "+res.CaptureSkipped) {
				t.Errorf("output %q does not say why the capture was skipped", out.String())
			}
		})
	}
	_, err := Capture(context.Background(), CaptureOptions{PGBinDir: t.TempDir()})
	if !errors.Is(err, ErrNoPostgres) {
		t.Errorf("Capture without binaries: %v, want ErrNoPostgres", err)
	}
	if _, err := Capture(context.Background(), CaptureOptions{Sink: "nowhere"}); err == nil || errors.Is(err, ErrNoPostgres) {
		t.Errorf("Capture to an unknown sink: %v", err)
	}
}

func TestRecordSize(t *testing.T) {
	for name, r := range map[string]*record.Record{"plain": Record(123456, 100000), "pii": PIIRecord(123456, 999)} {
		n := len(record.Encode(r))
		if n < 480 || n > 560 {
			t.Errorf("%s benchmark record is %d bytes, want about 512", name, n)
		}
	}
}
