package logstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
)

// TestRecoveryRefusesBatchForgedWithoutKey: a well-formed record frame and
// batch trailer (true size, true root) appended to records.log by someone
// without the master key is not adopted by recovery, and so never signed.
func TestRecoveryRefusesBatchForgedWithoutKey(t *testing.T) {
	ctx := context.Background()
	master, err := keystore.EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(ctx, t.TempDir(), master, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	mac, err := keystore.NewBatchMAC(ctx, ks, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	opts := logstore.Options{Origin: testOrigin, CheckpointInterval: time.Hour, BatchSealer: mac}
	dir := t.TempDir()
	s, err := logstore.Open(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 20)
	appendN(t, s, 20, 10)
	image := crashImage(t, s) // 30 records past the size-0 checkpoint
	s.Close()

	frames := recordFrames(t, image)
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	for _, f := range frames {
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(f.payload), nil); err != nil {
			t.Fatal(err)
		}
	}
	r := testRecord(30)
	r.Seq, r.RecordedAt = 30, time.Now().UTC()
	forged := record.Encode(r)
	if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(forged), nil); err != nil {
		t.Fatal(err)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The trailer format of logstore/batch.go; the attacker's own MAC.
	tr := []byte{0xB7, 1}
	tr = binary.BigEndian.AppendUint64(tr, 31)
	tr = append(tr, root...)
	fake := append([]byte{1}, bytes.Repeat([]byte{0xAA}, 32)...)
	tr = binary.BigEndian.AppendUint16(tr, uint16(len(fake)))
	tr = append(tr, fake...)
	path := filepath.Join(image, "records.log")
	before := readFile(t, path)
	writeFile(t, path, append(append(bytes.Clone(before), makeFrame(forged)...), makeFrame(tr)...))

	s2, err := logstore.Open(ctx, image, opts)
	if err == nil {
		n := s2.Size()
		s2.Close()
		t.Fatalf("recovery opened the store with the forged batch (size %d), want a refusal", n)
	}
	if !errors.Is(err, logstore.ErrTampered) || !errors.Is(err, keystore.ErrBatchAuth) {
		t.Fatalf("open: %v, want ErrTampered wrapping keystore.ErrBatchAuth", err)
	}
	// Without the forged bytes the same image opens with its 30 records.
	writeFile(t, path, before)
	s3, err := logstore.Open(ctx, image, opts)
	if err != nil {
		t.Fatalf("open the unforged image: %v", err)
	}
	defer s3.Close()
	if s3.Size() != 30 {
		t.Fatalf("size %d, want 30", s3.Size())
	}
}
