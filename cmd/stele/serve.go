package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stele/stele/api"
	"github.com/stele/stele/api/graphql"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/cluster"
	"github.com/stele/stele/deadletter"
	"github.com/stele/stele/export"
	"github.com/stele/stele/follow"
	"github.com/stele/stele/index"
	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/gctune"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
	"github.com/stele/stele/ui"
)

// shutdownTimeout bounds how long in-flight requests may run after a
// signal; appends waiting on fsync finish well within it.
const shutdownTimeout = 15 * time.Second

func runServe(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", "[--config FILE] [--data DIR] [--addr HOST:PORT] [--origin ORIGIN] [--addr-file FILE] [--source URL ...]")
	cf := addConfigFlags(fs)
	addrFile := fs.String("addr-file", "", "after listening, write the actual listen address to this `file` (useful with --addr 127.0.0.1:0)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	return serve(ctx, cfg, *addrFile, logger)
}

// health is the server's health as /healthz reports it; it changes once,
// from "verifying" to "ok" or "tampered", when the start-up check ends.
type health struct {
	v atomic.Pointer[[2]string]
}

func newHealth(status, detail string) *health {
	h := &health{}
	h.set(status, detail)
	return h
}

func (h *health) set(status, detail string) { h.v.Store(&[2]string{status, detail}) }

func (h *health) get() (string, string) {
	v := h.v.Load()
	return v[0], v[1]
}

func serve(ctx context.Context, cfg Config, addrFile string, logger *slog.Logger) (err error) {
	gctune.LimitMemory(ctx, cfg.MemoryLimit)
	created := !exists(cfg.Data)
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDataDir(cfg.Data)
	if err != nil {
		return err
	}
	defer lock.Close()
	// A refused start leaves no directory behind that it created for
	// nothing (runs before the lock is released).
	defer func() { cleanupRefused(cfg.Data, created, err, logger) }()
	tokens, err := auth.Open(cfg.Data)
	if err != nil {
		return err
	}
	if err := requireTokensOffLoopback(cfg.Addr, cfg.Data, tokens, cfg.TLSClientRoles != nil, logger); err != nil {
		return err
	}
	tlsCfg, err := newTLSReloader(cfg, logger)
	if err != nil {
		return err
	}
	if err := requireTLSOffLoopback(cfg, tlsCfg != nil, logger); err != nil {
		return err
	}
	priv, err := openPrivacy(ctx, cfg, logger)
	if err != nil {
		return fmt.Errorf("open the keystore and schema registry: %w", err)
	}
	defer priv.Close()

	ix, err := openIndex(cfg.Data, logger)
	if err != nil {
		return err
	}
	signer, err := checkpointSigner(ctx, cfg, cfg.Origin)
	if err != nil {
		ix.Close()
		return err
	}
	// Every durable batch is sealed with a key the data directory alone
	// does not give (it is wrapped by the master key), and recovery adopts
	// past the latest checkpoint only batches sealed so.
	batches, err := keystore.NewBatchMAC(ctx, priv.keys, cfg.Origin)
	if err != nil {
		ix.Close()
		return err
	}
	logOpts := logstore.Options{Origin: cfg.Origin, Hook: ix, Sealer: priv.guard, BatchSealer: batches, Logger: logger, CheckpointInterval: cfg.CheckpointInterval, CheckpointSigner: signer, Lock: lock}
	clustered := cfg.Cluster.URLs != ""
	if clustered {
		// The node's copy holds the writer's batches as they are; each came
		// with the writer's signed checkpoint, and a batch the disk alone
		// added is caught when the copy resumes against the log stream, so
		// the per-node batch MAC would only make the copies differ.
		logOpts.Replica, logOpts.BatchSealer = true, nil
	}
	store, err := logstore.Open(ctx, cfg.Data, logOpts)
	if errors.Is(err, logstore.ErrIndexAhead) || errors.Is(err, index.ErrCorrupt) {
		ix.Close()
		if ix, err = setIndexAside(cfg.Data, err, logger); err != nil {
			return err
		}
		logOpts.Hook = ix
		store, err = logstore.Open(ctx, cfg.Data, logOpts)
	}
	if errors.Is(err, logstore.ErrTampered) {
		ix.Close()
		logger.Error("the stored log failed verification; serving only the reason until an operator intervenes", "err", err)
		return listenAndServe(ctx, cfg, addrFile, logger, tamperedHandler(cfg.Data, err.Error()), tlsCfg)
	}
	if err != nil {
		ix.Close()
		return fmt.Errorf("open log in %s: %w", cfg.Data, err)
	}
	// From here on, damage the index finds in itself (a corrupt block, a
	// malformed value) sets it aside and rebuilds it from the log while
	// the server runs; queries answer 503 meanwhile.
	ix.RebuildFrom(indexRebuilder(store, priv.guard))
	defer func() {
		// The final checkpoint is signed here, after the last append.
		if err := store.Close(); err != nil {
			logger.Error("close log", "err", err)
		}
		if err := ix.Close(); err != nil {
			logger.Error("close index", "err", err)
		}
	}()

	// Writers (the API, sources, receipts) append through logw: the store
	// itself on one machine, the cluster on a cluster node.
	var logw writableLog = store
	var node *cluster.Node
	if clustered {
		var stopCluster func()
		if node, stopCluster, err = startCluster(ctx, cfg, store, ix, priv.guard, logger); err != nil {
			return err
		}
		// Runs before the log closes (defers run last first).
		defer stopCluster()
		logw = clusterLog{store, node}
	}
	h := newHealth(api.StatusVerifying, "checking the stored log against its tree and checkpoints")
	verifyCtx, stopVerify := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { verifyAtStart(verifyCtx, cfg.Data, store.Size(), h, logger) })
	defer wg.Wait()
	defer stopVerify()

	dead := deadletter.Open(filepath.Join(cfg.Data, "deadletter", "records.jsonl"), priv.guard, priv.guard, logger)
	ledger := privacy.NewLedger(priv.guard, logw, ix)
	ledger.PurgeCopiesWith(dead)
	bg, stopBg := context.WithCancel(ctx)
	defer wg.Wait()
	defer stopBg()
	wg.Go(func() { ledger.RunRetention(bg, cfg.RetentionInterval) })
	wg.Go(func() { recordTokenChanges(bg, logw, tokens, logger, 5*time.Second) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every reader of the log reports its lag in the same shape; the index,
	// fed by the store from memory, reports its position alongside.
	follows := follow.NewMetrics(nil)
	reg.MustRegister(follows)
	defer follows.Observe("index", store, store.Indexed)()
	if node != nil {
		reg.MustRegister(clusterCollector{node})
	}
	engine := query.New(store, ix)
	apiCfg := api.Config{
		Log:           logw,
		Query:         engine,
		Exporter:      export.New(store, engine),
		Health:        clusterHealth(h.get, node),
		Logger:        logger,
		Registry:      reg,
		MaxBodyBytes:  cfg.MaxBodyBytes,
		MaxBatch:      cfg.MaxBatch,
		Auth:          tokens,
		Privacy:       apiPrivacy{priv.guard, ledger},
		Schemas:       priv.schemas,
		DeadLetters:   deadLetterReplay{dead, logw, priv.guard},
		FollowMetrics: follows,
		UI:            ui.New(),
	}
	if cfg.WitnessPolicy != "" {
		sub, err := newSubmitter(cfg, store, reg, logger)
		if err != nil {
			return err
		}
		wg.Go(func() { sub.Run(bg) })
		apiCfg.Witnessed = sub.Witnessed
	}
	apiCfg.GraphQL = graphql.New(graphql.Options{Log: store, Query: engine, Logger: logger, Witnessed: apiCfg.Witnessed})
	if cfg.TLSClientRoles != nil {
		// Only when set: a nil *CertRoles in the interface would not be nil.
		apiCfg.ClientCerts = cfg.TLSClientRoles
	}
	projections, stopProjections, err := startProjections(ctx, cfg, store, follows, logger)
	if err != nil {
		return err
	}
	// Runs before the log closes (defers run last first).
	defer stopProjections()
	if projections != nil {
		apiCfg.Projections = projections
	}
	if !cfg.Stream.Disabled {
		_, apiCfg.StreamSubjects = lineagePlace(cfg)
	}
	handler := api.New(apiCfg)
	var lead func() bool
	if node != nil {
		lead = node.Leader
	}
	stopStream, err := startStream(cfg, store, reg, follows, logger, lead)
	if err != nil {
		return fmt.Errorf("start lineage stream: %w", err)
	}
	defer stopStream()
	defer startSources(ctx, cfg, indexedSink{store, logw, ix, dead}, reg, logger)()
	logger.Info("log open", "data", cfg.Data, "records", store.Size(), "origin", cfg.Origin, "verifier_key", store.Keys().VerifierKey)
	return listenAndServe(ctx, cfg, addrFile, logger, handler, tlsCfg)
}

// verifyAtStart checks the records that existed at start-up, while the
// server already answers: a large log takes a while, and reads and writes
// need not wait, but /healthz says "verifying" until it is done.
func verifyAtStart(ctx context.Context, dir string, size uint64, h *health, logger *slog.Logger) {
	if size == 0 {
		// Nothing to check; verifying "all" of an empty log would race with
		// the first appends.
		h.set(api.StatusOK, "")
		return
	}
	start := time.Now()
	rep, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{Size: size})
	switch {
	case err == nil:
		h.set(api.StatusOK, "")
		logger.Info("stored log verified", "records", rep.Records, "bytes", rep.Bytes, "elapsed", time.Since(start).Round(time.Millisecond))
	case ctx.Err() != nil:
		// Shutting down before the check finished.
	default:
		h.set(api.StatusTampered, err.Error())
		logger.Error("the stored log failed verification; reads and appends are refused", "err", err)
	}
}

// openIndex opens the index, setting a damaged one aside: it is derived
// data, and the log's catch-up rebuilds a fresh one.
func openIndex(data string, logger *slog.Logger) (*index.Index, error) {
	dir := filepath.Join(data, "index")
	ix, err := index.Open(dir, logger)
	if err == nil {
		return ix, nil
	}
	return setIndexAside(data, err, logger)
}

// setIndexAside moves an unusable index out of the way and opens a fresh one.
func setIndexAside(data string, err error, logger *slog.Logger) (*index.Index, error) {
	dir := filepath.Join(data, "index")
	aside, rerr := index.SetAside(dir)
	if rerr != nil {
		return nil, fmt.Errorf("open index: %w (and %w)", err, rerr)
	}
	logger.Warn("index cannot be opened; set it aside and rebuilding it from the log", "err", err, "moved_to", aside)
	ix, err := index.Open(dir, logger)
	if err != nil {
		return nil, fmt.Errorf("open fresh index: %w", err)
	}
	return ix, nil
}

// rederiver gives a record read back from the log its derived
// personal-data entries (privacy's Rederive), which the index needs.
type rederiver interface {
	Rederive(ctx context.Context, r *record.Record) error
}

// indexRebuilder replays the log into a fresh index the way the log's
// catch-up at open does: records decoded in order, their personal-data
// entries re-derived, in batches.
func indexRebuilder(store *logstore.Store, priv rederiver) index.Rebuilder {
	return func(ctx context.Context, n uint64, apply func([]*record.Record) error) error {
		return store.Replay(ctx, 0, n, 4096, func(recs []*record.Record) error {
			for _, r := range recs {
				if err := priv.Rederive(ctx, r); err != nil {
					return fmt.Errorf("index seq %d: %w", r.Seq, err)
				}
			}
			return apply(recs)
		})
	}
}

// listenAndServe serves handler on cfg.Addr, over TLS when tlsCfg is set
// (whose files SIGHUP reloads).
func listenAndServe(ctx context.Context, cfg Config, addrFile string, logger *slog.Logger, handler http.Handler, tlsCfg *tlsReloader) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr().String()
	if addrFile != "" {
		if err := atomicfile.Write(addrFile, []byte(addr+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("write --addr-file: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A 16 MiB batch on a slow link needs time; a stuck client must not
		// hold a connection forever.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.serverConfig()
		defer tlsCfg.reloadOnHangup(ctx)()
	}
	if cs, ok := handler.(interface{ CloseStreams() }); ok {
		// Live streams never go idle; end them so Shutdown need not wait.
		srv.RegisterOnShutdown(cs.CloseStreams)
	}
	if cfg.TLSClientRoles == nil {
		warnIfOpen(cfg.Data, addr, logger)
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	logger.Info("listening", "addr", addr, "url", scheme+"://"+addr, "client_certificates", cfg.TLSClientRoles != nil)
	errc := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			// The certificate comes from TLSConfig.
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("requests still running at the shutdown deadline were cut off", "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// tamperedHandler serves a data directory that failed verification at open:
// no record is served as evidence, but operators and monitors see why, and
// auditors can still fetch the verifier key and the last signed checkpoint.
func tamperedHandler(data, detail string) http.Handler {
	mux := http.NewServeMux()
	unavailable := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(v)
	}
	type errorBody struct {
		Error string `json:"error"`
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		unavailable(w, struct {
			Status string `json:"status"`
			Detail string `json:"detail"`
		}{api.StatusTampered, detail})
	})
	mux.HandleFunc("GET /v1/log/key", func(w http.ResponseWriter, r *http.Request) {
		key, err := logstore.LoadVerifierKey(data)
		if err != nil {
			unavailable(w, errorBody{"verifier key unavailable: " + err.Error()})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(key + "\n"))
	})
	mux.HandleFunc("GET /v1/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		cp, err := logstore.LatestCheckpointInDir(data)
		if err != nil {
			unavailable(w, errorBody{"no trustworthy checkpoint: " + err.Error()})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(cp.Note)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		unavailable(w, errorBody{"log failed verification: " + detail})
	})
	return mux
}

// lockDataDir takes the log's lock on <data>/LOCK for a command that does
// more than open the log while holding it (the keystore, the index, a
// reindex): a second server cannot open the same log, as two writers
// would interleave frames. The command passes it to logstore.Open in
// Options.Lock. It is released when the process exits, however it exits.
func lockDataDir(data string) (*logstore.DirLock, error) {
	return logstore.LockDir(nil, data)
}

// deadLetterReplay is the dead-letter file as the API sees it: replays go
// to the log through the privacy layer, like any captured record.
type deadLetterReplay struct {
	*deadletter.Store
	log    deadletter.Appender
	opener deadletter.Opener
}

func (d deadLetterReplay) Replay(ctx context.Context) (*deadletter.ReplayResult, error) {
	return d.Store.Replay(ctx, d.log, d.opener)
}

// writableLog is the log as the server's writers use it (the API, erasure
// and retention, dead-letter replays): a *logstore.Store on one machine, a
// clusterLog on a cluster node.
type writableLog interface {
	api.Log
	privacy.Log
}

// clusterHealth adds a cluster node's state to the server's: a node whose
// copy diverged from the replicated log serves nothing but the reason.
func clusterHealth(h api.HealthFunc, node *cluster.Node) api.HealthFunc {
	if node == nil {
		return h
	}
	return func() (string, string) {
		if err := node.Err(); err != nil {
			return api.StatusTampered, err.Error()
		}
		return h()
	}
}
