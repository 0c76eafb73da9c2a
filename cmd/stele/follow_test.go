package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeReportsEveryFollower: the server's readers of the log (the
// index, the lineage publisher, a live stream) report their lag in one
// shape on /metrics, so an operator sees which one falls behind.
func TestServeReportsEveryFollower(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = t.TempDir(), "127.0.0.1:0"
	cfg.Stream.Listen = "none"
	base := serveInProcess(ctx, t, cfg)
	// A live stream from the start of the log, held open while scraping.
	sreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?from=0", nil)
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()

	var body strings.Builder
	for i := range 30 {
		fmt.Fprintf(&body, `{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":%d},"after":{"id":%d}}`+"\n", i, i)
	}
	resp, err := http.Post(base+"/v1/records", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %s", resp.Status)
	}

	want := []string{"index", "publish", "sse"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := followerMetrics(t, base)
		missing := ""
		for _, name := range want {
			if seen[name+" running"] != "1" || seen[name+" behind"] != "0" || seen[name+" processed"] == "" || seen[name+" processed"] == "0" {
				missing = name
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower %s not reported as running and caught up on /metrics; saw %v", missing, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// followerMetrics reads stele_follow_* lines as "name kind" → value.
func followerMetrics(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	kinds := map[string]string{"stele_follow_running": "running", "stele_follow_behind_records": "behind", "stele_follow_processed_records_total": "processed"}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		metric, rest, ok := strings.Cut(sc.Text(), `{follower="`)
		if !ok || kinds[metric] == "" {
			continue
		}
		name, value, ok := strings.Cut(rest, `"} `)
		if ok {
			out[name+" "+kinds[metric]] = value
		}
	}
	return out
}
