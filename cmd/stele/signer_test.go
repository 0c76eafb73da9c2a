package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stele/stele/internal/vaulttest"
	"github.com/stele/stele/logstore"
)

// TestCheckpointSignerFromConfig wires checkpoint_signer: vault from the
// YAML file and the environment to a Vault Transit key, against
// vaulttest.Transit, a TEST DOUBLE of Vault's Transit signing API (no Vault
// server can be installed here) that signs with real Ed25519 keys.
func TestCheckpointSignerFromConfig(t *testing.T) {
	tr := vaulttest.New(t, "transit", "s.token")
	tr.CreateKey("stele-checkpoints", "ed25519")
	data := t.TempDir()
	path := filepath.Join(t.TempDir(), "stele.yaml")
	yaml := "data: " + data + "\norigin: cli.test/log\ncheckpoint_signer: vault\nvault_addr: " + tr.URL + "\nvault_signing_key: stele-checkpoints\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(env map[string]string) (Config, error) {
		fs := newFlagSet("serve", "")
		cf := addConfigFlags(fs)
		if err := fs.Parse([]string{"--config", path}); err != nil {
			t.Fatal(err)
		}
		return cf.load(func(k string) string { return env[k] })
	}
	cfg, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpointSigner(context.Background(), cfg, cfg.Origin); err == nil || !strings.Contains(err.Error(), "vault_token") {
		t.Fatalf("no token: %v, want the missing setting named", err)
	}
	cfg, err = load(map[string]string{"STELE_VAULT_TOKEN": "s.token"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := checkpointSigner(context.Background(), cfg, cfg.Origin)
	if err != nil || s == nil || s.Name() != "cli.test/log" {
		t.Fatalf("signer: %v, %v", s, err)
	}
	store, err := logstore.Open(context.Background(), data, logstore.Options{Origin: cfg.Origin, CheckpointSigner: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// After a rotation in Vault the data directory's key pins version 1.
	tr.Rotate("stele-checkpoints")
	s2, err := checkpointSigner(context.Background(), cfg, cfg.Origin)
	if err != nil {
		t.Fatal(err)
	}
	if s2.VerifierKey() != s.VerifierKey() {
		t.Fatalf("signer after rotation: key %q, want %q", s2.VerifierKey(), s.VerifierKey())
	}
	// The default is the key file: no signer.
	cfg.CheckpointSigner = ""
	if s, err := checkpointSigner(context.Background(), cfg, cfg.Origin); s != nil || err != nil {
		t.Fatalf("default: %v, %v; want the key file", s, err)
	}
	if _, err := load(map[string]string{"STELE_CHECKPOINT_SIGNER": "kms"}); err == nil || !strings.Contains(err.Error(), "want file or vault") {
		t.Fatalf("STELE_CHECKPOINT_SIGNER=kms: %v", err)
	}
}

func TestMasterKeyInData(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Data: data}, true},
		{Config{Data: data, MasterKeyFile: filepath.Join(data, "keys", "m.key")}, true},
		{Config{Data: data, MasterKeyFile: filepath.Join(data, "..", filepath.Base(data)+"-keys", "m.key")}, false},
		{Config{Data: data, MasterKeyFile: "/etc/stele/master.key"}, false},
		{Config{Data: data, MasterKey: "x"}, false},
		{Config{Data: data, VaultAddr: "http://v", VaultKey: "k"}, false},
	} {
		if _, got := masterKeyInData(tc.cfg); got != tc.want {
			t.Errorf("%+v: inside %v, want %v", tc.cfg.MasterKeyFile, got, tc.want)
		}
	}
}
