package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/witness"
)

func postRecords(ctx context.Context, t *testing.T, base, prefix string, n int) {
	t.Helper()
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, `{"source":{"name":"crm","table":"t"},"op":"insert","key":{"id":"%s-%d"},"after":{"v":%d}}`+"\n", prefix, i, i)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/records", strings.NewReader(body.String()))
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %s", resp.Status)
	}
}

func httpGet(ctx context.Context, t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServeWitnessedAndForkCaught: the server publishes only checkpoints
// its witness cosigned; `stele verify --url --witness-policy` checks them;
// a copy of the data directory that diverges, served under the same key,
// is refused by the witness and caught by an auditor holding the earlier
// state.
func TestServeWitnessedAndForkCaught(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA := t.TempDir()
	s, err := logstore.Open(ctx, dataA, logstore.Options{Origin: "fork.test/log"})
	if err != nil {
		t.Fatal(err)
	}
	logKey := s.Keys().VerifierKey
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lv, err := note.NewVerifier(logKey)
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := witness.GenerateKey(nil, "w1.test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := witness.NewCosigner(skey, nil)
	if err != nil {
		t.Fatal(err)
	}
	wreg := prometheus.NewRegistry()
	w, err := witness.New(witness.Config{Dir: t.TempDir(), Signer: c, Logs: []note.Verifier{lv}, Registry: wreg})
	if err != nil {
		t.Fatal(err)
	}
	wsrv := httptest.NewServer(w.Handler())
	defer wsrv.Close()
	_, never, _ := witness.GenerateKey(nil, "w2.test")
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy")
	policyText := "log " + logKey + "\nwitness w1 " + vkey + " " + wsrv.URL + "\nquorum w1\n"
	if err := os.WriteFile(policyPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	strictPath := filepath.Join(dir, "strict")
	if err := os.WriteFile(strictPath, []byte(strings.Replace(policyText, "quorum w1", "witness w2 "+never+"\ngroup both all w1 w2\nquorum both", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := defaultConfig()
	cfg.Data, cfg.Addr, cfg.Origin = dataA, "127.0.0.1:0", "fork.test/log"
	cfg.Stream.Listen = "none"
	cfg.CheckpointInterval = 50 * time.Millisecond
	cfg.WitnessPolicy = policyPath
	cfg.WitnessTimeout = 2 * time.Second
	baseA := serveInProcess(ctx, t, cfg)
	postRecords(ctx, t, baseA, "common", 10)
	// The fork's copy: the directory at size 10, before A goes on.
	dataB := t.TempDir()
	if err := copyDataDir(dataA, dataB); err != nil {
		t.Fatal(err)
	}
	postRecords(ctx, t, baseA, "honest", 5)
	served := waitWitnessed(ctx, t, baseA, lv, 15)
	if !bytes.Contains(served, []byte("\n— w1.test ")) {
		t.Fatalf("served checkpoint has no cosignature:\n%s", served)
	}
	if _, metrics := httpGet(ctx, t, baseA+"/metrics"); !bytes.Contains(metrics, []byte("stele_witness_lag_records")) {
		t.Fatal("no witness lag on /metrics")
	}

	policy, err := readPolicy(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	strict, err := readPolicy(strictPath)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "audit.json")
	var out bytes.Buffer
	if err := verifyURL(ctx, baseA, logKey, "", state, 3, policy, nil, &out); err != nil {
		t.Fatalf("verify --url --witness-policy: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "witnessed by w1 at ") {
		t.Fatalf("verify does not say who witnessed:\n%s", out.String())
	}
	out.Reset()
	var ee *exitError
	if err := verifyURL(ctx, baseA, logKey, "", "none", 1, strict, nil, &out); !errors.As(err, &ee) || !strings.Contains(out.String(), `quorum "both" not met; cosigned by 1 of 2 witnesses [w1]`) {
		t.Fatalf("verify with a quorum not met: %v\n%s", err, out.String())
	}

	// An export from the witnessed server carries the cosignatures.
	exportPath := filepath.Join(dir, "e.jsonl")
	format, err := exportFormat("jsonl", exportPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exportFromURL(ctx, baseA, "", exportPath, format, url.Values{}, nil); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := verifyExport(ctx, exportPath, logKey, policy, nil, &out); err != nil || !strings.Contains(out.String(), "witnessed by w1 at ") {
		t.Fatalf("verify --export --witness-policy: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := verifyExport(ctx, exportPath, logKey, strict, nil, &out); !errors.As(err, &ee) || !strings.Contains(out.String(), "not met") {
		t.Fatalf("verify --export with a quorum not met: %v\n%s", err, out.String())
	}

	// The fork: a copy of the directory at size 10 that diverges, served
	// by a second Stele with the same key (no witnesses: its operator
	// hides the refusal).
	cfgB := cfg
	cfgB.Data, cfgB.WitnessPolicy = dataB, ""
	baseB := serveInProcess(ctx, t, cfgB)
	postRecords(ctx, t, baseB, "forged", 7)
	_, cpB := httpGet(ctx, t, baseB+"/v1/checkpoint")
	forked, err := stele.OpenCheckpoint(cpB, lv)
	if err != nil {
		t.Fatal(err)
	}
	if forked.Size != 17 {
		t.Fatalf("fork size %d, want 17", forked.Size)
	}
	// The fork asks the witness with its own proof from the size the
	// witness holds.
	_, proofJSON := httpGet(ctx, t, fmt.Sprintf("%s/v1/proof/consistency?from=15&to=17", baseB))
	var pr struct{ Hashes []string }
	if err := json.Unmarshal(proofJSON, &pr); err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, h := range pr.Hashes {
		b, _ := base64.StdEncoding.DecodeString(h)
		hashes = append(hashes, b)
	}
	_, err = witness.Submit(ctx, http.DefaultClient, &policy.Witnesses[0], &witness.AddCheckpoint{OldSize: 15, Proof: hashes, Checkpoint: cpB})
	if !errors.Is(err, witness.ErrWitnessBadProof) {
		t.Fatalf("witness took the fork: %v", err)
	}
	out.Reset()
	if err := verifyURL(ctx, baseB, logKey, "", state, 1, nil, nil, &out); !errors.As(err, &ee) {
		t.Fatalf("auditor holding the earlier state accepted the fork: %v\n%s", err, out.String())
	}
	t.Logf("auditor on the fork: %s", strings.TrimSpace(out.String()))
	_, wm := gatherText(t, wreg)
	if !strings.Contains(wm, "stele_witness_split_view_total") {
		t.Fatalf("witness raised no split-view alarm: %s", wm)
	}

	// stele status shows who witnessed the honest server's checkpoint.
	out.Reset()
	if err := printStatus(ctx, baseA, "", &out, time.Millisecond); err != nil {
		t.Fatalf("status: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "witnessed   by w1.test") || !strings.Contains(out.String(), "witnesses   lag 0 records") {
		t.Fatalf("status does not show the witness:\n%s", out.String())
	}
	// The fork's operator turns the witnesses on: the witness refuses
	// every checkpoint, the server raises the alarm and status fails.
	dataC := t.TempDir()
	if err := copyDataDir(dataB, dataC); err != nil {
		t.Fatal(err)
	}
	cfgC := cfg
	cfgC.Data = dataC
	baseC := serveInProcess(ctx, t, cfgC)
	for {
		out.Reset()
		err := printStatus(ctx, baseC, "", &out, time.Millisecond)
		if errors.As(err, &ee) && strings.Contains(out.String(), "SPLIT VIEW  witness w1 holds a checkpoint of this log inconsistent with its history") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status of the fork shows no split view: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := httpGet(ctx, t, baseC+"/v1/checkpoint"); code != http.StatusServiceUnavailable {
		t.Fatalf("the fork served a checkpoint no witness cosigned: %d %s", code, body)
	}
}

// waitWitnessed polls /v1/checkpoint until it serves a cosigned checkpoint
// of size; 503 means none is witnessed yet.
func waitWitnessed(ctx context.Context, t *testing.T, base string, lv note.Verifier, size uint64) []byte {
	t.Helper()
	for {
		code, body := httpGet(ctx, t, base+"/v1/checkpoint")
		if code == http.StatusOK {
			cp, err := stele.OpenCheckpoint(body, lv)
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size == size {
				return body
			}
		} else if code != http.StatusServiceUnavailable {
			t.Fatalf("/v1/checkpoint: %d %s", code, body)
		}
		if ctx.Err() != nil {
			t.Fatalf("no witnessed checkpoint of size %d: last %d %s", size, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyDataDir copies a closed-or-served data directory's files (the log
// is append-only, so a copy taken between commits is a valid store).
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if d.Name() == "LOCK" || strings.HasSuffix(d.Name(), ".lock") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
}

func gatherText(t *testing.T, reg *prometheus.Registry) (int, string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() > 0 {
				fmt.Fprintf(&b, "%s %v\n", mf.GetName(), m.GetCounter().GetValue())
			}
		}
	}
	return len(mfs), b.String()
}

func TestWitnessCommandKeyAndUsage(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadOrCreateWitnessKey(dir, ""); err == nil || !strings.Contains(err.Error(), "--name is required") {
		t.Fatalf("no key, no name: %v", err)
	}
	c, err := loadOrCreateWitnessKey(dir, "w.test")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "witness.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("witness.key: %v, mode %v", err, fi.Mode())
	}
	vk, err := os.ReadFile(filepath.Join(dir, "witness.vkey"))
	if err != nil || strings.TrimSpace(string(vk)) != c.VerifierKey() {
		t.Fatalf("witness.vkey %q, %v; want %s", vk, err, c.VerifierKey())
	}
	again, err := loadOrCreateWitnessKey(dir, "")
	if err != nil || again.VerifierKey() != c.VerifierKey() {
		t.Fatalf("reload: %v", err)
	}
	if _, err := loadOrCreateWitnessKey(dir, "other.test"); err == nil || !strings.Contains(err.Error(), `named "w.test", not --name "other.test"`) {
		t.Fatalf("another name: %v", err)
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"witness", "--data", dir}, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "at least one --log") {
		t.Fatalf("no --log: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"witness", "--data", dir, "--log", "nokey"}, &stderr); code != exitUsage || !strings.Contains(stderr.String(), `--log "nokey"`) {
		t.Fatalf("bad --log: exit %d, %s", code, stderr.String())
	}
}
