package privacy

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/privacy/keystore"
)

// A cluster key store that cannot confirm it is current (its NATS servers
// gone) makes sealing and revealing fail with ErrKeysUnavailable, which
// callers answer with "retry later" — never a value shown as unreadable
// or erased, which would read as damage or a deletion.
func TestStaleClusterKeysAreUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := natstest.StartT(t, 1)
	js := natstest.JetStream(t, c.URL(0))
	dir := t.TempDir()
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.OpenKV(ctx, js, "KEYS", master, keystore.Options{StaleAfter: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	g, _ := customersGuard(t, dir, keys, Options{})
	at := time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC)
	sealed := customer(t, "7", alice, at)
	if err := g.Seal(ctx, sealed); err != nil {
		t.Fatal(err)
	}

	c.Kill(0)
	for {
		r := *sealed
		_, err := g.Reveal(ctx, auth.RoleAuditor, &r)
		if errors.Is(err, ErrKeysUnavailable) {
			if !errors.Is(err, keystore.ErrStale) {
				t.Errorf("reveal error %v does not name the stale key store", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("reveal with the key store stale: %v, want ErrKeysUnavailable", err)
		}
		if ctx.Err() != nil {
			t.Fatal("the key store never went stale")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.Seal(ctx, customer(t, "8", `{"id":8,"email":"bob@example.com"}`, at)); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("seal for a new subject with the key store stale: %v, want ErrKeysUnavailable", err)
	}

	// Quorum back: the same record reveals again.
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	for {
		r := *sealed
		_, err := g.Reveal(ctx, auth.RoleAuditor, &r)
		if err == nil {
			if string(field(t, r.After, "email")) != `"alice@example.com"` {
				t.Fatalf("revealed after the servers came back: %s", r.After)
			}
			break
		}
		if !errors.Is(err, ErrKeysUnavailable) || ctx.Err() != nil {
			t.Fatalf("reveal after the servers came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
