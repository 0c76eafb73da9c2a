package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/stele/stele/privacy/keystore"
)

// keysRotateFlags are the flags of `stele keys rotate`: where the data
// directory and its current master key are, and the new key's file.
func keysRotateFlags() (*flag.FlagSet, *configFlags, *string) {
	fs := newFlagSet("keys rotate", "[--config FILE] [--data DIR] [--master-key-file FILE | Vault flags] --to-key-file FILE")
	cf := addConfigFlags(fs, "data", "master_key_file", "master_key", "vault_addr", "vault_token", "vault_key", "vault_mount")
	to := fs.String("to-key-file", "", "`file` of the new master key, created if missing (then point master_key_file at it)")
	return fs, cf, to
}

// runKeys rotates the keystore's master key: every live key is re-wrapped
// under the new master, and the files wrapped under the old one are
// deleted. The server must be stopped (the keystore is locked while it runs).
func runKeys(ctx context.Context, args []string) error {
	return verbCommand{
		name: "keys",
		verbs: []verbSpec{{"rotate", "re-wrap every key under a new master key and delete the old wrapping (server stopped)",
			func() *flag.FlagSet { fs, _, _ := keysRotateFlags(); return fs },
			func(args []string) error { return runKeysRotate(ctx, args) }}},
	}.run(args)
}

func runKeysRotate(ctx context.Context, args []string) error {
	fs, cf, to := keysRotateFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return usagef("keys rotate: --to-key-file is required")
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	if cfg.Keystore.Kind == "nats" {
		return errors.New("keys rotate: the keystore is a NATS KV bucket (keystore kind nats); rotating its master key is not built yet")
	}
	// A missing or empty directory has no keystore to rotate, and the
	// master key file would be created there for nothing.
	if _, err := os.Stat(filepath.Join(cfg.Data, "keystore")); err != nil {
		if err := requireDataDir(cfg.Data); err != nil {
			return err
		}
		return fmt.Errorf("%s holds no keystore (%s): nothing to rotate", cfg.Data, filepath.Join(cfg.Data, "keystore"))
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
