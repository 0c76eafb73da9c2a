package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

func runStatus(ctx context.Context, args []string) error {
	fs := newFlagSet("status", "[--url URL] [--token TOKEN]")
	base := fs.String("url", defaultURL, "`URL` of the running stele server")
	token := tokenFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return printStatus(ctx, strings.TrimRight(*base, "/"), *token, os.Stdout, time.Second)
}

// sourceStatus is one source's figures from /metrics.
type sourceStatus struct {
	state            string
	lagBytes, lagSec float64
	records          float64
}

// printStatus prints the server's health, log and checkpoint size and, per
// capture source, its state, lag and throughput; records/s comes from two
// /metrics samples interval apart.
func printStatus(ctx context.Context, base, token string, out io.Writer, interval time.Duration) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: bearerTransport{token}}
	var health struct {
		Status string `json:"status"`
		Detail string `json:"detail"`
		Size   uint64 `json:"size"`
	}
	body, _, err := fetch(ctx, client, base+"/healthz")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &health); err != nil {
		return fmt.Errorf("%s/healthz: not a stele health answer: %w", base, err)
	}
	fmt.Fprintf(out, "server      %s\n", base)
	fmt.Fprintf(out, "health      %s", health.Status)
	if health.Detail != "" {
		fmt.Fprintf(out, " (%s)", health.Detail)
	}
	fmt.Fprintf(out, "\nlog size    %d records\n", health.Size)

	note, code, err := fetch(ctx, client, base+"/v1/checkpoint")
	switch {
	case err != nil && code == 0:
		return err
	case err != nil:
		fmt.Fprintf(out, "checkpoint  unavailable: %v\n", err)
	default:
		lines := strings.SplitN(string(note), "\n", 4)
		if len(lines) < 3 {
			return fmt.Errorf("%s/v1/checkpoint: not a signed checkpoint note", base)
		}
		fmt.Fprintf(out, "checkpoint  size %s, root %s (origin %s)\n", lines[1], lines[2], lines[0])
		if by := cosigners(note, lines[0]); len(by) > 0 {
			fmt.Fprintf(out, "witnessed   by %s\n", strings.Join(by, ", "))
		}
	}
	split, err := printWitnesses(ctx, client, base, out)
	if err == nil && split {
		return &exitError{code: exitFailure}
	}
	if err == nil {
		_ = printStream(ctx, client, base, out)
	}

	first, logs, err := scrapeSources(ctx, client, base)
	if err != nil {
		// A server serving a tampered log answers only health and the
		// checkpoint; what was printed so far says so.
		fmt.Fprintf(out, "sources     unavailable: %v\n", err)
		return &exitError{code: exitFailure}
	}
	printCluster(out, logs)
	t0 := time.Now()
	if len(first) == 0 {
		fmt.Fprintln(out, "sources     none")
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(interval):
	}
	second, _, err := scrapeSources(ctx, client, base)
	if err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	names := make([]string, 0, len(second))
	for name := range second {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Fprintf(out, "\n%-20s %-11s %12s %10s %14s %10s\n", "SOURCE", "STATE", "LAG", "LAG S", "RECORDS", "RECORDS/S")
	for _, name := range names {
		s := second[name]
		rate := 0.0
		if f, ok := first[name]; ok && s.records >= f.records {
			rate = (s.records - f.records) / elapsed
		}
		fmt.Fprintf(out, "%-20s %-11s %12.0f %10.3f %14.0f %10.1f\n", name, s.state, s.lagBytes, s.lagSec, s.records, rate)
	}
	return nil
}

// fetch GETs url; code is the HTTP status (0 when no answer came).
func fetch(ctx context.Context, client *http.Client, url string) (body []byte, code int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w (is `stele serve` running there?)", url, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %w", url, err)
	}
	// /healthz answers 503 with a body when the log is not (yet) verified.
	if resp.StatusCode != http.StatusOK && !strings.HasSuffix(url, "/healthz") {
		return nil, resp.StatusCode, answerError("GET "+url, resp.StatusCode, body, clientToken(client))
	}
	return body, resp.StatusCode, nil
}

// cosigners names the signers of a note other than the log itself.
func cosigners(note []byte, origin string) []string {
	var by []string
	for line := range strings.SplitSeq(string(note), "\n") {
		if rest, ok := strings.CutPrefix(line, "— "); ok {
			if name, _, _ := strings.Cut(rest, " "); name != origin && !slices.Contains(by, name) {
				by = append(by, name)
			}
		}
	}
	return by
}

// printWitnesses shows the witness lag and any split-view alarm from the
// stele_witness_* metrics, and reports whether an alarm is raised.
func printWitnesses(ctx context.Context, client *http.Client, base string, out io.Writer) (bool, error) {
	body, _, err := fetch(ctx, client, base+"/metrics")
	if err != nil {
		return false, err
	}
	lag, configured := 0.0, false
	var lagSec float64
	split := map[string]float64{}
	for sm := range samples(body) {
		switch sm.name {
		case "stele_witness_lag_records":
			lag, configured = sm.value, true
		case "stele_witness_lag_seconds":
			lagSec = sm.value
		case "stele_witness_split_view_total":
			if sm.value > 0 {
				split[sm.labels["witness"]] = sm.value
			}
		}
	}
	if configured {
		fmt.Fprintf(out, "witnesses   lag %.0f records (%.1fs) behind the log's latest checkpoint\n", lag, lagSec)
	}
	names := make([]string, 0, len(split))
	for n := range split {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(out, "SPLIT VIEW  witness %s holds a checkpoint of this log inconsistent with its history (%.0f refusals); both checkpoints are in the server's log and the witness's evidence\n", n, split[n])
	}
	return len(names) > 0, nil
}

// sample is one sample of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// samples yields the samples of a Prometheus text exposition.
func samples(body []byte) iter.Seq[sample] {
	return func(yield func(sample) bool) {
		for line := range strings.SplitSeq(string(body), "\n") {
			if name, labels, value, ok := parseSample(line); ok && !yield(sample{name, labels, value}) {
				return
			}
		}
	}
}

// printStream shows how far the lineage stream is behind the log, and
// whether its publisher is holding off for a burst of ingest (its flow
// control), from the stele_stream_* metrics; nothing when it is off.
func printStream(ctx context.Context, client *http.Client, base string, out io.Writer) error {
	body, _, err := fetch(ctx, client, base+"/metrics")
	if err != nil {
		return err
	}
	var backlog, behindSec, holding, held float64
	on := false
	for sm := range samples(body) {
		switch {
		case sm.name == "stele_stream_backlog_records":
			backlog, on = sm.value, true
		case sm.name == "stele_follow_behind_seconds" && sm.labels["follower"] == "publish":
			behindSec = sm.value
		case sm.name == "stele_stream_holding":
			holding = sm.value
		case sm.name == "stele_stream_held_seconds_total":
			held = sm.value
		}
	}
	if !on {
		return nil
	}
	fmt.Fprintf(out, "stream      %.0f records (%.1fs) behind the log", backlog, behindSec)
	if holding == 1 {
		fmt.Fprint(out, ", holding off for a burst of ingest")
	}
	fmt.Fprintf(out, " (%.1fs held off in bursts since start)\n", held)
	return nil
}

// clusterStatus is what a cluster node's stele_cluster_* metrics say: the
// partition it serves, and every partition of the cluster.
type clusterStatus struct {
	log, node    string
	leader       bool
	records, lag float64
	readable     bool
	partitions   map[string]*partitionStatus
}

type partitionStatus struct {
	writer           string
	batches, backlog float64
}

func (c *clusterStatus) partition(name string) *partitionStatus {
	if c.partitions == nil {
		c.partitions = map[string]*partitionStatus{}
	}
	p := c.partitions[name]
	if p == nil {
		p = &partitionStatus{}
		c.partitions[name] = p
	}
	return p
}

// printCluster prints the partition the node serves and how far its copy
// is behind, then every partition of the cluster with its writer and the
// records waiting to be sequenced.
func printCluster(out io.Writer, c *clusterStatus) {
	if c.node == "" {
		return // not a cluster node
	}
	fmt.Fprintf(out, "cluster     node %s serves partition %s: %.0f records here, %.0f log batches behind\n", c.node, c.log, c.records, c.lag)
	if !c.readable {
		fmt.Fprintln(out, "partitions  unavailable: the node cannot read them from NATS (no quorum, or unreachable)")
		return
	}
	for _, name := range slices.Sorted(maps.Keys(c.partitions)) {
		p := c.partitions[name]
		writer := p.writer
		switch {
		case writer == "":
			writer = "none"
		case name == c.log && c.leader:
			writer += " (this node)"
		}
		fmt.Fprintf(out, "partition   %s: writer %s; %.0f batches sequenced, %.0f records waiting\n", name, writer, p.batches, p.backlog)
	}
}

// scrapeSources reads the stele_source_* metrics, and the stele_cluster_*
// ones of a cluster node by partition.
func scrapeSources(ctx context.Context, client *http.Client, base string) (map[string]*sourceStatus, *clusterStatus, error) {
	body, _, err := fetch(ctx, client, base+"/metrics")
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*sourceStatus{}
	c := &clusterStatus{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parseSample(sc.Text())
		if ok && strings.HasPrefix(name, "stele_cluster_") {
			switch name {
			case "stele_cluster_node":
				c.log, c.node = labels["log"], labels["node"]
			case "stele_cluster_leader":
				c.leader = value == 1
			case "stele_cluster_records":
				c.records = value
			case "stele_cluster_lag_batches":
				c.lag = value
			case "stele_cluster_partitions_readable":
				c.readable = value == 1
			case "stele_cluster_partition_writer":
				c.partition(labels["log"]).writer = labels["writer"]
			case "stele_cluster_partition_batches":
				c.partition(labels["log"]).batches = value
			case "stele_cluster_partition_backlog":
				c.partition(labels["log"]).backlog = value
			}
			continue
		}
		if !ok || !strings.HasPrefix(name, "stele_source_") {
			continue
		}
		src := labels["source"]
		s := out[src]
		if s == nil {
			s = &sourceStatus{}
			out[src] = s
		}
		switch name {
		case "stele_source_lag_bytes":
			s.lagBytes = value
		case "stele_source_lag_seconds":
			s.lagSec = value
		case "stele_source_records_total":
			s.records = value
		case "stele_source_up":
			if value == 1 {
				s.state = labels["state"]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s/metrics: %w", base, err)
	}
	return out, c, nil
}

// parseSample parses one sample line of the Prometheus text format:
// name{label="value",…} value.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return "", nil, 0, false
	} else {
		name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", nil, 0, false
			}
			key := strings.TrimLeft(rest[:eq], ",")
			rest = rest[eq+2:]
			var val strings.Builder
			i := 0
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					switch rest[i] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[i])
					}
					continue
				}
				val.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return "", nil, 0, false
			}
			labels[key] = val.String()
			rest = strings.TrimPrefix(rest[i+1:], ",")
		}
		rest = rest[1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}
