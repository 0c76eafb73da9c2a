package main

import (
	"context"
	"fmt"
	"os"

	"github.com/stele/stele/bench"
)

func runBench(ctx context.Context, args []string) error {
	fs := newFlagSet("bench", "[--records N] [--throughput N] [--clients N] [--queries N] [--dir DIR] [--quick]")
	records := fs.Int("records", 1_000_000, "records in the store used for the query and verify figures")
	throughput := fs.Int("throughput", 300_000, "records written for each append figure")
	clients := fs.Int("clients", 256, "concurrent single-record writers")
	queries := fs.Int("queries", 5000, "queries timed for each latency figure")
	dir := fs.String("dir", "", "directory for the throwaway stores (default: a temp dir, removed afterwards)")
	quick := fs.Bool("quick", false, "a small run (100k-record store) for a quick look; figures are less stable")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *quick {
		*records, *throughput, *queries = 100_000, 60_000, 1000
	}
	opts := bench.Options{Dir: *dir, Records: *records, Throughput: *throughput, Clients: *clients, Queries: *queries, Out: os.Stdout}
	if isTerminal(os.Stderr) {
		opts.Progress = func(phase string, done, total int) {
			fmt.Fprintf(os.Stderr, "\r\033[K%s: %d/%d", phase, done, total)
		}
		defer fmt.Fprint(os.Stderr, "\r\033[K")
	}
	_, err := bench.Run(ctx, opts)
	return err
}
