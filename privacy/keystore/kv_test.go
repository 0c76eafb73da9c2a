package keystore

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/internal/natstest"
)

// connectJS connects to url (retrying through restarts) and returns
// JetStream; the connection closes when the test ends.
func connectJS(t testing.TB, url string) jetstream.JetStream { return natstest.JetStream(t, url) }

func openKVT(t testing.TB, js jetstream.JetStream, m MasterKey, opts Options) *KVStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenKV(ctx, js, "KEYS", m, opts)
	if err != nil {
		t.Fatalf("open KV keystore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The KV store answers as the file store does: one key per (kind, name),
// the same key after a reopen, destroyed keys gone for good and their name
// free for a new generation, and the wrong master refused.
func TestKVRoundTripDestroyReopen(t *testing.T) {
	ctx := context.Background()
	c := natstest.StartT(t, 1)
	js := connectJS(t, c.URL(0))
	m := testMaster(t, 1)
	s := openKVT(t, js, m, Options{})

	kid, key, err := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice")
	if err != nil || len(key) != KeySize || len(kid) != kidTextLen {
		t.Fatalf("GetOrCreate: %q %d %v", kid, len(key), err)
	}
	kid2, key2, err := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice")
	if err != nil || kid2 != kid || !bytes.Equal(key2, key) {
		t.Fatalf("second GetOrCreate: %v %s", err, kid2)
	}
	pkid, pkey, err := s.GetOrCreate(ctx, KindPeriod, "hmac-of-alice")
	if err != nil || pkid == kid || bytes.Equal(pkey, key) {
		t.Fatalf("kinds not separate: %v", err)
	}
	got, err := s.Key(ctx, kid)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Key: %v", err)
	}
	got[0] ^= 0xff
	if again, _ := s.Key(ctx, kid); !bytes.Equal(again, key) {
		t.Fatal("caller mutation reached the cache")
	}
	if _, err := s.Key(ctx, "AAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v, want ErrUnknownKey", err)
	}
	if _, err := s.Key(ctx, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("malformed kid: %v, want ErrUnknownKey", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.Names(KindPeriod); len(n) != 1 || n[0] != "hmac-of-alice" || s.Len() != 2 {
		t.Fatalf("Names %v, Len %d", n, s.Len())
	}

	// A second store on the bucket (another process, or a restart) reads
	// the same keys, unwrapped from the bucket.
	other := openKVT(t, js, m, Options{CacheSize: -1})
	if got, err := other.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("other store's Key: %v", err)
	}
	if k, _, _ := other.GetOrCreate(ctx, KindSubject, "hmac-of-alice"); k != kid {
		t.Fatal("a second store made a new generation")
	}

	kids, err := s.Destroy(ctx, KindSubject, "hmac-of-alice")
	if err != nil || len(kids) != 1 || kids[0] != kid {
		t.Fatalf("Destroy: %v %v", kids, err)
	}
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("destroyed key: %v, want ErrDestroyed", err)
	}
	if kids, err := s.Destroy(ctx, KindSubject, "hmac-of-alice"); err != nil || len(kids) != 0 {
		t.Fatalf("second Destroy: %v %v", kids, err)
	}
	nkid, nkey, err := s.GetOrCreate(ctx, KindSubject, "hmac-of-alice")
	if err != nil || nkid == kid || bytes.Equal(nkey, key) {
		t.Fatalf("after destroy, GetOrCreate must make a new generation: %v", err)
	}
	if got, err := s.Key(ctx, pkid); err != nil || !bytes.Equal(got, pkey) {
		t.Fatalf("the period key is affected: %v", err)
	}

	// A fresh open knows the tombstone: the old kid never comes back.
	third := openKVT(t, js, m, Options{})
	if _, err := third.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("reopened: destroyed key: %v, want ErrDestroyed", err)
	}
	if k, _, _ := third.GetOrCreate(ctx, KindSubject, "hmac-of-alice"); k != nkid {
		t.Fatalf("reopened: live generation %s, want %s", k, nkid)
	}

	if _, err := OpenKV(ctx, js, "KEYS", testMaster(t, 2), Options{}); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("wrong master: %v, want ErrWrongMaster", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, pkid); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
	if _, _, err := s.GetOrCreate(ctx, KindSubject, ""); err == nil {
		t.Fatal("empty name accepted")
	}
}

// Three nodes on three servers of an R3 bucket: racing creations of one
// name end with one key everywhere, and a key destroyed on one node stops
// being served on the others, caches and derived-key hooks included.
func TestKVClusterCreateRaceAndDestroy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := natstest.StartT(t, 3)
	m := testMaster(t, 1)
	// The nodes open the new bucket at once, as a cluster's nodes start:
	// the one creating it races the others looking it up.
	nodes := make([]*KVStore, 3)
	jss := make([]jetstream.JetStream, 3)
	for i := range jss {
		jss[i] = connectJS(t, c.URL(i))
	}
	openErrs := make([]error, 3)
	var opening sync.WaitGroup
	for i := range nodes {
		opening.Go(func() {
			if nodes[i], openErrs[i] = OpenKV(ctx, jss[i], "KEYS", m, Options{Replicas: 3}); openErrs[i] == nil {
				t.Cleanup(func() { nodes[i].Close() })
			}
		})
	}
	opening.Wait()
	for i, err := range openErrs {
		if err != nil {
			t.Fatalf("node %d opening the new bucket with the others: %v", i, err)
		}
	}
	var hookMu sync.Mutex
	heard := map[string]int{}
	for i, n := range nodes {
		n.OnDestroy(func(kids []string) {
			hookMu.Lock()
			defer hookMu.Unlock()
			for _, k := range kids {
				heard[k] |= 1 << i
			}
		})
	}
	race := func(name string) string {
		t.Helper()
		kids := make([]string, 6)
		keys := make([][]byte, 6)
		errs := make([]error, 6)
		var wg sync.WaitGroup
		for i := range kids {
			wg.Go(func() {
				kids[i], keys[i], errs[i] = nodes[i%3].GetOrCreate(ctx, KindSubject, name)
			})
		}
		wg.Wait()
		for i := range kids {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			if kids[i] != kids[0] || !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("racing creators got different keys: %v", kids)
			}
		}
		return kids[0]
	}
	kid := race("subject-7")
	for i, n := range nodes {
		if _, err := n.Key(ctx, kid); err != nil { // warms every cache
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := nodes[0].Destroy(ctx, KindSubject, "subject-7"); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		for {
			_, err := n.Key(ctx, kid)
			if errors.Is(err, ErrDestroyed) {
				break
			}
			if err != nil || ctx.Err() != nil {
				t.Fatalf("node %d after destroy: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for {
		hookMu.Lock()
		all := heard[kid] == 7
		hookMu.Unlock()
		if all {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("OnDestroy heard on nodes %b, want all three", heard[kid])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if again := race("subject-7"); again == kid {
		t.Fatal("the destroyed kid came back")
	}
}

// A store that cannot reach the servers stops serving keys once it has
// not confirmed the bucket's tombstones for StaleAfter, says why with
// ErrStale, and serves again once the server is back.
func TestKVStaleWhenServersGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := natstest.StartT(t, 1)
	s := openKVT(t, connectJS(t, c.URL(0)), testMaster(t, 1), Options{StaleAfter: 400 * time.Millisecond})
	kid, _, err := s.GetOrCreate(ctx, KindSubject, "s")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var flushed []string
	s.OnDestroy(func(kids []string) { mu.Lock(); flushed = append(flushed, kids...); mu.Unlock() })
	c.Kill(0)
	for {
		_, err := s.Key(ctx, kid)
		if errors.Is(err, ErrStale) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Key with the server gone: %v, want ErrStale", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := s.GetOrCreate(ctx, KindSubject, "s"); !errors.Is(err, ErrStale) {
		t.Fatalf("GetOrCreate when stale: %v, want ErrStale", err)
	}
	for {
		mu.Lock()
		n := len(flushed)
		mu.Unlock()
		if n > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("going stale did not tell OnDestroy to drop derived keys")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Key(ctx, kid)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the server came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A Destroy cut short after its tombstone (the node died) leaves the entry
// and the name claim in the bucket: the key is not served, the next open
// erases the entry, and the name gets a new generation.
func TestKVDestroyCutShortIsFinished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := natstest.StartT(t, 1)
	js := connectJS(t, c.URL(0))
	m := testMaster(t, 1)
	s := openKVT(t, js, m, Options{})
	kid, _, err := s.GetOrCreate(ctx, KindSubject, "subject-9")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	kv, err := js.KeyValue(ctx, "KEYS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, kvTombPfx+kid, []byte{formatVersion}); err != nil {
		t.Fatal(err)
	}

	s = openKVT(t, js, m, Options{})
	if _, err := s.Key(ctx, kid); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("tombstoned key: %v, want ErrDestroyed", err)
	}
	if _, err := kv.Get(ctx, kvKeyPrefix+kid); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the entry of a tombstoned kid survived the open: %v", err)
	}
	nkid, _, err := s.GetOrCreate(ctx, KindSubject, "subject-9")
	if err != nil || nkid == kid {
		t.Fatalf("after a cut-short destroy: %s %v, want a new generation", nkid, err)
	}
	if n := s.Names(KindSubject); len(n) != 1 {
		t.Fatalf("Names: %v", n)
	}
}
