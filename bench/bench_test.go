package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/record"
)

// TestRunSmall runs every phase at a tiny size, capture included when
// PostgreSQL 15 is installed: the figures are not checked (timing
// thresholds do not belong in tests), but every phase must work, produce
// positive numbers and print its line.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Dir: t.TempDir(), Records: 20_000, Throughput: 6_000, Clients: 16, Queries: 200, StreamRounds: 1,
		EraseRecords: 3_000, Out: &out, Capture: CaptureOptions{Changes: 2_000, LatencyRate: 100, LatencyFor: time.Second, TxInserts: 4_000, TxRows: 1_000},
		DynamoDB: DynamoDBOptions{Items: 1_000, Rounds: 2},
		MySQL:    MySQLOptions{Changes: 1_000, Rounds: 2, LatencyFor: time.Second, BigMB: 1}, Kafka: KafkaOptions{Events: 2_000, Rounds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for name, v := range map[string]float64{"baseline": res.BaselineRecordsSec, "batched": res.BatchedRecordsSec, "indexed": res.BatchedIndexedSec,
		"concurrent": res.ConcurrentSec, "sha": res.SHA256MBs, "verify": res.VerifyMBs, "pii plain": res.PIIPlainSec, "pii validated": res.PIIValidatedSec, "pii sealed": res.PIISealedSec,
		"pii pipelined plain": res.PIIPipelinedPlainSec, "pii pipelined sealed": res.PIIPipelinedSealedSec, "pii pipelined ratio": res.PIIPipelinedRatio} {
		if v <= 0 {
			t.Errorf("%s figure is %v", name, v)
		}
	}
	if s := res.Stream; s == nil || s.OnSec <= 0 || s.OffSec <= 0 || s.PublishedSec <= 0 || s.OnPeakRSS <= 0 || s.OffPeakRSS <= 0 {
		t.Errorf("stream figures %+v", res.Stream)
	}
	if res.HistoryP50 <= 0 || res.HistoryP99 < res.HistoryP50 {
		t.Errorf("history percentiles %v/%v", res.HistoryP50, res.HistoryP99)
	}
	if res.Erase <= 0 || res.EraseRecords != 3_000 {
		t.Errorf("erasure of %d records took %v", res.EraseRecords, res.Erase)
	}
	if h := res.HTTP; h == nil || h.HTTP1Sec <= 0 || h.HTTP4Sec <= 0 || h.InProcess1Sec <= 0 || h.InProcess4Sec <= 0 ||
		h.InProcess1CPU <= 0 || h.InProcess4CPU <= 0 || h.Server1CPU <= 0 || h.Server4CPU <= 0 {
		t.Errorf("HTTP ingest results %+v", res.HTTP)
	}
	want := []string{"HTTP ingest, 1 producer", "HTTP ingest, 4 producers", "HTTP ingest CPU per batch", "3 PII fields sealed", "the same records unsealed", "sealed record size", "schema validated only", "erase one subject", "named by 3000 sealed records", "capture PostgreSQL → log", "peak RSS"}
	if res.Capture == nil {
		t.Logf("capture skipped: %s", res.CaptureSkipped)
		want = append(want, "skipped: ")
	} else {
		c := res.Capture
		if c.Changes != 2_000 || len(c.Rounds) != 3 || c.SteleRate() <= 0 || c.RecvRate() <= 0 || c.Ratio() <= 0 || c.LatencySamples == 0 || c.LatencyP99 < c.LatencyP50 || c.LatencyP50 <= 0 {
			t.Errorf("capture results %+v", c)
		}
		if c.TxChanges != 5_000 || len(c.Tx) != 3 || c.TxRate() <= 0 || c.TxRecvRate() <= 0 || c.TxRSSPeak <= 0 {
			t.Errorf("transaction-heavy capture results %+v", c)
		}
		want = append(want, "pg_recvlogical to /dev/null", "commit to queryable", "capture PostgreSQL, tx-heavy", "4000 inserts then 1000 updates, 1000 rows per transaction", "capture "+mib(res.PeakRSSBytes["capture"]))
	}
	want = append(want, "capture DynamoDB → log")
	if res.DynamoDB == nil {
		t.Logf("dynamodb capture skipped: %s", res.DynamoDBSkipped)
		want = append(want, "capture DynamoDB → log     skipped: ")
	} else {
		d := res.DynamoDB
		if d.Items != 1_000 || len(d.Rounds) != 2 || d.SteleRate() <= 0 || d.RawRate() <= 0 || d.Ratio() <= 0 || d.CallsPerRecord() <= 0 {
			t.Errorf("dynamodb results %+v", d)
		}
		want = append(want, "raw GetRecords loop", "API calls", "dynamodb "+mib(res.PeakRSSBytes["dynamodb"]))
	}
	want = append(want, "capture MariaDB → log")
	if res.MySQL == nil {
		t.Logf("mysql capture skipped: %s", res.MySQLSkipped)
	} else {
		want = append(want, "BinlogSyncer decoding the same events", "capture MariaDB commit → queryable", "mysql "+mib(res.PeakRSSBytes["mysql"]))
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, p := range []string{"baseline", "append", "http", "concurrent", "pii", "erase", "capture", "dynamodb", "build", "verify", "query"} {
		if res.PeakRSSBytes[p] <= 0 {
			t.Errorf("peak RSS of phase %s is %d", p, res.PeakRSSBytes[p])
		}
	}
}

// TestMySQL measures the MariaDB figures at a small size: every figure is
// there and sane.
// TestKafka: the Kafka figure reads a kfake topic of Debezium messages
// with each reader, every round, and reports rates, ratios and CPU; a
// cancelled run fails instead of reporting.
func TestKafka(t *testing.T) {
	res, err := Kafka(context.Background(), KafkaOptions{Dir: t.TempDir(), Events: 3_000, Partitions: 3, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.Join(res.Lines(), "\n"))
	if res.Events != 3_000 || len(res.Rounds) != 2 || res.SteleRate() <= 0 || res.RawRate() <= 0 || res.LogRate() <= 0 || res.Ratio() <= 0 || res.LogRatio() <= 0 {
		t.Errorf("results %+v", res)
	}
	for _, r := range res.Rounds {
		if r.SteleCPU <= 0 || r.RawCPU <= 0 || r.LogCPU <= 0 {
			t.Errorf("round without CPU figures: %+v", r)
		}
	}
	lines := strings.Join(res.Lines(), "\n")
	for _, w := range []string{"events/s durable + indexed", "a bare franz-go consumer", "the log alone", "CPU per event"} {
		if !strings.Contains(lines, w) {
			t.Errorf("report lacks %q:\n%s", w, lines)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Kafka(ctx, KafkaOptions{Dir: t.TempDir(), Events: 100, Rounds: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled run: %v, want context.Canceled", err)
	}
}

// TestKafkaMessages: the topic holds PostgreSQL connector messages that
// decode to one record each, in the mix of operations documented.
func TestKafkaMessages(t *testing.T) {
	dec := debezium.Decoder{SourceName: "bench"}
	ops := map[record.Op]int{}
	ids := map[string]bool{}
	for i := range 1000 {
		ev, err := dec.Decode(KafkaMessage(i))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		r := ev.Record
		if ev.Kind != debezium.Change || r.Source.Kind != "postgres" || r.Source.Table != "orders" || ids[r.ID] {
			t.Fatalf("message %d: %+v", i, r)
		}
		ids[r.ID] = true
		ops[r.Op]++
		if r.Op == record.OpUpdate && !slices.Equal(r.Changed, []string{"status"}) {
			t.Errorf("update %d changed %v, want [status]", i, r.Changed)
		}
	}
	if ops[record.OpInsert] != 750 || ops[record.OpUpdate] != 200 || ops[record.OpDelete] != 50 {
		t.Errorf("operations %v, want 750 inserts, 200 updates, 50 deletes", ops)
	}
}

func TestMySQL(t *testing.T) {
	res, err := MySQL(context.Background(), MySQLOptions{Dir: t.TempDir(), Changes: 1_000, Rounds: 2, LatencyFor: time.Second, LatencyRate: 50, BigMB: 1})
	if errors.Is(err, ErrNoMariaDB) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.Join(res.Lines(), "\n"))
	if res.Changes != 1_000 || len(res.Rounds) != 2 || res.SteleRate() <= 0 || res.RawRate() <= 0 || res.Ratio() <= 0 {
		t.Errorf("throughput results %+v", res)
	}
	if res.Samples == 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("latency p50 %v p99 %v over %d samples", res.P50, res.P99, res.Samples)
	}
	if res.BigMB != 1 || res.BigRSSAt <= 0 || res.BigElapsed <= 0 || res.SplitRSSAt <= 0 || res.SplitElapsed <= 0 {
		t.Errorf("large transaction: %d MiB, peak RSS %d, %v; split: %d, %v", res.BigMB, res.BigRSSAt, res.BigElapsed, res.SplitRSSAt, res.SplitElapsed)
	}
	for _, r := range res.Rounds {
		if r.SteleCPU <= 0 || r.RawCPU <= 0 {
			t.Errorf("round without CPU figures: %+v", r)
		}
	}
	lines := strings.Join(res.Lines(), "\n")
	for _, w := range []string{"changes/s durable + indexed", "BinlogSyncer decoding the same events", "CPU per change", "commit → queryable", "1 MiB transaction", "1,000-row transactions"} {
		if !strings.Contains(lines, w) {
			t.Errorf("report lacks %q:\n%s", w, lines)
		}
	}
}

// TestMySQLSkipped: turned off, the MariaDB figures are skipped with the
// reason printed.
func TestMySQLSkipped(t *testing.T) {
	var out bytes.Buffer
	opts := Options{Out: &out, Dir: t.TempDir(), SkipMySQL: true}
	opts.fill()
	res := &Results{}
	if err := runMySQL(context.Background(), opts, res); err != nil {
		t.Fatal(err)
	}
	if res.MySQL != nil || !strings.Contains(out.String(), "capture MariaDB → log     skipped: turned off (--mysql=false)") {
		t.Errorf("mysql %+v, output %q", res.MySQL, out.String())
	}
}

// TestDynamoDBSkipped: turned off, the DynamoDB figure is skipped with
// the reason printed.
func TestDynamoDBSkipped(t *testing.T) {
	var out bytes.Buffer
	opts := Options{Out: &out, Dir: t.TempDir(), SkipDynamoDB: true}
	opts.fill()
	res := &Results{}
	if err := runDynamoDB(context.Background(), opts, res); err != nil {
		t.Fatal(err)
	}
	if res.DynamoDB != nil || !strings.Contains(out.String(), "skipped: turned off (--dynamodb=false)") {
		t.Errorf("dynamodb %+v, output %q", res.DynamoDB, out.String())
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

// TestPIIModes: the three set-ups of the PII figures store what their
// names claim — the same record unchanged and without a schema, unchanged
// but validated (schema set), and with its three personal fields sealed —
// and the validating one refuses a record its schema does not allow.
func TestPIIModes(t *testing.T) {
	ctx := context.Background()
	for _, mode := range piiModes {
		t.Run(mode.name, func(t *testing.T) {
			store, closeAll, err := piiLog(ctx, t.TempDir(), mode.schema)
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll()
			r := PIIRecord(1, 1)
			after := string(r.After)
			if _, err := store.Append(ctx, []*record.Record{r}); err != nil {
				t.Fatal(err)
			}
			stored, err := store.Read(0)
			if err != nil {
				t.Fatal(err)
			}
			sealed := 0
			if strings.Contains(string(stored.After), `"$pii":{"email,name,phone":"`) {
				sealed = 3
			}
			switch mode.name {
			case "plain", "validated":
				if string(stored.After) != after || sealed != 0 {
					t.Errorf("stored after %s, want %s", stored.After, after)
				}
			case "sealed":
				if sealed != 3 {
					t.Errorf("stored after %s has %d sealed fields, want 3", stored.After, sealed)
				}
			}
			if validated := stored.Schema != nil; validated != (mode.schema != "") {
				t.Errorf("stored schema %+v", stored.Schema)
			}
			bad := PIIRecord(2, 2)
			bad.After = json.RawMessage(`{"email":"x@example.com","id":"two"}`)
			_, err = store.Append(ctx, []*record.Record{bad})
			if refused := err != nil; refused != (mode.schema != "") {
				t.Errorf("append of a record with a string id: %v", err)
			}
		})
	}
}

// TestPipelinedAppends: the pipelined producer stores every record once,
// in the order it made them, sealed when the log seals.
func TestPipelinedAppends(t *testing.T) {
	ctx := context.Background()
	store, closeAll, err := piiLog(ctx, t.TempDir(), piiSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	templates := make([]record.Record, 1000)
	for i := range templates {
		templates[i] = *PIIRecord(i, i)
	}
	if _, err := pipelinedAppends(ctx, Options{Throughput: 5_000, Progress: func(string, int, int) {}}, store, templates, "test"); err != nil {
		t.Fatal(err)
	}
	if got := store.Size(); got != 5_000 {
		t.Fatalf("log holds %d records, want 5000", got)
	}
	for _, seq := range []uint64{0, 999, 1000, 2500, 4999} {
		r, err := store.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		sealed := strings.Contains(string(r.After), `"$pii":{"email,name,phone":"`)
		if want := fmt.Sprintf("bench-%d", seq); r.ID != want || !sealed {
			t.Errorf("record %d is %s (sealed %v), want %s sealed", seq, r.ID, sealed, want)
		}
	}
}

// TestCaptureBig: with BigMB set, each large transaction's figure comes
// with the same rows captured in 1,000-row transactions, each by a source
// and log of its own, and the report shows both.
func TestCaptureBig(t *testing.T) {
	res, err := Capture(context.Background(), CaptureOptions{Dir: t.TempDir(), Changes: 500, Rounds: 1, LatencyRate: 50, LatencyFor: time.Second, BigMB: 4, TxInserts: -1})
	if errors.Is(err, ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Big) != 2 {
		t.Fatalf("%d large transaction figures, want 2", len(res.Big))
	}
	for i, b := range res.Big {
		if b.MB != []int{1, 4}[i] || b.Rows != b.MB*1024 || b.RSSPeak <= 0 || b.GoPeak <= 0 || b.Elapsed <= 0 || b.SplitPeak <= 0 || b.SplitGoPeak <= 0 || b.SplitElapsed <= 0 {
			t.Errorf("large transaction figure %d: %+v", i, b)
		}
	}
	out := strings.Join(res.Lines(), "\n")
	for _, w := range []string{"capture one 4 MiB transaction (4096 rows", "capture the same 4096 rows in 1,000-row transactions"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestParseLoadOutput: the parent reads the load process's elapsed time
// and, when it prints one, its CPU time; anything else is an error.
func TestParseLoadOutput(t *testing.T) {
	for _, tc := range []struct {
		out          string
		elapsed, cpu time.Duration
		ok           bool
	}{
		{"elapsed 5000\ncpu 700\n", 5000, 700, true},
		{"elapsed 5000\n", 5000, 0, true},
		{"noise\nelapsed 12\n", 12, 0, true},
		{"cpu 700\n", 0, 0, false},
		{"elapsed x\n", 0, 0, false},
		{"elapsed 1\ncpu y\n", 0, 0, false},
	} {
		elapsed, cpu, err := parseLoadOutput([]byte(tc.out))
		if (err == nil) != tc.ok || elapsed != tc.elapsed || cpu != tc.cpu {
			t.Errorf("%q: %v, %v, %v", tc.out, elapsed, cpu, err)
		}
	}
}

// TestRunDirTwice: two runs given the same --dir each store into a new
// folder of it and leave it there, so the second does not reopen the
// first's stores (its appends would all be duplicates).
func TestRunDirTwice(t *testing.T) {
	dir := t.TempDir()
	var kept []string
	for range 2 {
		var out bytes.Buffer
		if _, err := Run(context.Background(), Options{Dir: dir, Throughput: 3_000, Only: []string{"pii"}, Out: &out}); err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(out.String(), "\n")
		run, ok := strings.CutPrefix(first, "stores kept in ")
		if !ok || filepath.Dir(run) != dir {
			t.Fatalf("report opens with %q, want the run's folder in %s", first, dir)
		}
		kept = append(kept, run)
	}
	if kept[0] == kept[1] {
		t.Fatalf("both runs stored into %s", kept[0])
	}
	for _, run := range kept {
		store, closeAll, err := piiLog(context.Background(), filepath.Join(run, "pii-plain-0"), "")
		if err != nil {
			t.Fatal(err)
		}
		size := store.Size()
		closeAll()
		if size != 1_000 {
			t.Errorf("%s's first plain pii store holds %d records, want 1000", run, size)
		}
	}
}
