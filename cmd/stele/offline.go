package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
)

// stoppedDir is a stopped server's data directory opened for reading: its
// lock held, its log open and the index brought up to date with it.
type stoppedDir struct {
	store *logstore.Store
	ix    *index.Index
	vkey  string
	// guard is the directory's privacy layer, nil without a keystore.
	guard *privacy.Guard
}

// openStopped opens cfg.Data for a command that reads a stopped server's
// directory. Opening the log may recover a torn tail, which only its one
// writer may do, so the directory's lock is taken; lockHint says what to
// do instead while a server holds it. release closes everything.
func openStopped(ctx context.Context, cfg Config, logger *slog.Logger, lockHint string) (d *stoppedDir, release func(), err error) {
	data := cfg.Data
	if _, err := os.Stat(filepath.Join(data, "records.log")); err != nil {
		return nil, nil, fmt.Errorf("%s is not a Stele data directory: %w", data, err)
	}
	var undo []func()
	closeAll := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	lock, err := lockDataDir(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (%s)", err, lockHint)
	}
	undo = append(undo, func() { lock.Close() })
	vkey, err := logstore.LoadVerifierKey(data)
	if err != nil {
		return nil, nil, err
	}
	// The log refuses to open under another origin than its key's, so the
	// origin comes from the key rather than from configuration.
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("verifier key in %s: %w", data, err)
	}
	ix, err := openIndex(data, logger)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { ix.Close() })
	sealer, batches, closeSealer, err := offlineSealer(ctx, cfg, v.Name(), logger)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, closeSealer)
	signer, err := checkpointSigner(ctx, cfg, v.Name())
	if err != nil {
		return nil, nil, err
	}
	store, err := logstore.Open(ctx, data, logstore.Options{Origin: v.Name(), Hook: ix, Sealer: sealer, BatchSealer: batches, Logger: logger, CheckpointSigner: signer, Lock: lock})
	switch {
	case errors.Is(err, logstore.ErrIndexAhead):
		return nil, nil, fmt.Errorf("%w: run `stele reindex --data %s` first", err, data)
	case errors.Is(err, logstore.ErrTampered):
		return nil, nil, fmt.Errorf("%w; run `stele verify --data %s` to find the first bad seq", err, data)
	case err != nil:
		return nil, nil, fmt.Errorf("open log in %s: %w", data, err)
	}
	undo = append(undo, func() { store.Close() })
	guard, _ := sealer.(*privacy.Guard)
	return &stoppedDir{store: store, ix: ix, vkey: vkey, guard: guard}, closeAll, nil
}
