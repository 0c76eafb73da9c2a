package keystore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/privacy/keystore"
)

// A replica that is down while a key is erased, and comes back only after
// the others have snapshotted (compacted) their raft logs, catches up from
// a snapshot rather than by replaying the erase: nats-server v2.15.2
// removes the deleted message from its block without overwriting it
// (fileStore.SyncDeleted calls removeMsg with secure=false), so that
// server's stream block keeps the wrapped key until the block is compacted
// or removed. The replicas that applied the erase hold nothing.
func TestKVErasureReplicaDownDuringErase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := natstest.StartT(t, 3)
	master, err := keystore.EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URL(0)+","+c.URL(1), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	keys, err := keystore.OpenKV(ctx, js, "STELE_KEYS", master, keystore.Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	kid, _, err := keys.GetOrCreate(ctx, keystore.KindSubject, "subject-1")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := kvValue(ctx, js, "k."+kid)
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, ctx, c)
	c.Kill(2)
	for {
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := keys.Destroy(dctx, keystore.KindSubject, "subject-1")
		dcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("destroy while a new stream leader is elected: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
	for _, i := range []int{0, 1} {
		if err := c.Server(i).JetStreamSnapshotStream(server.DEFAULT_GLOBAL_ACCOUNT, "KV_STELE_KEYS"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, ctx, c)
	for i := range 3 {
		// "no snapshot available": nothing applied since the last one.
		if err := c.Server(i).JetStreamSnapshotStream(server.DEFAULT_GLOBAL_ACCOUNT, "KV_STELE_KEYS"); err != nil && !strings.Contains(err.Error(), "no snapshot available") {
			t.Fatalf("server %d: %v", i, err)
		}
	}
	dirs := []string{c.StoreDir(0), c.StoreDir(1), c.StoreDir(2)}
	needles := map[string][]byte{"the key's stored value": stored}
	for {
		hits := scan(t, dirs[:2], needles)
		if len(hits) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the replicas that applied the erase still hold the key: %v", hits)
		}
		time.Sleep(100 * time.Millisecond) // a compacted raft log is removed out of band
	}
	// The one that was down: see the doc comment. Logged, not asserted,
	// so a nats-server that erases on catch-up does not fail the test.
	t.Logf("the replica that was down during the erase (known gap, docs/privacy.md): %v", scan(t, dirs[2:], needles))
}
