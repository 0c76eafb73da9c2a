package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
)

// TestServeRefusesBatchForgedWithoutMasterKey: someone with the data
// directory but not the master key (here it is stolen with the directory
// too, yet not used) appends a batch with the store's own code, as a
// disk-only attacker could, and the server is then started: the batch,
// not sealed by this log's writer, is refused and the server serves only
// the reason. The same batch sealed with the log's batch key is adopted —
// what a real crash of the server leaves.
func TestServeRefusesBatchForgedWithoutMasterKey(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%t", sealed), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			data := t.TempDir()
			base, stop := serveDir(t, ctx, data)
			var body strings.Builder
			for i := range 10 {
				fmt.Fprintf(&body, `{"id":"r-%d","source":{"name":"crm","table":"t"},"op":"insert","key":{"id":%d},"after":{"id":%d}}`+"\n", i, i, i)
			}
			resp, err := http.Post(base+"/v1/records", "application/x-ndjson", strings.NewReader(body.String()))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("ingest: %s", resp.Status)
			}
			stop()

			opts := logstore.Options{Origin: defaultConfig().Origin, CheckpointInterval: time.Hour}
			if sealed {
				master, err := keystore.FileMaster(filepath.Join(data, "master.key"))
				if err != nil {
					t.Fatal(err)
				}
				ks, err := keystore.Open(ctx, filepath.Join(data, "keystore"), master, keystore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer ks.Close()
				if opts.BatchSealer, err = keystore.NewBatchMAC(ctx, ks, opts.Origin); err != nil {
					t.Fatal(err)
				}
			}
			store, err := logstore.Open(ctx, data, opts)
			if err != nil {
				t.Fatal(err)
			}
			forged := &record.Record{ID: "forged", Source: record.Source{Name: "crm", Kind: "http", Table: "t"}, Op: record.OpInsert,
				Key: []byte(`{"id":99}`), After: []byte(`{"id":99,"note":"never happened"}`), OccurredAt: time.Now().UTC()}
			if _, err := store.Append(ctx, []*record.Record{forged}); err != nil {
				t.Fatal(err)
			}
			// The directory as the append left it, before any checkpoint
			// covers the batch (a crash, or the attacker's copy).
			image := t.TempDir()
			copyDir(t, data, image)
			store.Close()

			cfg := defaultConfig()
			cfg.Data, cfg.Addr = image, "127.0.0.1:0"
			addrFile := filepath.Join(t.TempDir(), "addr")
			srvCtx, stopSrv := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
			defer func() {
				stopSrv()
				if err := <-served; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			var b []byte
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the server never answered /healthz")
				}
				addr, err := os.ReadFile(addrFile)
				if err != nil {
					continue
				}
				if resp, err = http.Get("http://" + strings.TrimSpace(string(addr)) + "/healthz"); err != nil {
					continue
				}
				b, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "tampered") {
					break // healthy, or refusing for good (not still verifying)
				}
			}
			if sealed {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("a batch sealed with the log's key was refused: %d %s", resp.StatusCode, b)
				}
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "tampered") || !strings.Contains(string(b), "not sealed by this log's writer") {
				t.Fatalf("/healthz after a forged batch: %d %s, want 503 tampered naming the unsealed batch", resp.StatusCode, b)
			}
		})
	}
}
