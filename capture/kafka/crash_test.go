package kafka

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// TestCrashExactlyOnce runs the real stele binary as a child process
// consuming a Debezium topic from kfake (which lives here, in the test
// process, so it outlives the kills), kill -9s it three times while
// transactions keep arriving, and checks that the log holds every change
// exactly once and verifies.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	b := startBroker(t)
	u := newDebeziumTopics(t, b, "crash", 3)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "stele")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stele/stele/cmd/stele").CombinedOutput(); err != nil {
		t.Fatalf("build stele: %v\n%s", err, out)
	}
	data := filepath.Join(tmp, "data")
	conf := filepath.Join(tmp, "stele.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `sources:
  - name: crash
    kafka:
      brokers: [%q]
      topics: ['^crash\.public\..*']
      topic_regex: true
      transaction_topic: crash.transaction
      sasl_mechanism: PLAIN
      sasl_user: %s
      session_timeout: 2s
`, b.addr(), saslUser), 0o600); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(tmp, "addr")
	logPath := filepath.Join(tmp, "stele.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("stele logs:\n%s", out)
		}
	})
	start := func() *exec.Cmd {
		os.Remove(addrFile)
		cmd := exec.Command(bin, "serve", "--config", conf, "--data", data, "--addr", "127.0.0.1:0", "--addr-file", addrFile)
		cmd.Env = append(os.Environ(), "STELE_KAFKA_PASSWORD="+saslPass)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	cmd := start()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	var changes atomic.Int64
	wg.Go(func() {
		ctx := context.Background()
		for n := int64(1); !stop.Load(); n++ {
			// Each transaction inserts a row and updates an earlier one:
			// two changes.
			err := u.Apply(ctx, txOf(n, 1+rand.Int64N(n)))
			if err != nil {
				workErr = err
				return
			}
			changes.Add(2)
			time.Sleep(time.Millisecond)
		}
	})
	for range 3 {
		time.Sleep(time.Duration(400+rand.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		cmd = start()
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if workErr != nil {
		t.Fatalf("workload: %v", workErr)
	}
	want := uint64(changes.Load())
	deadline := time.Now().Add(60 * time.Second)
	for size := uint64(0); size < want; size = checkpointSize(addrFile) {
		if time.Now().After(deadline) {
			t.Fatalf("log reached %d records, want %d", size, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stele exit: %v", err)
	}
	if _, err := logstore.VerifyDir(context.Background(), data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	st, err := logstore.Open(context.Background(), data, logstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Size() != want {
		t.Fatalf("log holds %d records, want %d (one per change)", st.Size(), want)
	}
	seen := map[string]bool{}
	for seq := range st.Size() {
		r, err := st.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s %s %s", r.Op, r.Key, r.After)
		if seen[k] {
			t.Fatalf("change %s stored twice", k)
		}
		seen[k] = true
	}
	t.Logf("%d changes, 3 kills", want)
}

// checkpointSize reads the size of the server's latest signed checkpoint.
func checkpointSize(addrFile string) uint64 {
	addr, err := os.ReadFile(addrFile)
	if err != nil {
		return 0
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/v1/checkpoint")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<16))
	sc.Scan() // origin
	sc.Scan()
	n, _ := strconv.ParseUint(sc.Text(), 10, 64)
	return n
}

func txOf(n, upd int64) capturetest.Tx {
	return capturetest.Tx{Changes: []capturetest.Change{
		{Op: record.OpInsert, ID: n, V: fmt.Sprintf("n%d", n)},
		{Op: record.OpUpdate, ID: upd, V: fmt.Sprintf("u%d", n)},
	}}
}
