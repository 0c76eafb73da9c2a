package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
)

// serveInProcess runs serve with cfg until the test ends and returns the
// server's base URL; serve's own error fails the test.
func serveInProcess(ctx context.Context, t *testing.T, cfg Config) string {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		t.Fatal(err)
	}
	return base
}
