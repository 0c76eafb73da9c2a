package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/internal/vaulttest"
)

// These tests run against vaulttest.Transit, a TEST DOUBLE of Vault's
// Transit signing API (no Vault server can be installed here), which signs
// with real Ed25519 keys.

const signOrigin = "stele.example/log"

func TestVaultTransitSignerTestDoubleSignsNotes(t *testing.T) {
	ctx := context.Background()
	tr := vaulttest.New(t, "transit", "s.goodtoken")
	tr.CreateKey("checkpoints", "ed25519")
	s, err := VaultTransitSigner(ctx, VaultConfig{Address: tr.URL, Token: "s.goodtoken", KeyName: "checkpoints"}, signOrigin, "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := note.NewEd25519VerifierKey(signOrigin, tr.PublicKey("checkpoints", 1))
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != want || s.Name() != signOrigin || s.Version() != 1 {
		t.Fatalf("signer: key %q version %d, want %q version 1", s.VerifierKey(), s.Version(), want)
	}
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != s.KeyHash() {
		t.Fatalf("key hash %08x, verifier's %08x", s.KeyHash(), v.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: signOrigin + "\n7\nAAAA\n"}, s.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("a note signed through Vault does not open with the verifier key: %v", err)
	}
	if tr.Signs() != 1 {
		t.Fatalf("%d sign calls, want 1", tr.Signs())
	}

	// Rotation in Vault does not move a log off its key: pinned to the
	// verifier key it has, the signer keeps signing with version 1.
	tr.Rotate("checkpoints")
	pinned, err := VaultTransitSigner(ctx, VaultConfig{Address: tr.URL, Token: "s.goodtoken", KeyName: "checkpoints"}, signOrigin, want)
	if err != nil {
		t.Fatal(err)
	}
	if pinned.Version() != 1 || pinned.VerifierKey() != want {
		t.Fatalf("pinned signer uses version %d", pinned.Version())
	}
	if _, err := pinned.Sign([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	fresh, err := VaultTransitSigner(ctx, VaultConfig{Address: tr.URL, Token: "s.goodtoken", KeyName: "checkpoints"}, signOrigin, "")
	if err != nil || fresh.Version() != 2 || fresh.VerifierKey() == want {
		t.Fatalf("unpinned signer after rotation: version %d, %v; want version 2", fresh.Version(), err)
	}
}

func TestVaultTransitSignerTestDoubleRefusals(t *testing.T) {
	ctx := context.Background()
	tr := vaulttest.New(t, "transit", "s.goodtoken")
	tr.CreateKey("checkpoints", "ed25519")
	tr.CreateKey("wrapping", "aes256-gcm96")
	cfg := func(key, token string) VaultConfig {
		return VaultConfig{Address: tr.URL, Token: token, KeyName: key}
	}

	if _, err := VaultTransitSigner(ctx, cfg("wrapping", "s.goodtoken"), signOrigin, ""); err == nil || !strings.Contains(err.Error(), `type "aes256-gcm96"`) || !strings.Contains(err.Error(), "type=ed25519") {
		t.Errorf("a key of another type: %v", err)
	}
	var ve *VaultError
	if _, err := VaultTransitSigner(ctx, cfg("missing", "s.goodtoken"), signOrigin, ""); !errors.As(err, &ve) || ve.StatusCode != 404 || ve.Op != "read key" {
		t.Errorf("a missing key: %v", err)
	}
	const secret = "s.SECRET-token-value"
	if _, err := VaultTransitSigner(ctx, cfg("checkpoints", secret), signOrigin, ""); !errors.As(err, &ve) || ve.StatusCode != 403 || strings.Contains(err.Error(), secret) {
		t.Errorf("a bad token: %v", err)
	}
	// A log signed with another key is not silently re-keyed.
	_, other, err := note.GenerateKey(rand.Reader, signOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VaultTransitSigner(ctx, cfg("checkpoints", "s.goodtoken"), signOrigin, other); err == nil || !strings.Contains(err.Error(), "none of its versions [1]") {
		t.Errorf("pinned to another key: %v", err)
	}

	s, err := VaultTransitSigner(ctx, cfg("checkpoints", "s.goodtoken"), signOrigin, "")
	if err != nil {
		t.Fatal(err)
	}
	// The token revoked while running: the sign fails with Vault's 403.
	tr.SetToken("s.rotated")
	if _, err := s.Sign([]byte("m\n")); !errors.As(err, &ve) || ve.StatusCode != 403 || ve.Op != "sign" || strings.Contains(err.Error(), "s.goodtoken") {
		t.Errorf("sign with a revoked token: %v", err)
	}
	tr.SetToken("s.goodtoken")
	// The key replaced behind the signer's back: Vault's signature no
	// longer verifies under the pinned public key, and is refused.
	tr.CreateKey("checkpoints", "ed25519")
	if _, err := s.Sign([]byte("m\n")); !errors.Is(err, ErrBadSignature) {
		t.Errorf("sign by a replaced key: %v, want ErrBadSignature", err)
	}
	// A cancelled context stops the call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.WithContext(cctx).Sign([]byte("m\n")); !errors.Is(err, context.Canceled) {
		t.Errorf("sign with a cancelled context: %v", err)
	}
}
