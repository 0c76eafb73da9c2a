package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeClock steps by step at each reading.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(step); return t }
}

// On a terminal: a bar with share, counts, rate and time left, redrawn in
// place, and cleared at the end.
func TestProgressBarOnATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, true, "verifying", "records", 1)
	p.now = fakeClock(time.Second)
	p.start, p.last = p.now(), p.now()
	p.update(2500, 10000)
	got := out.String()
	want := regexp.MustCompile(`^\r\x1b\[Kverifying \[={6} {18}\]  25%  2500/10.0k records  [\d.]+k? records/s  ETA \d+s$`)
	if !want.MatchString(got) {
		t.Errorf("bar %q does not match %s", got, want)
	}
	out.Reset()
	p.update(10000, 10000)
	if !strings.Contains(out.String(), "[========================] 100%") || !strings.Contains(out.String(), "ETA 0s") {
		t.Errorf("final bar %q", out.String())
	}
	out.Reset()
	p.finish()
	if out.String() != "\r\x1b[K" {
		t.Errorf("finish wrote %q, want the line cleared", out.String())
	}
}

// Elsewhere: a plain line every interval, and one at the end once a line
// was printed; nothing for work shorter than the interval.
func TestProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false, "reindexing", "records", 1)
	p.every = 5 * time.Second
	p.now = fakeClock(time.Second)
	p.start, p.last = p.now(), p.now()
	for i := int64(1); i <= 12; i++ {
		p.update(i*100, 1200)
	}
	p.finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "reindexing: 42% (500/1200 records, ") ||
		!strings.HasPrefix(lines[2], "reindexing: 100% (1200/1200 records") || strings.Contains(out.String(), "\r") {
		t.Errorf("plain lines:\n%s", out.String())
	}
	out.Reset()
	q := newProgress(&out, false, "short", "records", 1)
	q.every = time.Hour
	q.update(10, 10)
	q.finish()
	if out.Len() != 0 {
		t.Errorf("a short run printed %q", out.String())
	}
	// Unknown total: a count and a rate.
	u := newProgress(&out, false, "snapshot", "units", 1)
	u.every = time.Nanosecond
	u.update(7, 0)
	if !strings.HasPrefix(out.String(), "snapshot: 7 units, ") || !strings.Contains(out.String(), "units/s") {
		t.Errorf("unknown total: %q", out.String())
	}
}

// Every long command reports progress on stderr (here as plain lines,
// STELE_PROGRESS_INTERVAL making them come at once).
func TestLongCommandsReportProgress(t *testing.T) {
	data := t.TempDir()
	fillDir(t, data, 3000)
	conf := filepath.Join(t.TempDir(), "stele.yaml")
	if err := os.WriteFile(conf, []byte(projectionsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "all.jsonl")
	env := []string{"STELE_PROGRESS_INTERVAL=1ns"}
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"verify", "--data", data}, `verifying .*: \d+% \([\d.]+k?/[\d.]+k? MB, [\d.]+k? MB/s, ETA \w+\)`},
		{[]string{"reindex", "--data", data}, `reindexing: \d+% \(\d+/\d+ records, [\d.]+k? records/s, ETA \w+\)`},
		{[]string{"export", "--data", data, "--out", out}, `exporting: \d+% \(\d+/3000 records, [\d.]+k? records/s, ETA \w+\)`},
		{[]string{"verify", "--export", out}, `verifying .*all.jsonl: \d+% \(\d+/3000 records, [\d.]+k? records/s, ETA \w+\)`},
		{[]string{"projections", "rebuild", "orders", "--config", conf, "--data", data}, `rebuilding orders: \d+% \(\d+/3000 records, [\d.]+k? records/s, ETA \w+\)`},
		{[]string{"snapshot", "--data", data, "--source", "crm", "--table", "customers", "--out", filepath.Join(t.TempDir(), "s.jsonl")}, `snapshot of crm/customers: \d+ units, [\d.]+k? units/s`},
		{[]string{"bench", "--records", "2000", "--throughput", "2000", "--clients", "2", "--queries", "10", "--erase-records", "100", "--capture=false", "--dir", t.TempDir()}, `\w.*: \d+% \(\d+/\d+ steps, [\d.]+k? steps/s, ETA \w+\)`},
	} {
		r := cli(t, 0, env, c.args...)
		if !regexp.MustCompile(`(?m)^` + c.line + `$`).MatchString(r.stderr) {
			t.Errorf("stele %s: no progress line like %s on stderr:\n%s", strings.Join(c.args, " "), c.line, r.stderr)
		}
	}
}
