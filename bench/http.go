package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele/api"
	"github.com/stele/stele/record"
)

// HTTPRecordBytes is the size of one record of the HTTP ingest figure as
// the client sends it, the 512 bytes the measurement used.
const HTTPRecordBytes = 512

// httpBatch is how many records one POST carries.
const httpBatch = 1000

// LoadCommand builds the command of a separate load process: the stele
// binary re-executed as `stele bench --http-load …` (RunLoad). The load
// must come from another process, over real TCP, or the figure would
// share the server's heap, GC and scheduler with its client and flatter
// neither.
type LoadCommand func(ctx context.Context, args ...string) *exec.Cmd

// HTTPResults are the HTTP batch-ingest figures, each next to the
// in-process full-stack figure measured in alternation with it.
type HTTPResults struct {
	RecordBytes int
	// InProcess1Sec and InProcess4Sec: the same records appended to the
	// same stack by 1 and 4 in-process producers.
	InProcess1Sec, InProcess4Sec float64
	// HTTP1Sec and HTTP4Sec: posted over loopback TCP from a separate
	// process by 1 and 4 producers, JSON arrays of 1,000.
	HTTP1Sec, HTTP4Sec float64
	// CPU per batch of 1,000, medians: the in-process stack's, the HTTP
	// server's (this process's) and the load process's while it posts.
	// On a machine other processes share, CPU varies far less than time,
	// and with both cores busy (4 producers) it is what bounds the rates.
	InProcess1CPU, InProcess4CPU, Server1CPU, Server4CPU, Load1CPU, Load4CPU time.Duration
	// Rounds is how many alternating rounds the medians are of.
	Rounds int
}

// cpuRatio is in-process CPU per batch over HTTP's, server and load
// process together: what the rate ratio tends to when CPU bounds both.
func cpuRatio(in, server, load time.Duration) float64 {
	return in.Seconds() / (server + load).Seconds()
}

// Lines are the report's lines.
func (h *HTTPResults) Lines() []string {
	return []string{
		fmt.Sprintf("HTTP ingest, 1 producer     %10.0f records/s durable   (%.2fx in-process full stack at %.0f records/s; arrays of 1,000 x %d B over TCP from a load process, median of %d)",
			h.HTTP1Sec, h.HTTP1Sec/h.InProcess1Sec, h.InProcess1Sec, h.RecordBytes, h.Rounds),
		fmt.Sprintf("HTTP ingest, 4 producers    %10.0f records/s durable   (%.2fx in-process full stack at %.0f records/s)",
			h.HTTP4Sec, h.HTTP4Sec/h.InProcess4Sec, h.InProcess4Sec),
		fmt.Sprintf("HTTP ingest CPU per batch   1 producer %.2f ms server + %.2f ms load process, in-process %.2f ms (%.2fx); 4 producers %.2f + %.2f ms, in-process %.2f ms (%.2fx)",
			ms(h.Server1CPU), ms(h.Load1CPU), ms(h.InProcess1CPU), cpuRatio(h.InProcess1CPU, h.Server1CPU, h.Load1CPU),
			ms(h.Server4CPU), ms(h.Load4CPU), ms(h.InProcess4CPU), cpuRatio(h.InProcess4CPU, h.Server4CPU, h.Load4CPU)),
	}
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }

// HTTPIngest measures HTTP batch ingest against the in-process full stack,
// alternating the two in each round on fresh stores, and reports medians.
// Without a load command (tests) the load runs in this process, which the
// report does not claim to be comparable.
func HTTPIngest(ctx context.Context, opts Options, rounds int) (*HTTPResults, error) {
	if rounds <= 0 {
		rounds = 3
	}
	res := &HTTPResults{RecordBytes: len(httpRecordJSON(0)), Rounds: rounds}
	var in1, in4, h1, h4 []float64
	var cpu [2][3][]time.Duration // [1 or 4 producers][in-process, server, load]
	for r := range rounds {
		for k, producers := range []int{1, 4} {
			in, inCPU, err := inProcessRate(ctx, opts, producers, fmt.Sprintf("http-inproc-%d-%d", producers, r))
			if err != nil {
				return nil, err
			}
			ht, serverCPU, loadCPU, err := httpRate(ctx, opts, producers, fmt.Sprintf("http-%d-%d", producers, r))
			if err != nil {
				return nil, err
			}
			if producers == 1 {
				in1, h1 = append(in1, in), append(h1, ht)
			} else {
				in4, h4 = append(in4, in), append(h4, ht)
			}
			for i, c := range []time.Duration{inCPU, serverCPU, loadCPU} {
				cpu[k][i] = append(cpu[k][i], c)
			}
		}
	}
	res.InProcess1Sec, res.InProcess4Sec, res.HTTP1Sec, res.HTTP4Sec = medianOf(in1), medianOf(in4), medianOf(h1), medianOf(h4)
	res.InProcess1CPU, res.Server1CPU, res.Load1CPU = medianOf(cpu[0][0]), medianOf(cpu[0][1]), medianOf(cpu[0][2])
	res.InProcess4CPU, res.Server4CPU, res.Load4CPU = medianOf(cpu[1][0]), medianOf(cpu[1][1]), medianOf(cpu[1][2])
	return res, nil
}

func medianOf[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// inProcessRate is the in-process rate and CPU per batch.
func inProcessRate(ctx context.Context, opts Options, producers int, dir string) (float64, time.Duration, error) {
	st, err := openStack(ctx, filepath.Join(opts.Dir, dir))
	if err != nil {
		return 0, 0, err
	}
	defer st.close()
	templates := make([]record.Record, httpBatch)
	for i := range templates {
		r, err := record.ParseIngest(httpRecordJSON(i), record.IngestOptions{DefaultKind: "http"})
		if err != nil {
			return 0, 0, fmt.Errorf("bench record: %w", err)
		}
		templates[i] = *r
	}
	cpu0 := cpuTime()
	d, err := timedAppends(ctx, opts, st.store, producers, templates, "http")
	if err != nil {
		return 0, 0, err
	}
	batches := opts.Throughput / httpBatch
	return float64(batches*httpBatch) / d.Seconds(), (cpuTime() - cpu0) / time.Duration(batches), nil
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration { return time.Duration(cpuSeconds() * 1e9) }

// httpRate is the HTTP rate and, per batch, the server's CPU and the load
// process's while it posted (0 when the load runs in this process, in
// the server's figure).
func httpRate(ctx context.Context, opts Options, producers int, dir string) (_ float64, server, load time.Duration, _ error) {
	st, err := openStack(ctx, filepath.Join(opts.Dir, dir))
	if err != nil {
		return 0, 0, 0, err
	}
	defer st.close()
	srv := api.New(api.Config{Log: st.store, Logger: slog.New(slog.DiscardHandler), MaxBatch: httpBatch})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ends with Close below
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/v1/records"
	batches := opts.Throughput / httpBatch
	perBatch := func(d time.Duration) time.Duration { return d / time.Duration(batches) }
	if opts.Load == nil {
		// The process's CPU is the load's and the server's together.
		d, cpu, err := Load(ctx, url, producers, batches)
		if err != nil {
			return 0, 0, 0, err
		}
		return float64(batches*httpBatch) / d.Seconds(), perBatch(cpu), 0, nil
	}
	cmd := opts.Load(ctx, "--http-load", url, "--http-producers", strconv.Itoa(producers), "--http-batches", strconv.Itoa(batches))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cpu0 := cpuTime()
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("load process: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	server = cpuTime() - cpu0
	d, loadCPU, err := parseLoadOutput(out)
	if err != nil {
		return 0, 0, 0, err
	}
	return float64(batches*httpBatch) / d.Seconds(), perBatch(server), perBatch(loadCPU), nil
}

// parseLoadOutput reads the load process's elapsed time and CPU time.
func parseLoadOutput(out []byte) (elapsed, cpu time.Duration, _ error) {
	var haveElapsed bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, v, _ := strings.Cut(sc.Text(), " ")
		if name != "elapsed" && name != "cpu" {
			continue
		}
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("load process: bad output %q", sc.Text())
		}
		if name == "elapsed" {
			elapsed, haveElapsed = time.Duration(ns), true
		} else {
			cpu = time.Duration(ns)
		}
	}
	if !haveElapsed {
		return 0, 0, fmt.Errorf("load process: no elapsed line in %q", out)
	}
	return elapsed, cpu, nil
}

// RunLoad is the load process: it posts batches to url from producers
// connections and prints "elapsed <ns>" and "cpu <ns>" (its CPU time
// while it posted, its start-up left out) for the parent to read.
func RunLoad(ctx context.Context, url string, producers, batches int, out io.Writer) error {
	d, cpu, err := Load(ctx, url, producers, batches)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "elapsed %d\ncpu %d\n", d.Nanoseconds(), cpu.Nanoseconds())
	return err
}

// Load posts batches JSON arrays of 1,000 records to url from producers
// goroutines, each with its own connection, and returns how long the 201s
// took and the CPU time the process used meanwhile. Every body is one
// template whose fixed-width id digits are rewritten per batch, so the
// client spends its time on the wire, not on building JSON.
func Load(ctx context.Context, url string, producers, batches int) (elapsed, cpu time.Duration, _ error) {
	body, idAt := httpBody()
	var next atomic.Int64
	errs := make(chan error, producers)
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for range producers {
		wg.Go(func() {
			// A write buffer that holds a whole request sends it in one
			// write: with the default 4 KiB one, each batch crossed the
			// kernel in about 17 writes, CPU the load process took from
			// the server it shares the machine with.
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true,
				WriteBufferSize: len(body) + 4<<10, ReadBufferSize: 64 << 10}}
			buf := slices.Clone(body)
			var answer bytes.Buffer
			for {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				for i, at := range idAt {
					putDigits(buf[at:at+idDigits], b*httpBatch+i)
				}
				if err := post(ctx, client, url, buf, &answer); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu = time.Since(start), cpuTime()-cpu0
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return elapsed, cpu, nil
}

// post sends body and reads the answer into answer, reused from one
// request to the next.
func post(ctx context.Context, client *http.Client, url string, body []byte, answer *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer.Reset()
	if _, err := answer.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST answered %s: %.300s", resp.Status, answer.Bytes())
	}
	return nil
}

const idDigits = 12

func putDigits(dst []byte, n int) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
}

// httpBody is a JSON array of 1,000 records and where each one's id
// digits start.
func httpBody() ([]byte, []int) {
	var b []byte
	idAt := make([]int, httpBatch)
	b = append(b, '[')
	for i := range httpBatch {
		if i > 0 {
			b = append(b, ',')
		}
		rec := httpRecordJSON(i)
		idAt[i] = len(b) + bytes.Index(rec, []byte(`"http-`)) + len(`"http-`)
		b = append(b, rec...)
	}
	return append(b, ']'), idAt
}

// httpRecordJSON is the i-th record of the HTTP figure as a client posts
// it: bench's update record, padded to HTTPRecordBytes.
func httpRecordJSON(i int) []byte {
	key := i % 100_000
	head := fmt.Sprintf(`{"id":"http-%0*d","source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"update","key":{"id":%d},`+
		`"before":{"email":"old%d@example.com","id":%d,"name":"Ada"},"after":{"email":"new%d@example.com","id":%d,"name":"Ada","note":"`,
		idDigits, i, key, key, key, i, key)
	tail := fmt.Sprintf(`"},"changed":["email","note"],"actor":{"app":"billing","id":"user-%d"},"tx":{"id":"%d","position":"0/%X"},"occurred_at":"%s"}`,
		i%500, 1000+i/10, 0x1000000+i*600, time.Unix(1767225600+int64(i), 0).UTC().Format(time.RFC3339))
	pad := max(HTTPRecordBytes-len(head)-len(tail), 1)
	return []byte(head + strings.Repeat("x", pad) + tail)
}
