package logstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/vfs"
)

// Keys holds the checkpoint signing key and its public verifier key.
type Keys struct {
	Signer      note.Signer
	Verifier    note.Verifier
	VerifierKey string
}

const (
	signerKeyFile   = "checkpoint.skey"
	verifierKeyFile = "checkpoint.vkey"
)

// CheckpointSigner is a checkpoint signing key held outside the data
// directory (a KMS such as Vault Transit, keystore.TransitSigner), so that a
// copy of the directory is not enough to sign checkpoints. It is defined
// here, by its consumer.
type CheckpointSigner interface {
	note.Signer
	// VerifierKey is the signer's public key in note format.
	VerifierKey() string
}

// contextSigner is a signer whose calls can be bounded by a context (one
// that goes over the network).
type contextSigner interface {
	WithContext(ctx context.Context) note.Signer
}

// signerFor binds s to ctx when it can be.
func signerFor(ctx context.Context, s note.Signer) note.Signer {
	if cs, ok := s.(contextSigner); ok {
		return cs.WithContext(ctx)
	}
	return s
}

// loadOrCreateKeys returns the checkpoint keys: ext when one is configured,
// else the data directory's own key, created named origin on first start.
// A key made for another origin is an error: silently re-keying would
// orphan every earlier checkpoint.
func loadOrCreateKeys(fsys vfs.FS, dir, origin string, ext CheckpointSigner, logger *slog.Logger) (*Keys, error) {
	if ext != nil {
		return externalKeys(fsys, dir, origin, ext, logger)
	}
	kdir := filepath.Join(dir, "keys")
	skeyPath := filepath.Join(kdir, signerKeyFile)
	skey, err := vfs.ReadFile(fsys, skeyPath)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := loadVerifierKey(fsys, dir); err == nil {
			// Creating a key now would re-key the log; a key held outside
			// the directory (checkpoint_signer) is the likely reason.
			return nil, fmt.Errorf("data directory %s has a verifier key but no %s: its signing key is held elsewhere (checkpoint_signer: vault) or was removed; configure that signer", dir, filepath.Join("keys", signerKeyFile))
		}
		if err := fsys.MkdirAll(kdir, 0o700); err != nil {
			return nil, fmt.Errorf("create key directory: %w", err)
		}
		s, v, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return nil, fmt.Errorf("generate checkpoint key: %w", err)
		}
		if err := atomicfile.WriteSync(fsys, skeyPath, []byte(s+"\n"), 0o600, atomicfile.Exclusive); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteSync(fsys, filepath.Join(kdir, verifierKeyFile), []byte(v+"\n"), 0o644, atomicfile.Exclusive); err != nil {
			return nil, err
		}
		if err := vfs.SyncDir(fsys, kdir); err != nil {
			return nil, err
		}
		skey = []byte(s)
	} else if err != nil {
		return nil, fmt.Errorf("read checkpoint key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		// The note library's error does not echo the key, but say nothing more
		// than the file to be safe.
		return nil, fmt.Errorf("checkpoint key %s is not a valid note signing key", skeyPath)
	}
	if origin != "" && signer.Name() != origin {
		return nil, fmt.Errorf("data directory %s was created with origin %q, not %q: keep the original origin or use a new data directory", dir, signer.Name(), origin)
	}
	vkey, err := loadVerifierKey(fsys, dir)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key in %s: %w", kdir, err)
	}
	if verifier.Name() != signer.Name() || verifier.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("%w: verifier key in %s does not belong to the signing key", stele.ErrBadCheckpoint, kdir)
	}
	return &Keys{Signer: signer, Verifier: verifier, VerifierKey: vkey}, nil
}

// externalKeys checks a signer held outside the directory against the
// directory's verifier key, recording the key on first start so that
// offline verification and auditors find it where they always do.
func externalKeys(fsys vfs.FS, dir, origin string, ext CheckpointSigner, logger *slog.Logger) (*Keys, error) {
	if origin != "" && ext.Name() != origin {
		return nil, fmt.Errorf("checkpoint signer is named %q, not the origin %q: name the signer after the log's origin", ext.Name(), origin)
	}
	vkey := strings.TrimSpace(ext.VerifierKey())
	verifier, err := note.NewVerifier(vkey)
	if err != nil || verifier.Name() != ext.Name() || verifier.KeyHash() != ext.KeyHash() {
		return nil, fmt.Errorf("checkpoint signer %q gives a verifier key that is not its own", ext.Name())
	}
	kdir := filepath.Join(dir, "keys")
	stored, err := loadVerifierKey(fsys, dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := fsys.MkdirAll(kdir, 0o700); err != nil {
			return nil, fmt.Errorf("create key directory: %w", err)
		}
		if err := atomicfile.WriteSync(fsys, filepath.Join(kdir, verifierKeyFile), []byte(vkey+"\n"), 0o644, atomicfile.Exclusive); err != nil {
			return nil, err
		}
		if err := vfs.SyncDir(fsys, kdir); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case stored != vkey:
		return nil, fmt.Errorf("%w: data directory %s was signed with verifier key %s, but the configured checkpoint signer's key is %s: "+
			"configure the signer holding the log's key (or import the key into it), or use a new data directory", stele.ErrBadCheckpoint, dir, stored, vkey)
	}
	if _, err := fsys.Stat(filepath.Join(kdir, signerKeyFile)); err == nil {
		// The same key (the verifier keys match): a copy was imported into
		// the KMS, and the file still gives it to anyone with the directory.
		logger.Warn("the checkpoint signing key is held outside the data directory, yet keys/"+signerKeyFile+
			" still holds it: delete the file, or a copy of the data directory can sign checkpoints", "file", filepath.Join(kdir, signerKeyFile))
	}
	return &Keys{Signer: ext, Verifier: verifier, VerifierKey: vkey}, nil
}

// LoadVerifierKey returns the verifier key stored in a data directory.
func LoadVerifierKey(dir string) (string, error) { return loadVerifierKey(vfs.Default, dir) }

func loadVerifierKey(fsys vfs.FS, dir string) (string, error) {
	b, err := vfs.ReadFile(fsys, filepath.Join(dir, "keys", verifierKeyFile))
	if err != nil {
		return "", fmt.Errorf("read verifier key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
