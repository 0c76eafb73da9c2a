package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/privacy/keystore"
)

// keystore: {kind: nats, ...} in the file (and STELE_KEYSTORE_* in the
// environment) choose the KV keystore; bad values name the key and what
// is wanted.
func TestKeystoreConfig(t *testing.T) {
	cfg, err := loadTest(t, "keystore:\n  kind: nats\n  nats_url: nats://a:4222,nats://b:4222\n  bucket: K\n  replicas: 1\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (KeystoreConfig{Kind: "nats", NATSURL: "nats://a:4222,nats://b:4222", Bucket: "K", Replicas: 1}); cfg.Keystore != want {
		t.Fatalf("keystore config %+v, want %+v", cfg.Keystore, want)
	}
	cfg, err = loadTest(t, "", map[string]string{"STELE_KEYSTORE_KIND": "nats", "STELE_KEYSTORE_NATS_URL": "nats://c:4222"})
	if err != nil || cfg.Keystore.Kind != "nats" || cfg.Keystore.NATSURL != "nats://c:4222" {
		t.Fatalf("from the environment: %+v %v", cfg.Keystore, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"keystore: {kind: vault}\n", "keystore.kind"},
		{"keystore: {replicas: 2}\n", "1, 3 or 5"},
		{"keystore: {nats_url: http://x}\n", "nats://"},
		{"keystore: {where: x}\n", "known keys: kind, nats_url, bucket, replicas"},
		{"keystore: nats\n", "want a mapping"},
		{"stream: {format: xml}\n", "stream.format"},
	} {
		if _, err := loadTest(t, tc.yaml, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
}

// With kind nats the server's keystore is the KV bucket: keys created
// through one open are there for the next, and nothing is written under
// <data>/keystore. Without nats_url it refuses, naming the option.
func TestOpenKeysNATS(t *testing.T) {
	ctx := context.Background()
	c := natstest.StartT(t, 1)
	master, err := keystore.EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Data = t.TempDir()
	cfg.Keystore = KeystoreConfig{Kind: "nats", Replicas: 1}
	if _, err := openKeys(ctx, cfg, master, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "keystore.nats_url") {
		t.Fatalf("without a URL: %v", err)
	}
	cfg.Keystore.NATSURL = c.URL(0)
	keys, err := openKeys(ctx, cfg, master, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	kid, key, err := keys.GetOrCreate(ctx, keystore.KindSubject, "s")
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Close(); err != nil {
		t.Fatal(err)
	}
	keys, err = openKeys(ctx, cfg, master, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	if got, err := keys.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("after reopening the bucket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, "keystore")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the KV keystore wrote <data>/keystore: %v", err)
	}
}
