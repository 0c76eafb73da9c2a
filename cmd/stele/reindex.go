package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
)

const reindexUsage = `[--config FILE] [--data DIR]

Rebuild the index of a stopped server's data directory from its log: the old
index is set aside, a fresh one is filled by replaying every record, and the
old one is removed once that succeeded (restored if it failed). The log
itself is only read.`

func runReindex(ctx context.Context, args []string) error {
	fs := newFlagSet("reindex", reindexUsage)
	cf := addConfigFlags(fs, "data", "log_level", "master_key_file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	return reindex(ctx, cfg, logger, stderrProgress("reindexing", "records", 1), os.Stdout)
}

func reindex(ctx context.Context, cfg Config, logger *slog.Logger, pr *progress, stdout io.Writer) error {
	data := cfg.Data
	if _, err := os.Stat(filepath.Join(data, "records.log")); err != nil {
		return fmt.Errorf("%s is not a Stele data directory: %w", data, err)
	}
	lock, err := lockDataDir(data)
	if err != nil {
		return err
	}
	defer lock.Close()
	// The log refuses to open under another origin than its key's, so take
	// the origin from the key rather than from configuration.
	vkey, err := logstore.LoadVerifierKey(data)
	if err != nil {
		return err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("verifier key in %s: %w", data, err)
	}

	dir := filepath.Join(data, "index")
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = filepath.Join(data, "index.old-"+strconv.FormatInt(time.Now().Unix(), 10))
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("set the old index aside: %w", err)
		}
	}
	restore := func(cause error) error {
		if rerr := os.RemoveAll(dir); rerr != nil {
			return fmt.Errorf("%w (removing the partial index also failed: %w; the old one is in %s)", cause, rerr, old)
		}
		if old != "" {
			if rerr := os.Rename(old, dir); rerr != nil {
				return fmt.Errorf("%w (restoring the old index from %s also failed: %w)", cause, old, rerr)
			}
		}
		return cause
	}

	start := time.Now()
	ix, err := index.Open(dir, logger)
	if err != nil {
		return restore(fmt.Errorf("create index: %w", err))
	}
	hook := &countingHook{Index: ix, total: approxRecords(data)}
	if pr != nil {
		hook.progress = func(n, total uint64) { pr.update(int64(n), int64(total)) }
	}
	sealer, batches, closeSealer, err := offlineSealer(ctx, cfg, v.Name(), logger)
	if err != nil {
		ix.Close()
		return restore(err)
	}
	defer closeSealer()
	signer, err := checkpointSigner(ctx, cfg, v.Name())
	if err != nil {
		ix.Close()
		return restore(err)
	}
	// Opening the log replays every record the (empty) index has not seen.
	store, err := logstore.Open(ctx, data, logstore.Options{Origin: v.Name(), Hook: hook, Sealer: sealer, BatchSealer: batches, Logger: logger, CheckpointSigner: signer, Lock: lock})
	pr.finish()
	if err != nil {
		ix.Close()
		if errors.Is(err, logstore.ErrTampered) {
			err = fmt.Errorf("%w; run `stele verify --data %s` to find the first bad seq", err, data)
		}
		return restore(fmt.Errorf("replay the log: %w", err))
	}
	n := store.Size()
	if err := store.Close(); err != nil {
		ix.Close()
		return restore(fmt.Errorf("close log: %w", err))
	}
	if err := ix.Close(); err != nil {
		return restore(fmt.Errorf("close index: %w", err))
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			logger.Warn("the new index is in place, but the old one could not be removed", "dir", old, "err", err)
		}
	}
	fmt.Fprintf(stdout, "reindexed %d records in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// countingHook reports replay progress while passing everything through.
type countingHook struct {
	*index.Index
	n        uint64
	total    uint64
	progress func(n, total uint64)
}

func (h *countingHook) ApplyPrepared(first uint64, entries [][]byte) error {
	if err := h.Index.ApplyPrepared(first, entries); err != nil {
		return err
	}
	h.n += uint64(len(entries))
	if h.progress != nil {
		h.progress(h.n, max(h.total, h.n))
	}
	return nil
}

// approxRecords estimates the log size from records.idx (8 bytes a record)
// for the progress line; recovery may correct it.
func approxRecords(data string) uint64 {
	st, err := os.Stat(filepath.Join(data, "records.idx"))
	if err != nil {
		return 0
	}
	return uint64(st.Size() / 8)
}
