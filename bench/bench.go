// Package bench measures Stele's headline figures on the machine it runs
// on, each next to a baseline measured in the same run, because shared
// machines are too noisy for absolute numbers to mean much alone.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/gctune"

	"golang.org/x/sys/unix"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// Options size the run. Zero values give the defaults.
type Options struct {
	// Dir holds the throwaway stores (default: a new temp dir, removed after).
	Dir string
	// Records is the store size for the query and verify figures (1,000,000).
	Records int
	// Throughput is how many records each append figure writes (300,000).
	Throughput int
	// Clients is the number of concurrent single-record writers (256).
	Clients int
	// Queries is how many history/search queries are timed (5,000).
	Queries int
	// EraseRecords is how many records name the subject whose erasure is
	// timed (default Records).
	EraseRecords int
	// SkipCapture leaves out the PostgreSQL capture figures, which start a
	// throwaway PostgreSQL 15 (skipped anyway, saying why, without one).
	SkipCapture bool
	// Capture sizes the capture figures; its Dir and Progress default to
	// a folder of Dir and to Progress.
	Capture CaptureOptions
	// SkipDynamoDB leaves out the DynamoDB capture figure, which starts a
	// DynamoDB Local (skipped anyway, saying why, without Java or npm).
	SkipDynamoDB bool
	DynamoDB     DynamoDBOptions
	// Load starts the separate load process of the HTTP ingest figure;
	// nil runs the load in this process (tests).
	Load LoadCommand
	// HTTPRounds is how many alternating rounds the HTTP ingest figure
	// takes the median of (3).
	HTTPRounds int
	// StreamRounds is how many alternating rounds (stream on and off) the
	// lineage stream figure takes the median of (3).
	StreamRounds int
	// Only, when set, names the phases to run (baseline, append, http,
	// stream, concurrent, pii, erase, capture, dynamodb, mysql, kafka, build,
	// verify, query); verify and query need build.
	Only []string
	// SkipMySQL leaves out the MariaDB capture figures, which start a
	// throwaway mariadbd (skipped anyway, saying why, without one).
	SkipMySQL bool
	MySQL     MySQLOptions
	// Kafka sizes the Kafka capture figure (kfake in this process).
	Kafka KafkaOptions
	Out   io.Writer
	// Progress, when set, is told how far the current phase is.
	Progress func(phase string, done, total int)
}

func (o *Options) fill() {
	if o.Records <= 0 {
		o.Records = 1_000_000
	}
	if o.Throughput <= 0 {
		o.Throughput = 300_000
	}
	if o.Clients <= 0 {
		o.Clients = 256
	}
	if o.Queries <= 0 {
		o.Queries = 5000
	}
	if o.EraseRecords <= 0 {
		o.EraseRecords = o.Records
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	if o.Capture.Progress == nil {
		o.Capture.Progress = o.Progress
	}
	if o.DynamoDB.Progress == nil {
		o.DynamoDB.Progress = o.Progress
	}
	if o.MySQL.Progress == nil {
		o.MySQL.Progress = o.Progress
	}
	if o.Kafka.Progress == nil {
		o.Kafka.Progress = o.Progress
	}
}

// Results are the measured figures.
type Results struct {
	RecordBytes        int
	BaselineRecordsSec float64 // plain file, one fsync per 1,000-record batch
	BatchedRecordsSec  float64 // durable (acknowledged) appends, batches of 1,000
	BatchedIndexedSec  float64 // same run, until the index had caught up
	Batched4Sec        float64 // batches of 1,000 from 4 concurrent producers
	// The same two figures for the store of record alone (no index): what
	// an acknowledgement costs before the query index is involved.
	LogOnlySec    float64
	LogOnly4Sec   float64
	ConcurrentSec float64 // single-record appends from Clients goroutines
	// Records with three personal fields (PIIRecord), log alone, batches
	// of 1,000: unsealed and sealed by the privacy layer.
	PIIRecordBytes int
	PIIPlainSec    float64
	// PIIValidatedSec: the same records validated against a schema with
	// the same fields and no personal-data annotations, so nothing is
	// sealed.
	PIIValidatedSec float64
	PIISealedSec    float64
	// PIISealedBytes is the first of those records' stored size sealed.
	PIISealedBytes int
	// PIISealedRatio is the median over rounds of sealed over unsealed.
	PIISealedRatio float64
	// The same unsealed and sealed records from one producer through
	// capture's acknowledger with two appends queued (AppendAsync), as
	// the MariaDB source appends, and the median over rounds of sealed
	// over unsealed that way.
	PIIPipelinedPlainSec, PIIPipelinedSealedSec, PIIPipelinedRatio float64
	// Erase is how long erasing one subject named by EraseRecords records
	// took.
	EraseRecords int
	Erase        time.Duration
	// Capture is nil when the capture figures were skipped, and
	// CaptureSkipped then says why.
	Capture        *CaptureResults
	CaptureSkipped string
	// DynamoDB is nil when the DynamoDB capture figure was skipped, and
	// DynamoDBSkipped then says why.
	DynamoDB        *DynamoDBResults
	DynamoDBSkipped string
	// HTTP is nil when its phase was not run.
	HTTP *HTTPResults
	// Stream is nil when its phase was not run.
	Stream *StreamResults
	// MySQL is nil when the MariaDB capture figures were skipped, and
	// MySQLSkipped then says why.
	MySQL        *MySQLResults
	MySQLSkipped string
	// Kafka is nil when its phase was not run.
	Kafka        *KafkaResults
	SHA256MBs    float64
	VerifyMBs    float64
	HistoryP50   time.Duration
	HistoryP99   time.Duration
	SearchP50    time.Duration
	SearchP99    time.Duration
	StoreRecords int
	// PeakRSSBytes is each phase's peak RSS (see PeakRSSLabel).
	PeakRSSBytes map[string]int64
	PeakRSSLabel string
}

// Run measures everything and prints a report as it goes.
func Run(ctx context.Context, opts Options) (*Results, error) {
	defer asServe(ctx)()
	opts.fill()
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stele-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	} else {
		// --dir may name a folder not made yet. Each run gets a folder
		// of its own in it, kept afterwards: stores left by an earlier
		// run would otherwise be reopened, so that its records came back
		// as duplicates and a capture resumed from another server's
		// position.
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp(opts.Dir, "run-")
		if err != nil {
			return nil, err
		}
		opts.Dir = dir
		fmt.Fprintf(opts.Out, "stores kept in %s\n", dir)
	}
	res := &Results{PeakRSSBytes: map[string]int64{}, RecordBytes: len(record.Encode(Record(0, 1))),
		PIIRecordBytes: len(record.Encode(PIIRecord(0, 0))), EraseRecords: opts.EraseRecords}
	out := opts.Out
	fmt.Fprintf(out, "Stele bench: %d-byte records, %d per append figure, %d-record store for queries\n\n", res.RecordBytes, opts.Throughput, opts.Records)

	// Measured first: its 64 MiB buffer is freed before the first phase.
	res.SHA256MBs = sha256Speed()
	storeDir := filepath.Join(opts.Dir, "scale")
	res.StoreRecords = opts.Records
	type phase struct {
		name string
		run  func() error
	}
	phases := []phase{
		{"baseline", func() (err error) {
			res.BaselineRecordsSec, err = baselineFile(ctx, opts, res.RecordBytes)
			return err
		}},
		{"append", func() (err error) {
			if res.LogOnlySec, _, err = batchedAppends(ctx, opts, 1, false); err != nil {
				return fmt.Errorf("log only: %w", err)
			}
			if res.LogOnly4Sec, _, err = batchedAppends(ctx, opts, 4, false); err != nil {
				return fmt.Errorf("log only, 4 producers: %w", err)
			}
			limit := "plain-file limit not measured in this run"
			if res.BaselineRecordsSec > 0 {
				limit = fmt.Sprintf("%s of %.0f records/s", plainFileRatio(res.LogOnlySec, res.BaselineRecordsSec), res.BaselineRecordsSec)
			}
			fmt.Fprintf(out, "log only, batches of 1,000  %10.0f records/s durable   (%s)\n", res.LogOnlySec, limit)
			fmt.Fprintf(out, "log only, 4 producers       %10.0f records/s durable   (%s)\n", res.LogOnly4Sec, plainFileRatio(res.LogOnly4Sec, res.BaselineRecordsSec))
			if res.BatchedRecordsSec, res.BatchedIndexedSec, err = batchedAppends(ctx, opts, 1, true); err != nil {
				return fmt.Errorf("full stack: %w", err)
			}
			if res.Batched4Sec, _, err = batchedAppends(ctx, opts, 4, true); err != nil {
				return fmt.Errorf("full stack, 4 producers: %w", err)
			}
			fmt.Fprintf(out, "full stack, batches of 1,000 %9.0f records/s durable   (%s), %.0f records/s queryable (indexed)\n",
				res.BatchedRecordsSec, plainFileRatio(res.BatchedRecordsSec, res.BaselineRecordsSec), res.BatchedIndexedSec)
			fmt.Fprintf(out, "full stack, 4 producers     %10.0f records/s durable   (%s)\n", res.Batched4Sec, plainFileRatio(res.Batched4Sec, res.BaselineRecordsSec))
			return nil
		}},
		{"http", func() (err error) {
			if res.HTTP, err = HTTPIngest(ctx, opts, opts.HTTPRounds); err != nil {
				return err
			}
			for _, l := range res.HTTP.Lines() {
				fmt.Fprintln(out, l)
			}
			return nil
		}},
		{"stream", func() (err error) {
			if res.Stream, err = StreamIngest(ctx, opts, opts.StreamRounds); err != nil {
				return err
			}
			for _, l := range res.Stream.Lines() {
				fmt.Fprintln(out, l)
			}
			return nil
		}},
		{"concurrent", func() (err error) {
			if res.ConcurrentSec, err = concurrentAppends(ctx, opts); err != nil {
				return err
			}
			fmt.Fprintf(out, "full stack, %d single clients %6.0f records/s durable\n", opts.Clients, res.ConcurrentSec)
			return nil
		}},
		{"pii", func() error {
			rates, err := piiAppends(ctx, opts)
			if err != nil {
				return err
			}
			res.PIIPlainSec, res.PIIValidatedSec, res.PIISealedSec, res.PIISealedBytes = rates.plain, rates.validated, rates.sealed, rates.sealedBytes
			res.PIISealedRatio = median(rates.sealedRatios, func(x float64) float64 { return x })
			ratios := make([]string, len(rates.sealedRatios))
			for i, x := range rates.sealedRatios {
				ratios[i] = fmt.Sprintf("%.2f", x)
			}
			fmt.Fprintf(out, "log only, %d B, 3 PII unsealed %7.0f records/s durable   (%s)\n",
				res.PIIRecordBytes, res.PIIPlainSec, plainFileRatio(res.PIIPlainSec, res.BaselineRecordsSec))
			fmt.Fprintf(out, "log only, schema validated only %6.0f records/s durable   (%.2fx the same records unsealed)\n",
				res.PIIValidatedSec, res.PIIValidatedSec/res.PIIPlainSec)
			fmt.Fprintf(out, "log only, 3 PII fields sealed %8.0f records/s durable   (%.2fx the same records unsealed, %.2fx validated only, %s)\n",
				res.PIISealedSec, res.PIISealedSec/res.PIIPlainSec, res.PIISealedSec/res.PIIValidatedSec, plainFileRatio(res.PIISealedSec, res.BaselineRecordsSec))
			fmt.Fprintf(out, "sealed / unsealed, by round      %.2fx median   (rounds %s; each round appends every mode, in rotating order; rates above are medians)\n",
				res.PIISealedRatio, strings.Join(ratios, " "))
			res.PIIPipelinedPlainSec, res.PIIPipelinedSealedSec = rates.pipelinedPlain, rates.pipelinedSealed
			res.PIIPipelinedRatio = median(rates.pipelinedRatios, func(x float64) float64 { return x })
			for i, x := range rates.pipelinedRatios {
				ratios[i] = fmt.Sprintf("%.2f", x)
			}
			fmt.Fprintf(out, "pipelined, 3 PII unsealed %12.0f records/s durable   (one producer through capture's acknowledger, two appends queued)\n", res.PIIPipelinedPlainSec)
			fmt.Fprintf(out, "pipelined, 3 PII fields sealed %7.0f records/s durable   (%.2fx the same records unsealed pipelined)\n",
				res.PIIPipelinedSealedSec, res.PIIPipelinedSealedSec/res.PIIPipelinedPlainSec)
			fmt.Fprintf(out, "pipelined sealed / unsealed     %.2fx median   (rounds %s)\n",
				res.PIIPipelinedRatio, strings.Join(ratios, " "))
			fmt.Fprintf(out, "sealed record size           %6d bytes stored   (%.2fx the %d bytes unsealed; three PII fields in one compact envelope)\n",
				res.PIISealedBytes, float64(res.PIISealedBytes)/float64(res.PIIRecordBytes), res.PIIRecordBytes)
			return nil
		}},
		{"erase", func() (err error) {
			if res.Erase, err = eraseOne(ctx, opts, opts.EraseRecords); err != nil {
				return err
			}
			fmt.Fprintf(out, "erase one subject            %v   (the subject is named by %d sealed records)\n", res.Erase.Round(time.Microsecond), opts.EraseRecords)
			return nil
		}},
		{"capture", func() error { return runCapture(ctx, opts, res) }},
		{"dynamodb", func() error { return runDynamoDB(ctx, opts, res) }},
		{"mysql", func() error { return runMySQL(ctx, opts, res) }},
		{"kafka", func() (err error) {
			kopts := opts.Kafka
			if kopts.Dir == "" {
				kopts.Dir = filepath.Join(opts.Dir, "kafka")
			}
			if res.Kafka, err = Kafka(ctx, kopts); err != nil {
				return err
			}
			for _, l := range res.Kafka.Lines() {
				fmt.Fprintln(out, l)
			}
			return nil
		}},
		{"build", func() error { return buildStore(ctx, opts, storeDir) }},
		{"verify", func() (err error) {
			if res.VerifyMBs, err = verifySpeed(ctx, opts, storeDir); err != nil {
				return err
			}
			fmt.Fprintf(out, "verify                     %10.0f MB/s   (%.2fx raw SHA-256 at %.0f MB/s on one core)\n",
				res.VerifyMBs, res.VerifyMBs/res.SHA256MBs, res.SHA256MBs)
			return nil
		}},
		{"query", func() error {
			if err := queryLatency(ctx, opts, storeDir, res); err != nil {
				return err
			}
			fmt.Fprintf(out, "entity history at %d     p50 %v  p99 %v\n", opts.Records, res.HistoryP50.Round(time.Microsecond), res.HistoryP99.Round(time.Microsecond))
			fmt.Fprintf(out, "search by actor (100 rows)  p50 %v  p99 %v\n", res.SearchP50.Round(time.Microsecond), res.SearchP99.Round(time.Microsecond))
			return nil
		}},
	}
	if len(opts.Only) > 0 {
		phases = slices.DeleteFunc(phases, func(p phase) bool { return !slices.Contains(opts.Only, p.name) })
	}
	var rss rssMeter
	for _, p := range phases {
		rss.Start()
		err := p.run()
		res.PeakRSSBytes[p.name] = rss.Peak()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	res.PeakRSSLabel = rss.Label()
	var peaks []string
	for _, p := range phases {
		if (p.name != "capture" || res.Capture != nil) && (p.name != "dynamodb" || res.DynamoDB != nil) && (p.name != "mysql" || res.MySQL != nil) {
			peaks = append(peaks, p.name+" "+mib(res.PeakRSSBytes[p.name]))
		}
	}
	fmt.Fprintf(out, "peak RSS                   %s (%s)\n", strings.Join(peaks, ", "), res.PeakRSSLabel)
	return res, nil
}

// runCapture measures the capture figures, or says why they are skipped:
// PostgreSQL 15 is missing or they were turned off. Any other failure is
// the run's.
func runCapture(ctx context.Context, opts Options, res *Results) error {
	if opts.SkipCapture {
		res.CaptureSkipped = "turned off (--capture=false)"
	} else {
		copts := opts.Capture
		if copts.Dir == "" {
			copts.Dir = filepath.Join(opts.Dir, "capture")
		}
		c, err := Capture(ctx, copts)
		switch {
		case errors.Is(err, ErrNoPostgres):
			res.CaptureSkipped = err.Error()
		case err != nil:
			return err
		default:
			res.Capture = c
			for _, l := range c.Lines() {
				fmt.Fprintln(opts.Out, l)
			}
			return nil
		}
	}
	fmt.Fprintf(opts.Out, "capture PostgreSQL → log     skipped: %s\n", res.CaptureSkipped)
	return nil
}

// runDynamoDB measures the DynamoDB capture figure, or says why it is
// skipped: DynamoDB Local cannot start or it was turned off.
func runDynamoDB(ctx context.Context, opts Options, res *Results) error {
	if opts.SkipDynamoDB {
		res.DynamoDBSkipped = "turned off (--dynamodb=false)"
	} else {
		dopts := opts.DynamoDB
		if dopts.Dir == "" {
			dopts.Dir = filepath.Join(opts.Dir, "dynamodb")
		}
		d, err := DynamoDB(ctx, dopts)
		switch {
		case errors.Is(err, ErrNoDynamoDBLocal):
			res.DynamoDBSkipped = err.Error()
		case err != nil:
			return err
		default:
			res.DynamoDB = d
			for _, l := range d.Lines() {
				fmt.Fprintln(opts.Out, l)
			}
			return nil
		}
	}
	fmt.Fprintf(opts.Out, "capture DynamoDB → log     skipped: %s\n", res.DynamoDBSkipped)
	return nil
}

// runMySQL measures the MariaDB capture figures, or says why they are
// skipped: mariadbd is not installed or they were turned off.
func runMySQL(ctx context.Context, opts Options, res *Results) error {
	if opts.SkipMySQL {
		res.MySQLSkipped = "turned off (--mysql=false)"
	} else {
		mopts := opts.MySQL
		if mopts.Dir == "" {
			mopts.Dir = filepath.Join(opts.Dir, "mysql")
		}
		m, err := MySQL(ctx, mopts)
		switch {
		case errors.Is(err, ErrNoMariaDB):
			res.MySQLSkipped = err.Error()
		case err != nil:
			return err
		default:
			res.MySQL = m
			for _, l := range m.Lines() {
				fmt.Fprintln(opts.Out, l)
			}
			return nil
		}
	}
	fmt.Fprintf(opts.Out, "capture MariaDB → log     skipped: %s\n", res.MySQLSkipped)
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// Record returns the i-th benchmark record: an update to one of entities
// customers, about 512 bytes stored.
func Record(i, entities int) *record.Record {
	pad := strings.Repeat("x", 99)
	key := i % entities
	return &record.Record{
		ID:         fmt.Sprintf("bench-%d", i),
		Source:     record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
		Op:         record.OpUpdate,
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, key)),
		Before:     json.RawMessage(fmt.Sprintf(`{"email":"old%d@example.com","id":%d,"name":"Ada"}`, key, key)),
		After:      json.RawMessage(fmt.Sprintf(`{"email":"new%d@example.com","id":%d,"name":"Ada","note":"%s"}`, i, key, pad)),
		Changed:    []string{"email", "note"},
		Actor:      json.RawMessage(fmt.Sprintf(`{"app":"billing","id":"user-%d"}`, i%500)),
		Tx:         &record.Tx{ID: fmt.Sprint(1000 + i/10), Position: fmt.Sprintf("0/%X", 0x1000000+i*600)},
		OccurredAt: time.Unix(1767225600+int64(i), 0).UTC(),
	}
}

// baselineFile is the physical limit for a durable append-only log here:
// the same bytes written sequentially with one fdatasync per batch.
func baselineFile(ctx context.Context, opts Options, recBytes int) (float64, error) {
	f, err := os.Create(filepath.Join(opts.Dir, "baseline.dat"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	batch := make([]byte, 1000*(recBytes+8))
	for i := range batch {
		batch[i] = byte(i)
	}
	batches := opts.Throughput / 1000
	start := time.Now()
	for b := 0; b < batches; b++ {
		if _, err := f.Write(batch); err != nil {
			return 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		if b%20 == 0 {
			opts.Progress("baseline", b, batches)
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
	}
	return float64(batches*1000) / time.Since(start).Seconds(), nil
}

type stack struct {
	ix    *index.Index
	store *logstore.Store
}

func openStack(ctx context.Context, dir string) (*stack, error) {
	return openStore(ctx, dir, true)
}

// openStore opens a log with its index, as the server runs it, or alone.
func openStore(ctx context.Context, dir string, indexed bool) (*stack, error) {
	opts := logstore.Options{Origin: "bench.stele.local/log"}
	st := &stack{}
	if indexed {
		ix, err := index.Open(filepath.Join(dir, "index"), nil)
		if err != nil {
			return nil, err
		}
		st.ix, opts.Hook = ix, ix
	}
	store, err := logstore.Open(ctx, dir, opts)
	if err != nil {
		if st.ix != nil {
			st.ix.Close()
		}
		return nil, err
	}
	st.store = store
	return st, nil
}

// asServe sets the collector as `stele serve` runs by default: GOGC and
// the soft memory limit (GOGC and GOMEMLIMIT win). The returned function
// lifts the limit.
func asServe(ctx context.Context) (stop func()) {
	gctune.Apply()
	ctx, cancel := context.WithCancel(ctx)
	gctune.LimitMemory(ctx, gctune.DefaultMemoryLimit)
	return cancel
}

func (s *stack) close() {
	s.store.Close()
	if s.ix != nil {
		s.ix.Close()
	}
}

// batchedAppends returns the acknowledged rate and the rate at which the
// same records became queryable.
func batchedAppends(ctx context.Context, opts Options, producers int, withIndex bool) (durable, indexed float64, err error) {
	st, err := openStore(ctx, filepath.Join(opts.Dir, fmt.Sprintf("batched-%d-%v", producers, withIndex)), withIndex)
	if err != nil {
		return 0, 0, err
	}
	defer st.close()
	templates := make([]record.Record, 1000)
	for i := range templates {
		templates[i] = *Record(i, 100_000)
	}
	start := time.Now()
	ack, err := timedAppends(ctx, opts, st.store, producers, templates, "append")
	if err != nil {
		return 0, 0, err
	}
	if err := st.store.WaitIndexed(ctx, st.store.Size()); err != nil {
		return 0, 0, err
	}
	n := float64(opts.Throughput / 1000 * 1000)
	return n / ack.Seconds(), n / time.Since(start).Seconds(), nil
}

// batchOf is batch number b of copies of templates, each with an ID of
// its own and its own after image, as a producer would hand them over.
func batchOf(templates []record.Record, b int) []*record.Record {
	recs := make([]*record.Record, len(templates))
	for i := range recs {
		c := templates[i]
		c.ID = "bench-" + strconv.Itoa(b*len(templates)+i)
		c.After = slices.Clone(c.After)
		recs[i] = &c
	}
	return recs
}

// timedAppends appends opts.Throughput records (rounded down to whole
// batches) in batches of 1,000 from producers goroutines and returns how
// long they took to be acknowledged. Producers clone the 1,000 templates,
// giving each copy its own id and image: building records with fmt would
// measure the benchmark, not Stele, and building all of them up front
// would measure its memory.
func timedAppends(ctx context.Context, opts Options, store *logstore.Store, producers int, templates []record.Record, phase string) (time.Duration, error) {
	batches := opts.Throughput / 1000
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, producers)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Go(func() {
			for {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				if _, err := store.Append(ctx, batchOf(templates, b)); err != nil {
					errs <- err
					return
				}
				if b%20 == 0 {
					opts.Progress(phase, b, batches)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return elapsed, nil
}

func concurrentAppends(ctx context.Context, opts Options) (float64, error) {
	st, err := openStack(ctx, filepath.Join(opts.Dir, "concurrent"))
	if err != nil {
		return 0, err
	}
	defer st.close()
	total := opts.Throughput / 3
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, opts.Clients)
	start := time.Now()
	for c := 0; c < opts.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				for {
					_, err := st.store.Append(ctx, []*record.Record{Record(i, 100_000)})
					if err == nil {
						break
					}
					if err != stele.ErrOverloaded {
						errs <- err
						return
					}
					time.Sleep(time.Millisecond)
				}
				if i%5000 == 0 {
					opts.Progress("concurrent", i, total)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total) / elapsed.Seconds(), nil
}

// sha256Speed hashes a large buffer on one core: the raw speed verify is
// compared with.
func sha256Speed() float64 {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	rounds := 0
	for time.Since(start) < time.Second {
		sha256.Sum256(buf)
		rounds++
	}
	return float64(rounds*len(buf)) / 1e6 / time.Since(start).Seconds()
}

func buildStore(ctx context.Context, opts Options, dir string) error {
	st, err := openStack(ctx, dir)
	if err != nil {
		return err
	}
	defer st.close()
	entities := max(opts.Records/10, 1)
	for b := 0; b < opts.Records; b += 1000 {
		recs := make([]*record.Record, min(1000, opts.Records-b))
		for i := range recs {
			recs[i] = Record(b+i, entities)
		}
		if _, err := st.store.Append(ctx, recs); err != nil {
			return err
		}
		if b%20000 == 0 {
			opts.Progress("build store", b, opts.Records)
		}
	}
	return st.store.WaitIndexed(ctx, st.store.Size())
}

func verifySpeed(ctx context.Context, opts Options, dir string) (float64, error) {
	rep, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{Progress: func(done, total int64) {
		opts.Progress("verify", int(done>>20), int(total>>20))
	}})
	if err != nil {
		return 0, err
	}
	if rep.Records != uint64(opts.Records) {
		return 0, fmt.Errorf("verified %d records, want %d", rep.Records, opts.Records)
	}
	return float64(rep.Bytes) / 1e6 / rep.Elapsed.Seconds(), nil
}

func queryLatency(ctx context.Context, opts Options, dir string, res *Results) error {
	st, err := openStack(ctx, dir)
	if err != nil {
		return err
	}
	defer st.close()
	eng := query.New(st.store, st.ix)
	entities := max(opts.Records/10, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	hist := make([]time.Duration, opts.Queries)
	search := make([]time.Duration, opts.Queries)
	for q := 0; q < opts.Queries; q++ {
		key := fmt.Sprint(rng.IntN(entities))
		t0 := time.Now()
		page, err := eng.History(ctx, "crm", "customers", key, query.PageRequest{})
		if err != nil {
			return err
		}
		hist[q] = time.Since(t0)
		if len(page.Records) == 0 {
			return fmt.Errorf("history of customer %s is empty", key)
		}
		t0 = time.Now()
		if _, err := eng.Records(ctx, query.Filter{Actor: fmt.Sprintf("user-%d", rng.IntN(500))}, query.PageRequest{Limit: 100}); err != nil {
			return err
		}
		search[q] = time.Since(t0)
		if q%500 == 0 {
			opts.Progress("queries", q, opts.Queries)
		}
	}
	res.HistoryP50, res.HistoryP99 = percentile(hist, 0.50), percentile(hist, 0.99)
	res.SearchP50, res.SearchP99 = percentile(search, 0.50), percentile(search, 0.99)
	return nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// plainFileRatio is rate against the plain-file limit, for a run that
// measured it (--only may leave the baseline phase out).
func plainFileRatio(rate, baseline float64) string {
	if baseline <= 0 {
		return "plain-file limit not measured in this run"
	}
	return fmt.Sprintf("%.2fx the plain-file limit", rate/baseline)
}
