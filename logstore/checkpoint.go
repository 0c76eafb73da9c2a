package logstore

import (
	"crypto/rand"
	"errors"
	"fmt"
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

// loadOrCreateKeys reads the data directory's checkpoint key, creating one
// named origin on first start. A key made for another origin is an error:
// silently re-keying would orphan every earlier checkpoint.
func loadOrCreateKeys(fsys vfs.FS, dir, origin string) (*Keys, error) {
	kdir := filepath.Join(dir, "keys")
	skeyPath := filepath.Join(kdir, signerKeyFile)
	skey, err := vfs.ReadFile(fsys, skeyPath)
	if errors.Is(err, os.ErrNotExist) {
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

// LoadVerifierKey returns the verifier key stored in a data directory.
func LoadVerifierKey(dir string) (string, error) { return loadVerifierKey(vfs.Default, dir) }

func loadVerifierKey(fsys vfs.FS, dir string) (string, error) {
	b, err := vfs.ReadFile(fsys, filepath.Join(dir, "keys", verifierKeyFile))
	if err != nil {
		return "", fmt.Errorf("read verifier key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
