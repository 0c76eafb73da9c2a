package keystore

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestBatchMAC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	master := testMaster(t, 1)
	s := openT(t, dir, master, Options{})
	m, err := NewBatchMAC(ctx, s, "stele.example/log")
	if err != nil {
		t.Fatal(err)
	}
	root := bytes.Repeat([]byte{7}, 32)
	auth, err := m.Seal(ctx, 100, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(ctx, 100, root, auth); err != nil {
		t.Fatalf("verify own seal: %v", err)
	}
	other := bytes.Clone(root)
	other[31] ^= 1
	flipped := bytes.Clone(auth)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		size uint64
		root []byte
		auth []byte
	}{
		"another-size":  {101, root, auth},
		"another-root":  {100, other, auth},
		"flipped":       {100, root, flipped},
		"empty":         {100, root, nil},
		"other-version": {100, root, append([]byte{2}, auth[1:]...)},
		"truncated":     {100, root, auth[:16]},
	} {
		if err := m.Verify(ctx, tc.size, tc.root, tc.auth); !errors.Is(err, ErrBatchAuth) {
			t.Errorf("%s: %v, want ErrBatchAuth", name, err)
		}
	}
	// Another log's origin, or another keystore's key, does not verify.
	m2, err := NewBatchMAC(ctx, s, "other.example/log")
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Verify(ctx, 100, root, auth); !errors.Is(err, ErrBatchAuth) {
		t.Errorf("another origin: %v", err)
	}
	s3 := openT(t, t.TempDir(), master, Options{})
	m3, err := NewBatchMAC(ctx, s3, "stele.example/log")
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Verify(ctx, 100, root, auth); !errors.Is(err, ErrBatchAuth) {
		t.Errorf("another keystore: %v", err)
	}
	// The key is durable: reopened, the keystore gives the same MAC.
	s.Close()
	s = openT(t, dir, master, Options{})
	defer s.Close()
	m4, err := NewBatchMAC(ctx, s, "stele.example/log")
	if err != nil {
		t.Fatal(err)
	}
	if err := m4.Verify(ctx, 100, root, auth); err != nil {
		t.Fatalf("after reopening the keystore: %v", err)
	}
	if _, err := NewBatchMAC(ctx, s, ""); err == nil {
		t.Error("empty origin accepted")
	}
}
