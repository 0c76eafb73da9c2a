package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
)

// checkpointSigner returns the signer configured by checkpoint_signer, or
// nil for the data directory's own key file. origin names it; a data
// directory that already has a verifier key pins the Transit key version
// whose public key that is, so rotating the key in Vault does not re-key the
// log.
func checkpointSigner(ctx context.Context, cfg Config, origin string) (logstore.CheckpointSigner, error) {
	if cfg.CheckpointSigner != "vault" {
		return nil, nil
	}
	if cfg.VaultAddr == "" || cfg.VaultToken == "" || cfg.VaultSigningKey == "" {
		return nil, errors.New("checkpoint_signer vault: vault_addr, vault_token (STELE_VAULT_TOKEN) and vault_signing_key are all needed")
	}
	pinned, err := logstore.LoadVerifierKey(cfg.Data)
	if errors.Is(err, os.ErrNotExist) {
		pinned = ""
	} else if err != nil {
		return nil, err
	}
	s, err := keystore.VaultTransitSigner(ctx, keystore.VaultConfig{Address: cfg.VaultAddr, Token: cfg.VaultToken, KeyName: cfg.VaultSigningKey, Mount: cfg.VaultMount}, origin, pinned)
	if err != nil {
		return nil, fmt.Errorf("checkpoint_signer vault: %w", err)
	}
	return s, nil
}
