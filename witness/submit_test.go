package witness_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stele/stele"
	"github.com/stele/stele/witness"
)

// TestSubmitterQuorumDespiteBadWitnesses: with witnesses down, answering
// garbage and hanging, appends and checkpoints go on, and the checkpoint
// is published once the two good witnesses cosign it.
func TestSubmitterQuorumDespiteBadWitnesses(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	lv := logVerifier(t, s)
	c1, _ := newCosigner(t, "w1.test")
	c2, _ := newCosigner(t, "w2.test")
	cd, _ := newCosigner(t, "down.test")
	cg, _ := newCosigner(t, "garbage.test")
	cs, _ := newCosigner(t, "slow.test")
	w1 := newWitness(t, t.TempDir(), c1, lv)
	w2 := newWitness(t, t.TempDir(), c2, lv)
	s1 := serve(t, w1.w.Handler())
	s2 := serve(t, w2.w.Handler())
	downSrv := httptest.NewServer(http.NotFoundHandler())
	downURL := downSrv.URL
	downSrv.Close()
	garbage := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("— garbage.test AAAAAAAAAAAAAAAAAAAA\n"))
	}))
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })

	policyText := "log " + s.Keys().VerifierKey + "\n" +
		"witness w1 " + c1.VerifierKey() + " " + s1.URL + "\n" +
		"witness w2 " + c2.VerifierKey() + " " + s2.URL + "/\n" +
		"witness down " + cd.VerifierKey() + " " + downURL + "\n" +
		"witness garbage " + cg.VerifierKey() + " " + garbage.URL + "\n" +
		"witness slow " + cs.VerifierKey() + " " + slow.URL + "\n" +
		"group q 2 w1 w2 down garbage slow\nquorum q\n"
	p, err := witness.ParsePolicy([]byte(policyText))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sub, err := witness.NewSubmitter(witness.SubmitterConfig{Policy: p, Log: s, Registry: reg, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cp := grow(t, s, "a", 3)
	done := make(chan bool)
	go func() { done <- sub.Round(ctx, cp) }()
	<-entered
	// The slow witness holds the round; the log does not wait for it.
	more := grow(t, s, "b", 50)
	if more.Size != 53 {
		t.Fatalf("log size %d while a witness hangs, want 53", more.Size)
	}
	if sub.Witnessed() != nil {
		t.Fatal("a checkpoint was published before the round ended")
	}
	if got := testutil.ToFloat64(gauge(t, reg, "stele_witness_lag_records")); got != 53 {
		t.Fatalf("lag %v records, want 53", got)
	}
	once.Do(func() { close(release) })
	if !<-done {
		t.Fatal("round with two good witnesses did not meet the 2-of-5 quorum")
	}
	checkWitnessed(t, sub, p, s, 3, "w1 w2")

	// The next checkpoint goes with proofs from the size each witness holds.
	if !sub.Round(ctx, more) {
		t.Fatal("second round not witnessed")
	}
	checkWitnessed(t, sub, p, s, 53, "w1 w2")
	if got := testutil.ToFloat64(gauge(t, reg, "stele_witness_lag_records")); got != 0 {
		t.Fatalf("lag %v records after witnessing, want 0", got)
	}

	// A quorum the good witnesses cannot meet: nothing is published, and a
	// fresh submitter learns w1's size from its 409 and retries from there.
	strict, err := witness.ParsePolicy([]byte(strings.Replace(policyText, "group q 2 w1 w2 down garbage slow", "group q all w1 garbage", 1)))
	if err != nil {
		t.Fatal(err)
	}
	reg2 := prometheus.NewRegistry()
	sub2, err := witness.NewSubmitter(witness.SubmitterConfig{Policy: strict, Log: s, Registry: reg2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	last := grow(t, s, "c", 1)
	if sub2.Round(ctx, last) || sub2.Witnessed() != nil {
		t.Fatal("published without the quorum")
	}
	if got := testutil.ToFloat64(gauge(t, reg2, "stele_witness_lag_records")); got != 54 {
		t.Fatalf("lag %v records, want 54", got)
	}
	for result, want := range map[string]float64{"conflict": 1, "cosigned": 1} {
		if got := counter(t, reg2, "stele_witness_submissions_total", "w1", result); got != want {
			t.Errorf("w1 %s: %v, want %v", result, got, want)
		}
	}
	if got := counter(t, reg2, "stele_witness_submissions_total", "garbage", "error"); got != 1 {
		t.Errorf("garbage witness errors: %v, want 1", got)
	}
}

func checkWitnessed(t *testing.T, sub *witness.Submitter, p *witness.Policy, s interface{ LatestCheckpoint() *stele.Checkpoint }, size uint64, by string) {
	t.Helper()
	w := sub.Witnessed()
	if w == nil || w.Size != size {
		t.Fatalf("witnessed %+v, want size %d", w, size)
	}
	if _, err := stele.OpenCheckpoint(w.Note, p.Logs[0].Verifier); err != nil {
		t.Fatalf("cosigned note is not the log's checkpoint: %v", err)
	}
	got, err := p.Verify(w.Note)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	var names []string
	for _, c := range got.By {
		names = append(names, c.Witness)
	}
	if strings.Join(names, " ") != by {
		t.Fatalf("witnessed by %v, want %s", names, by)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	for _, mf := range mfs {
		if mf.GetName() == name {
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func counter(t *testing.T, reg *prometheus.Registry, name, witnessName, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["witness"] == witnessName && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestSubmitRefusals: each refusal of a witness comes back as its own
// error, so the submitter tells "this witness does not know us" from "this
// witness holds another history".
func TestSubmitRefusals(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	other := openStore(t, t.TempDir())
	c, vkey := newCosigner(t, "w.test")
	sv, err := witness.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp := grow(t, s, "a", 2)

	// Another key under the same origin: 403.
	knowsOther := newWitness(t, t.TempDir(), c, logVerifier(t, other))
	m := &witness.Member{Name: "w", Verifier: sv, URL: serve(t, knowsOther.w.Handler()).URL}
	if _, err := witness.Submit(ctx, http.DefaultClient, m, &witness.AddCheckpoint{Checkpoint: cp.Note}); !errors.Is(err, witness.ErrWitnessForbidden) {
		t.Fatalf("unknown key: %v", err)
	}
	// No log of this origin: 404.
	_, lv, _ := newLog(t, "elsewhere.test/log")
	knowsNone := newWitness(t, t.TempDir(), c, lv)
	m.URL = serve(t, knowsNone.w.Handler()).URL
	if _, err := witness.Submit(ctx, http.DefaultClient, m, &witness.AddCheckpoint{Checkpoint: cp.Note}); !errors.Is(err, witness.ErrWitnessUnknown) {
		t.Fatalf("unknown origin: %v", err)
	}
	// A cosignature by the witness's name and key id that does not verify.
	m.URL = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		good := newWitness(t, t.TempDir(), c, logVerifier(t, s))
		res := good.w.AddCheckpoint(r.Context(), mustRead(t, r))
		sigs, err := witness.ParseSignatureLines(res.Body)
		if err != nil {
			t.Error(err)
			return
		}
		raw := binary.BigEndian.AppendUint32(nil, sigs[0].Hash)
		raw = append(raw, sigs[0].Sig...)
		raw[len(raw)-1] ^= 1
		_, _ = w.Write([]byte("— " + sigs[0].Name + " " + base64.StdEncoding.EncodeToString(raw) + "\n"))
	})).URL
	if _, err := witness.Submit(ctx, http.DefaultClient, m, &witness.AddCheckpoint{Checkpoint: cp.Note}); !errors.Is(err, witness.ErrWitnessAnswer) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("bad cosignature: %v", err)
	}
}

func mustRead(t *testing.T, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Error(err)
	}
	return b
}
