package keystore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBatchAuth: a batch's authenticator does not verify: the batch was not
// sealed by this log's writer (a frame forged by someone with only the disk),
// or it was damaged.
var ErrBatchAuth = errors.New("batch authenticator does not verify")

// batchMACKey names the system key the batch MAC is computed under.
const batchMACKey = "log/batch-mac"

// batchMACVersion starts every authenticator, so another algorithm can be
// told apart later.
const batchMACVersion = 1

// BatchMAC authenticates the log's durable batches (logstore.BatchSealer):
// HMAC-SHA256 over the log's origin, the size after the batch and the tree
// root at that size, under a system key of the keystore. The key is wrapped
// by the master key like every data key, so records.log, the tree and the
// keystore together do not give it: forging a batch that recovery adopts
// needs the master key (the key file, STELE_MASTER_KEY or Vault). With the
// default key file <data>/master.key the protection is only as strong as
// keeping that file somewhere else than the data directory.
//
// The writer seals a batch before acknowledging it; recovery adopts only
// batches whose authenticator verifies, so what an attacker appends to
// records.log without the key is cut and quarantined, never signed.
type BatchMAC struct {
	key    []byte
	origin string
}

// BatchMACKeys is what the batch MAC needs of a keystore: the file Store
// and the cluster's KVStore both serve it.
type BatchMACKeys interface {
	GetOrCreate(ctx context.Context, kind Kind, name string) (kid string, key []byte, err error)
	Sync(ctx context.Context) error
}

// NewBatchMAC returns the batch authenticator of the log named origin,
// creating its key on first use and making it durable before returning:
// nothing may be sealed under a key that a crash could lose.
func NewBatchMAC(ctx context.Context, keys BatchMACKeys, origin string) (*BatchMAC, error) {
	if origin == "" {
		return nil, errors.New("batch MAC: origin is empty; want the log's origin, e.g. stele.example.com/log")
	}
	_, key, err := keys.GetOrCreate(ctx, KindSystem, batchMACKey)
	if err != nil {
		return nil, fmt.Errorf("batch MAC key: %w", err)
	}
	if err := keys.Sync(ctx); err != nil {
		return nil, fmt.Errorf("batch MAC key: make it durable: %w", err)
	}
	return &BatchMAC{key: key, origin: origin}, nil
}

func (m *BatchMAC) sum(size uint64, root []byte) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("stele-batch-v1\x00"))
	h.Write([]byte(m.origin))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], size)
	h.Write(b[:])
	h.Write(root)
	return h.Sum([]byte{batchMACVersion})
}

// Seal returns the authenticator of the log at size with root.
func (m *BatchMAC) Seal(_ context.Context, size uint64, root []byte) ([]byte, error) {
	return m.sum(size, root), nil
}

// Verify checks an authenticator made by Seal; it fails with ErrBatchAuth,
// naming the size (never the key or the authenticator).
func (m *BatchMAC) Verify(_ context.Context, size uint64, root, auth []byte) error {
	if len(auth) == 0 {
		return fmt.Errorf("%w: the batch ending at size %d carries no authenticator", ErrBatchAuth, size)
	}
	if auth[0] != batchMACVersion {
		return fmt.Errorf("%w: the batch ending at size %d has authenticator version %d, want %d", ErrBatchAuth, size, auth[0], batchMACVersion)
	}
	if !hmac.Equal(auth, m.sum(size, root)) {
		return fmt.Errorf("%w: the batch ending at size %d was not sealed under this log's key (forged, or sealed by another log)", ErrBatchAuth, size)
	}
	return nil
}
