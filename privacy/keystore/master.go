package keystore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stele/stele/internal/atomicfile"
)

// MasterKey wraps and unwraps data keys. Implementations: FileMaster,
// EnvMaster (local AES-256-GCM) and VaultTransit.
type MasterKey interface {
	// ID identifies this master key (and version); it is stored with every
	// wrapping so a store opened with the wrong master fails clearly.
	ID() string
	Wrap(ctx context.Context, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// MasterKeySize is the size of a local master key (AES-256).
const MasterKeySize = 32

// localWrapAAD binds local wrappings to this use, so a blob sealed with the
// same key for some other purpose cannot be passed off as a wrapped data key.
var localWrapAAD = []byte("stele-keystore-wrap-v1")

const localWrapVersion = 1

// localMaster is an AES-256-GCM master key held in memory.
type localMaster struct {
	id   string
	aead cipher.AEAD
}

func newLocalMaster(key []byte) (*localMaster, error) {
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("master key: %d bytes, want %d", len(key), MasterKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	// The id is a domain-separated fingerprint, so the same key has the same
	// id whether it comes from a file or the environment, and a different key
	// is told apart before any unwrap is attempted.
	h := sha256.New()
	h.Write([]byte("stele-keystore-master-id-v1\x00"))
	h.Write(key)
	return &localMaster{id: "local:" + hex.EncodeToString(h.Sum(nil)[:8]), aead: aead}, nil
}

func (m *localMaster) ID() string { return m.id }

// Wrap returns version | nonce | ciphertext+tag.
func (m *localMaster) Wrap(_ context.Context, plaintext []byte) ([]byte, error) {
	out := make([]byte, 1+m.aead.NonceSize(), 1+m.aead.NonceSize()+len(plaintext)+m.aead.Overhead())
	out[0] = localWrapVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("wrap under %s: nonce: %w", m.id, err)
	}
	return m.aead.Seal(out, out[1:], plaintext, localWrapAAD), nil
}

func (m *localMaster) Unwrap(_ context.Context, wrapped []byte) ([]byte, error) {
	ns := m.aead.NonceSize()
	if len(wrapped) < 1+ns+m.aead.Overhead() {
		return nil, fmt.Errorf("unwrap under %s: wrapped key is %d bytes, too short", m.id, len(wrapped))
	}
	if wrapped[0] != localWrapVersion {
		return nil, fmt.Errorf("unwrap under %s: wrapping version %d, want %d", m.id, wrapped[0], localWrapVersion)
	}
	pt, err := m.aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], localWrapAAD)
	if err != nil {
		return nil, fmt.Errorf("unwrap under %s: authentication failed (wrong master key or damaged entry): %w", m.id, ErrWrongMaster)
	}
	return pt, nil
}

// EnvMaster builds a local master key from its base64 text (STELE_MASTER_KEY).
// The error never echoes the input.
func EnvMaster(b64 string) (MasterKey, error) {
	key, err := decodeMasterText(b64)
	if err != nil {
		return nil, fmt.Errorf("STELE_MASTER_KEY: %w", err)
	}
	return newLocalMaster(key)
}

func decodeMasterText(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty; want the base64 of 32 random bytes (e.g. head -c 32 /dev/urandom | base64)")
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("not valid base64; want the base64 of 32 random bytes (e.g. head -c 32 /dev/urandom | base64)")
	}
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d (e.g. head -c 32 /dev/urandom | base64)", len(key), MasterKeySize)
	}
	return key, nil
}

// FileMaster loads a local master key from path, creating a random one (mode
// 0600, base64 text) if the file does not exist. A file readable by group or
// others is refused: the master key protects every data key.
func FileMaster(path string) (MasterKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createMasterFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s: mode %04o lets others read it, want 0600 (chmod 600 %s)", path, perm, path)
	}
	key := data
	if len(data) != MasterKeySize {
		if key, err = decodeMasterText(string(data)); err != nil {
			return nil, fmt.Errorf("master key file %s: %w", path, err)
		}
	}
	return newLocalMaster(key)
}

func createMasterFile(path string) (MasterKey, error) {
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("master key file %s: generate: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return FileMaster(path) // lost a race with another creator: use theirs
	}
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("master key file %s: write: %w", path, err)
	}
	return newLocalMaster(key)
}

// masterBody is a store's MASTER record: master's id and a fresh random
// canary wrapped under it. A store keeps one (the file store in MASTER, the
// KV store under "master") so that opening it with another master fails
// before any key is served.
func masterBody(ctx context.Context, master MasterKey) ([]byte, error) {
	canary := make([]byte, len(canaryPrefix)+16)
	copy(canary, canaryPrefix)
	if _, err := rand.Read(canary[len(canaryPrefix):]); err != nil {
		return nil, err
	}
	wrapped, err := master.Wrap(ctx, canary)
	if err != nil {
		return nil, fmt.Errorf("wrap canary under %s: %w", master.ID(), err)
	}
	if len(wrapped) > 0xffff || len(master.ID()) > 0xff {
		return nil, fmt.Errorf("master %s: id or wrapping too long", master.ID())
	}
	return appendMasterBody(nil, master.ID(), wrapped), nil
}

// checkMasterBody checks a stored MASTER record against master:
// ErrWrongMaster if it names another master or its canary does not unwrap.
func checkMasterBody(ctx context.Context, master MasterKey, body []byte) error {
	id, wrapped, err := decodeMaster(body)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrCorrupt)
	}
	if id != master.ID() {
		return fmt.Errorf("store is wrapped under master %s, but master %s was given: %w", id, master.ID(), ErrWrongMaster)
	}
	pt, err := master.Unwrap(ctx, wrapped)
	if err != nil {
		return fmt.Errorf("master %s cannot unwrap the store's canary: %w", id, errors.Join(ErrWrongMaster, err))
	}
	if !bytes.HasPrefix(pt, []byte(canaryPrefix)) {
		return fmt.Errorf("master %s unwrapped the canary to unexpected bytes: %w", id, ErrWrongMaster)
	}
	return nil
}
