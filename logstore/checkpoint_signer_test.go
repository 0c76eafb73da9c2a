package logstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/vaulttest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
)

// TestCheckpointSignerHeldInVault signs checkpoints with a Vault Transit key
// (through vaulttest.Transit, a TEST DOUBLE of Vault's Transit signing API
// with real Ed25519 keys: no Vault server can be installed here), so the data
// directory holds no private key.
func TestCheckpointSignerHeldInVault(t *testing.T) {
	ctx := context.Background()
	tr := vaulttest.New(t, "transit", "s.token")
	tr.CreateKey("checkpoints", "ed25519")
	tr.CreateKey("other", "ed25519")
	signer := func(key, name, pinned string) *keystore.TransitSigner {
		t.Helper()
		s, err := keystore.VaultTransitSigner(ctx, keystore.VaultConfig{Address: tr.URL, Token: "s.token", KeyName: key}, name, pinned)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir := t.TempDir()
	vs := signer("checkpoints", testOrigin, "")
	s, err := logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, CheckpointSigner: vs})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 10)
	if _, err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "checkpoint.skey")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keys/checkpoint.skey: %v, want none: the key is in Vault", err)
	}
	vkey, err := logstore.LoadVerifierKey(dir)
	if err != nil || vkey != vs.VerifierKey() {
		t.Fatalf("stored verifier key %q (%v), want the Transit key's %q", vkey, err, vs.VerifierKey())
	}
	rep, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{VerifierKey: vkey})
	if err != nil || rep.Records != 10 || rep.Latest.Size != 10 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if tr.Signs() < 2 {
		t.Fatalf("%d signatures by Vault, want the empty log's and size 10's", tr.Signs())
	}

	// Reopened with the signer pinned to the stored key, after a rotation.
	tr.Rotate("checkpoints")
	s, err = logstore.Open(ctx, dir, logstore.Options{Origin: testOrigin, CheckpointSigner: signer("checkpoints", testOrigin, vkey)})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 10, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := logstore.VerifyDir(ctx, dir, logstore.VerifyOptions{VerifierKey: vkey}); err != nil || rep.Latest.Size != 15 {
		t.Fatalf("verify after reopening: %+v, %v", rep, err)
	}

	for _, tc := range []struct {
		name string
		opts logstore.Options
		want string
	}{
		{"no-signer", logstore.Options{Origin: testOrigin}, "held elsewhere"},
		{"another-key", logstore.Options{Origin: testOrigin, CheckpointSigner: signer("other", testOrigin, "")}, "configured checkpoint signer's key"},
		{"latest-version", logstore.Options{Origin: testOrigin, CheckpointSigner: signer("checkpoints", testOrigin, "")}, "configured checkpoint signer's key"},
		{"another-name", logstore.Options{Origin: testOrigin, CheckpointSigner: signer("checkpoints", "other.example/log", "")}, "not the origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := logstore.Open(ctx, dir, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "keys", "checkpoint.skey")); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("a refused open created a key file")
			}
		})
	}
	t.Run("file-keyed-directory", func(t *testing.T) {
		fileDir := t.TempDir()
		s := openStore(t, fileDir)
		appendN(t, s, 0, 3)
		s.Close()
		_, err := logstore.Open(ctx, fileDir, logstore.Options{Origin: testOrigin, CheckpointSigner: signer("other", testOrigin, "")})
		if !errors.Is(err, stele.ErrBadCheckpoint) {
			t.Fatalf("open a file-keyed log with a Vault signer: %v, want ErrBadCheckpoint", err)
		}
	})
}
