package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/witness"
)

// newSubmitter reads the server's witness policy and makes the submitter
// that gets each checkpoint cosigned.
func newSubmitter(cfg Config, store *logstore.Store, reg prometheus.Registerer, logger *slog.Logger) (*witness.Submitter, error) {
	p, err := readPolicy(cfg.WitnessPolicy)
	if err != nil {
		return nil, err
	}
	if len(p.Logs) > 0 {
		found := false
		for _, l := range p.Logs {
			found = found || strings.TrimSpace(l.VerifierKey) == store.Keys().VerifierKey
		}
		if !found {
			return nil, fmt.Errorf("witness_policy %s: its log lines do not name this log's key %s", cfg.WitnessPolicy, store.Keys().VerifierKey)
		}
	}
	return witness.NewSubmitter(witness.SubmitterConfig{Policy: p, Log: store, Timeout: cfg.WitnessTimeout,
		Registry: reg, Logger: logger.With("component", "witness-submitter")})
}

func readPolicy(path string) (*witness.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	p, err := witness.ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("witness policy %s: %w", path, err)
	}
	return p, nil
}

const witnessUsage = `--data DIR --name NAME --log VKEY [--log VKEY ...] [--listen ADDR]

Serve C2SP tlog-witness (POST /add-checkpoint) for the logs whose verifier
keys are given: cosign each checkpoint only when its signature verifies and
it is consistent with the latest one cosigned for its origin, which is kept
in DIR/logs/ (atomically replaced, fsync'd, before the answer). Every
refused checkpoint the log signed is kept in DIR/evidence/ with the
checkpoint held; a split view (same size with another root, or no valid
consistency proof) is logged as SPLIT VIEW and counted in
stele_witness_split_view_total on /metrics.

The witness key is DIR/witness.key, made on first start under --name; its
verifier key, for the logs' policies, is printed at start and kept in
DIR/witness.vkey.`

type logKeys []string

func (l *logKeys) String() string     { return strings.Join(*l, ",") }
func (l *logKeys) Set(v string) error { *l = append(*l, v); return nil }

func runWitness(ctx context.Context, args []string) error {
	fs := newFlagSet("witness", witnessUsage)
	data := fs.String("data", "", "witness state `directory`")
	name := fs.String("name", "", "the witness's `name` (a schema-less URL), for its key on first start")
	listen := fs.String("listen", "127.0.0.1:8390", "`address` to serve on")
	var logs logKeys
	fs.Var(&logs, "log", "verifier `key` of a log to witness (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" || len(logs) == 0 {
		return usagef("--data and at least one --log are required")
	}
	var verifiers []note.Verifier
	for _, k := range logs {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return usagef("--log %q: %v", k, err)
		}
		verifiers = append(verifiers, v)
	}
	c, err := loadOrCreateWitnessKey(*data, *name)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("component", "witness")
	reg := prometheus.NewRegistry()
	w, err := witness.New(witness.Config{Dir: *data, Signer: c, Logs: verifiers, Registry: reg, Logger: logger})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/add-checkpoint", w.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(os.Stdout, "witness %s on http://%s\nverifier key: %s\n", c.Name(), ln.Addr(), c.VerifierKey())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadOrCreateWitnessKey keeps the witness key in the state directory: a
// witness that loses its key must be retired, not re-keyed in silence.
func loadOrCreateWitnessKey(dir, name string) (*witness.Cosigner, error) {
	path := filepath.Join(dir, "witness.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if name == "" {
			return nil, usagef("no witness key in %s yet: --name is required to make one", dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		skey, vkey, err := witness.GenerateKey(nil, name)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write witness key: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(dir, "witness.vkey"), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("write witness verifier key: %w", err)
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, fmt.Errorf("read witness key: %w", err)
	}
	c, err := witness.NewCosigner(string(b), nil)
	if err != nil {
		return nil, fmt.Errorf("witness key %s: %w", path, err)
	}
	if name != "" && c.Name() != name {
		return nil, fmt.Errorf("witness key %s is named %q, not --name %q", path, c.Name(), name)
	}
	return c, nil
}
