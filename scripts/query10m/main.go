// Command query10m measures Stele's queries on a large log (10 M records by
// default): entity history, search by actor, table and time, table state
// at an instant, the API calls behind the web UI's pages, and the index's
// size per record. It is a script for a person to run, not part of CI: a
// 10 M-record log takes tens of minutes to build and ~10 GB of disk.
//
//	go run ./scripts/query10m --dir /var/tmp/stele-10m            # build (once) and measure
//	go run ./scripts/query10m --dir /var/tmp/stele-10m --records 2000000
//
// The log is built by direct appends of 1,000-record batches (bench.Record:
// updates of records/10 customers, 500 actors, one record a second) into a
// log with its index, as `stele bench` builds its query store; a directory
// that already holds the log is measured as it is, once the index has
// settled (its id filter built and no compaction running: the wait is
// printed). Every latency is the p50 and p99 of --queries calls with
// random arguments, in this process; --only times the figures whose name
// holds a string, --cpuprofile profiles the run. Whether the log is in
// the page cache decides most of a figure: read it once (cat it to
// /dev/null) for a warm figure, drop the caches for a cold one.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/api"
	"github.com/stele/stele/bench"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

func main() {
	dir := flag.String("dir", "", "directory of the log (built there when empty or missing)")
	n := flag.Int("records", 10_000_000, "records in the log")
	queries := flag.Int("queries", 2000, "calls timed per figure")
	wholeTable := flag.Bool("whole-table", true, "also stream the whole table at one instant, once (minutes at 10 M records)")
	only := flag.String("only", "", "time only the figures whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed calls to this file")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "query10m: --dir is required")
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "query10m:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *dir, *n, *queries, *wholeTable, *only); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "query10m:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, n, queries int, wholeTable bool, only string) error {
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		return err
	}
	defer ix.Close()
	st, err := logstore.Open(ctx, dir, logstore.Options{Origin: "bench.stele.local/log", Hook: ix})
	if err != nil {
		return err
	}
	defer st.Close()
	if have := st.Size(); have < uint64(n) {
		if err := build(ctx, st, int(have), n); err != nil {
			return err
		}
	}
	if err := st.WaitIndexed(ctx, st.Size()); err != nil {
		return err
	}
	// Right after a build or an open, the index's id filter and Pebble's
	// compactions take the cores for a while (seconds at 10 M records):
	// the figures are of a server past that, and the wait is reported.
	settle := time.Now()
	for quiet := 0; quiet < 20; { // 2 s without background work
		if time.Since(settle) > 10*time.Minute {
			return errors.New("the index did not settle within 10 minutes")
		}
		if quiet++; !ix.Settled() {
			quiet = 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("index settled (id filter built, no compaction for 2 s) %v after open\n", time.Since(settle).Round(100*time.Millisecond))
	size := int(st.Size())
	ixBytes, err := dirBytes(filepath.Join(dir, "index"))
	if err != nil {
		return err
	}
	logBytes, err := dirBytes(dir)
	if err != nil {
		return err
	}
	fmt.Printf("log of %d records: %.0f MB on disk, the index %.0f MB = %.0f bytes per record (the rest %.0f bytes per record)\n",
		size, float64(logBytes)/1e6, float64(ixBytes)/1e6, float64(ixBytes)/float64(size), float64(logBytes-ixBytes)/float64(size))

	eng := query.New(st, ix)
	entities := max(n/10, 1)
	rng := rand.New(rand.NewPCG(7, 11))
	first, last := bench.Record(0, entities).OccurredAt, bench.Record(size-1, entities).OccurredAt
	randomTime := func() time.Time {
		return first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + 1)))
	}
	// Time-filtered searches are timed fewer times. A window may rightly
	// hold no rows: it starts anywhere up to the last record, so with an
	// actor (one record in 500) it can start after that actor's last one.
	slow := max(queries/20, 20)
	figure := func(name string, call func() error) error {
		if !strings.Contains(name, only) {
			return nil
		}
		calls := queries
		if strings.Contains(name, "time") {
			calls = slow
		}
		var lat []time.Duration
		// A figure that takes long stops after a minute (and 5 calls).
		for begin := time.Now(); len(lat) < calls && (len(lat) < 5 || time.Since(begin) < time.Minute); {
			t0 := time.Now()
			if err := call(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		fmt.Printf("%-48s p50 %9v  p99 %9v  max %9v  (%d calls)\n", name, lat[len(lat)/2].Round(time.Microsecond),
			lat[min(len(lat)-1, len(lat)*99/100)].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat))
		return nil
	}
	want := func(p *query.Page, err error, rows int) error {
		if err != nil {
			return err
		}
		if len(p.Records) < rows {
			return fmt.Errorf("%d rows, want %d", len(p.Records), rows)
		}
		return nil
	}
	figures := []struct {
		name string
		call func() error
	}{
		{"entity history (10 records)", func() error {
			p, err := eng.History(ctx, "crm", "customers", strconv.Itoa(rng.IntN(entities)), query.PageRequest{})
			return want(p, err, 1)
		}},
		{"search by actor, 100 rows", func() error {
			p, err := eng.Records(ctx, query.Filter{Actor: "user-" + strconv.Itoa(rng.IntN(500))}, query.PageRequest{Limit: 100})
			return want(p, err, min(100, size/500))
		}},
		{"search by table, 100 rows", func() error {
			p, err := eng.Records(ctx, query.Filter{Source: "crm", Table: "customers"}, query.PageRequest{Limit: 100})
			return want(p, err, min(100, size))
		}},
		{"search by time (a 10 min window), 100 rows", func() error {
			from := randomTime()
			p, err := eng.Records(ctx, query.Filter{Since: from, Until: from.Add(10 * time.Minute)}, query.PageRequest{Limit: 100})
			return want(p, err, 0)
		}},
		{"search by actor and time, 100 rows", func() error {
			from := randomTime()
			p, err := eng.Records(ctx, query.Filter{Actor: "user-" + strconv.Itoa(rng.IntN(500)), Since: from, Until: from.Add(24 * time.Hour)}, query.PageRequest{Limit: 100})
			return want(p, err, 0)
		}},
		{"entity state at T", func() error {
			_, err := eng.StateAt(ctx, "crm", "customers", strconv.Itoa(rng.IntN(entities)), last)
			return err
		}},
		{"table state at T, first 100 units", func() error {
			p, err := eng.TableStatePage(ctx, "crm", "customers", randomTime(), 100, "")
			if err == nil && len(p.Units) == 0 {
				err = fmt.Errorf("no units")
			}
			return err
		}},
	}
	for _, f := range figures {
		if err := figure(f.name, f.call); err != nil {
			return err
		}
	}
	if wholeTable && strings.Contains("whole table state at T, streamed", only) {
		// The whole table at one instant, streamed, once.
		t0 := time.Now()
		units := 0
		if err := eng.TableStateAt(ctx, "crm", "customers", last, func(query.Unit) error { units++; return nil }); err != nil {
			return fmt.Errorf("table state: %w", err)
		}
		el := time.Since(t0)
		fmt.Printf("%-48s %d units in %v (%.0f units/s)\n", "whole table state at T, streamed", units, el.Round(time.Millisecond), float64(units)/el.Seconds())
	}

	// The web UI's pages, through the HTTP API in this process (no
	// tokens: admin), each the calls the page's script makes.
	srv := httptest.NewServer(api.New(api.Config{Log: st, Query: eng, Registry: prometheus.NewRegistry()}))
	defer srv.Close()
	get := func(path string, lines int) error {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if lines > 0 { // a streamed answer the page stops reading
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for i := 0; i < lines && sc.Scan(); i++ {
			}
			return sc.Err()
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	pages := []struct {
		name string
		call func() error
	}{
		{"UI search page (50 rows)", func() error { return get("/v1/records?limit=50", 0) }},
		{"UI search page, actor filter", func() error {
			return get("/v1/records?limit=50&actor=user-"+strconv.Itoa(rng.IntN(500)), 0)
		}},
		{"UI entity page (history)", func() error {
			return get("/v1/entities/crm/customers/"+strconv.Itoa(rng.IntN(entities))+"/history?limit=1000", 0)
		}},
		{"UI record page (record and its proof)", func() error {
			return get("/v1/records/"+strconv.Itoa(rng.IntN(size)), 0)
		}},
		{"UI table page (first and last change, 51 units)", func() error {
			if err := get("/v1/records?source=crm&table=customers&limit=1", 0); err != nil {
				return err
			}
			if err := get("/v1/records?source=crm&table=customers&limit=1&order=asc", 0); err != nil {
				return err
			}
			return get("/v1/tables/crm/customers/state?at="+randomTime().Format(time.RFC3339), 51)
		}},
	}
	for _, p := range pages {
		if err := figure(p.name, p.call); err != nil {
			return err
		}
	}
	return nil
}

// build appends records [from, n) in batches of 1,000.
func build(ctx context.Context, st *logstore.Store, from, n int) error {
	entities := max(n/10, 1)
	start := time.Now()
	for b := from; b < n; b += 1000 {
		recs := make([]*record.Record, min(1000, n-b))
		for i := range recs {
			recs[i] = bench.Record(b+i, entities)
		}
		if _, err := st.Append(ctx, recs); err != nil {
			return err
		}
		if b%500_000 == 0 {
			fmt.Fprintf(os.Stderr, "build: %d of %d records, %v\n", b, n, time.Since(start).Round(time.Second))
		}
	}
	el := time.Since(start)
	if err := st.WaitIndexed(ctx, st.Size()); err != nil {
		return err
	}
	fmt.Printf("built %d records in %v (%.0f records/s durable; indexed after %v)\n", n-from, el.Round(time.Second),
		float64(n-from)/el.Seconds(), time.Since(start).Round(time.Second))
	return nil
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			var info fs.FileInfo
			if info, err = d.Info(); err == nil {
				total += info.Size()
			}
		}
		// The index compacts while it is walked: a file it has just
		// removed is not counted.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	return total, err
}
