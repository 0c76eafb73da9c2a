package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/stele/stele/privacy/keystore"
)

// runKeys rotates the keystore's master key: every live key is re-wrapped
// under the new master, and the files wrapped under the old one are
// deleted. The server must be stopped (the keystore is locked while it runs).
func runKeys(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "rotate" {
		return usagef("keys: want `stele keys rotate [--config FILE] [--data DIR] --to-key-file FILE`")
	}
	fs := newFlagSet("keys rotate", "[--config FILE] [--data DIR] --to-key-file FILE")
	cf := addConfigFlags(fs)
	to := fs.String("to-key-file", "", "`file` of the new master key, created if missing (then point master_key_file at it)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *to == "" {
		return usagef("keys rotate: --to-key-file is required")
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	lock, err := lockDataDir(cfg.Data)
	if err != nil {
		return err
	}
	defer lock.Close()
	from, err := masterKey(cfg)
	if err != nil {
		return fmt.Errorf("current master key: %w", err)
	}
	next, err := keystore.FileMaster(*to)
	if err != nil {
		return fmt.Errorf("new master key: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ks, err := keystore.Open(ctx, filepath.Join(cfg.Data, "keystore"), from, keystore.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer ks.Close()
	if err := ks.Rotate(ctx, next); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	fmt.Fprintf(os.Stderr, "keystore re-wrapped under %s (%d keys); set master_key_file to it before starting the server, then remove the old key file\n", *to, ks.Len())
	return nil
}
